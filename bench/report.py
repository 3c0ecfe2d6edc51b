"""The table ``make bench`` prints: each figure, its ratio and its target."""

from __future__ import annotations

from typing import Any

import attrs

NA = "n/a"


@attrs.define
class Row:
    """One figure for codex-lb, the reference's where there is one, a target."""

    label: str
    unit: str
    lb: float | None
    ref: float | None = None
    target: str = ""
    # met(lb, ref) -> bool, or None when the row has no target.
    met: Any = None
    digits: int = 2
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.lb is None or self.ref is None or self.ref == 0:
            return None
        return self.lb / self.ref

    @property
    def verdict(self) -> str:
        if self.met is None:
            return ""
        if self.lb is None:
            return NA
        return "met" if self.met(self.lb, self.ref) else "MISSED"

    def cells(self) -> list[str]:
        return [
            f"{self.label} ({self.unit})" if self.unit else self.label,
            _number(self.lb, self.digits),
            _number(self.ref, self.digits),
            NA if self.ratio is None else f"{self.ratio:.2f}x",
            self.target,
            self.verdict,
        ]


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return NA if digits >= 0 else ""
    return f"{value:,.{digits}f}"


def render(rows: list[Row], notes: list[str]) -> str:
    """A plain-text table, then the notes that qualify its figures."""
    header = ["figure", "codex-lb", "reference", "ratio", "target", ""]
    table = [header] + [row.cells() for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for index, line in enumerate(table):
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [f"{row.label}: {row.note}" for row in rows if row.note] + notes
    missed = [row.label for row in rows if row.verdict == "MISSED"]
    met = [row.label for row in rows if row.verdict == "met"]
    lines.append("")
    lines.append(f"targets met: {len(met)}, missed: {len(missed)}")
    if missed:
        lines.append("missed: " + "; ".join(missed))
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)
