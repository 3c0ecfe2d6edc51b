"""The reset-aware weekly counter of SPEC section 7, as a pure state machine.

The weekly used percent falls when its window resets, and real upstreams
sometimes send one stray reading that looks freshly reset before the old
values come back. The machine turns the readings of one account into
monotonic progress: it keeps a baseline (u0, r0) and at most one held
reading, and believes a fall only when the next reading agrees.
"""

from __future__ import annotations

from typing import Any

import attrs

# reset_at must move by more than this for a fall to count as a window reset,
# and a confirming reading's reset_at must be this close to the held one.
RESET_SHIFT_SECONDS = 3600.0


@attrs.frozen
class Reading:
    """Used percent (clamped to [0, 100]) and reset time in epoch seconds."""

    used: float
    reset_at: float

    @classmethod
    def of(cls, used: float, reset_at: float) -> Reading:
        return cls(min(100.0, max(0.0, float(used))), float(reset_at))


@attrs.frozen
class Step:
    """What one reading did: percent points added and resets counted."""

    added: float = 0.0
    resets: int = 0
    changed: bool = False


@attrs.define
class WeeklyCounter:
    """One account's baseline and held reading."""

    baseline: Reading | None = None
    held: Reading | None = None

    def apply(self, used: float | None, reset_at: float | None) -> Step:
        """Feed one reading; rule numbers are those of SPEC section 7."""
        # Rule 1: an incomplete reading changes nothing.
        if used is None or reset_at is None:
            return Step()
        reading = Reading.of(used, reset_at)

        # Rule 2: the first reading only sets the baseline.
        if self.baseline is None:
            self.baseline = reading
            return Step(changed=True)

        before = (self.baseline, self.held)
        added, resets = 0.0, 0
        held = self.held
        if held is not None:
            base = self.baseline
            self.held = None
            confirms = (
                reading.used < base.used
                and abs(reading.reset_at - held.reset_at) <= RESET_SHIFT_SECONDS
            )
            if confirms:
                # Rule 5: the fall is real; a big enough shift is a reset.
                if held.reset_at - base.reset_at > RESET_SHIFT_SECONDS:
                    added += (100.0 - base.used) + held.used
                    resets += 1
                self.baseline = held
            # Either way the reading is applied to the baseline now in force.

        more = self._apply_to_baseline(reading)
        changed = (self.baseline, self.held) != before
        return Step(added + more, resets, changed=changed)

    def _apply_to_baseline(self, reading: Reading) -> float:
        assert self.baseline is not None and self.held is None
        if reading.used >= self.baseline.used:
            # Rule 3: progress.
            added = reading.used - self.baseline.used
            self.baseline = reading
            return added
        # Rule 4: a fall is held until the next reading.
        self.held = reading
        return 0.0

    def to_json(self) -> dict[str, Any]:
        def pair(reading: Reading | None) -> list[float] | None:
            return None if reading is None else [reading.used, reading.reset_at]

        return {"baseline": pair(self.baseline), "held": pair(self.held)}

    @classmethod
    def from_json(cls, data: Any) -> WeeklyCounter:
        """The counter saved by ``to_json``; an empty one for anything else."""

        def reading(value: Any) -> Reading | None:
            if (
                isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, int | float) for v in value)
            ):
                return Reading.of(value[0], value[1])
            return None

        if not isinstance(data, dict):
            return cls()
        baseline = reading(data.get("baseline"))
        held = reading(data.get("held")) if baseline is not None else None
        return cls(baseline, held)
