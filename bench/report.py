"""The table ``make bench`` prints: each figure, its ratio and its target."""

from __future__ import annotations

import os
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


def table(args: Any, out: dict[str, Any]) -> str:
    """Rows for every phase that ran, then the notes."""
    rows: list[Row] = []
    notes: list[str] = []
    if "ttfb_ms" in out:
        rows += _ttfb_rows(out)
    if "throughput" in out:
        rows += _throughput_rows(out)
        notes.append(
            f"throughput client: {out['throughput_client']}; {args.seconds:g} s "
            f"runs, median of {args.repeats} per target, order alternating; "
            "proxy CPU per request from /proc"
        )
    if "events_per_second" in out:
        rows += _events_rows(args, out)
    if "memory" in out:
        rows += _memory_rows(args, out)
    if out.get("lag"):
        rows += _lag_rows(out)
    if "metrics" in out:
        rows += _metrics_rows(out)
    if "selection_ms" in out:
        rows += _inprocess_rows(args, out)
    if "ttfb_ms" in out:
        notes.append(
            "TTFB: time to the first body byte (and to the first content "
            f"event), sequential requests, {args.rounds} per target, order "
            "rotating each round; an added time is each request's time minus "
            "the direct call of the same round"
        )
    before, after = out["load_before"][0], out["load_after"][0]
    notes.append(
        f"load generator, emulator and proxies share this machine's {_cores()} "
        f"cores, alike for codex-lb and the reference; 1-min load average "
        f"{before:.2f} at start, {after:.2f} at end"
    )
    return render(rows, notes)


def _cores() -> int:
    return os.cpu_count() or 1


def _ttfb_rows(out: dict[str, Any]) -> list[Row]:
    def added(key: str, q: str) -> tuple[float, float]:
        paired = out[f"{key}_added_ms"]
        return paired["codex-lb"][q], paired["reference"][q]

    direct, direct_content = out["ttfb_ms"]["direct"], out["ttfc_ms"]["direct"]
    return [
        Row(
            "TTFB calling the emulator directly, p50",
            "ms",
            direct["p50"],
            digits=3,
            note=f"p99 {direct['p99']:.3f} ms; to the first content event "
            f"p50 {direct_content['p50']:.3f}, p99 {direct_content['p99']:.3f} ms",
        ),
        Row(
            "added time to first content event p50",
            "ms",
            *added("ttfc", "p50"),
            "<= 1.3x ref",
            lambda lb, ref: lb <= 1.3 * ref,
            3,
            note="the end of the first event that is not response.created or "
            "response.in_progress: codex-lb holds those two back until it "
            "(SPEC section 5), so this is also its first byte",
        ),
        Row(
            "added time to first content event p99",
            "ms",
            *added("ttfc", "p99"),
            "< 5 ms",
            lambda lb, _ref: lb < 5.0,
            3,
        ),
        Row(
            "added time to first byte p50",
            "ms",
            *added("ttfb", "p50"),
            digits=3,
            note="the reference's first byte is response.created, sent at once; "
            "codex-lb's is the first content event",
        ),
        Row("added time to first byte p99", "ms", *added("ttfb", "p99"), digits=3),
    ]


def _throughput_rows(out: dict[str, Any]) -> list[Row]:
    rows = []
    for concurrency, figures in out["throughput"].items():
        rows.append(
            Row(
                f"throughput, short streams, {concurrency} clients",
                "req/s",
                figures["codex-lb"],
                figures["reference"],
                ">= 0.7x ref",
                lambda lb, ref: lb >= 0.7 * ref,
                0,
                note=f"emulator alone: {figures['direct']:,.0f} req/s",
            )
        )
        cpu = figures["cpu_us"]
        rows.append(
            Row(
                f"proxy CPU per request, {concurrency} clients",
                "us",
                cpu["codex-lb"],
                cpu["reference"],
                digits=0,
            )
        )
    return rows


def _events_rows(args: Any, out: dict[str, Any]) -> list[Row]:
    events = out["events_per_second"]
    return [
        Row(
            "events relayed, long streams",
            "events/s",
            events["codex-lb"],
            events["reference"],
            digits=0,
            note=f"{out['events_per_answer']} events per answer, "
            f"{args.long_concurrency} clients; "
            f"emulator alone: {events['direct']:,.0f} events/s",
        )
    ]


def _memory_rows(args: Any, out: dict[str, Any]) -> list[Row]:
    lb, ref = out["memory"]["codex-lb"], out["memory"]["reference"]
    return [
        Row(
            f"peak RSS, {args.streams} open streams",
            "MB",
            lb["peak"] / 2**20,
            ref["peak"] / 2**20,
            "< 150 MB",
            lambda lb, _ref: lb < 150,
            1,
            note=f"idle {lb['idle'] / 2**20:.1f} MB (reference "
            f"{ref['idle'] / 2**20:.1f}); streams open at once "
            f"{lb['opened']} / {ref['opened']}, completed "
            f"{lb['completed']} / {ref['completed']} (codex-lb / reference)",
        )
    ]


def _lag_rows(out: dict[str, Any]) -> list[Row]:
    lag: dict[str, dict[str, list[float]]] = out["lag"]
    worst: dict[str, dict[str, float]] = {
        name: {
            phase: max(targets[name]) * 1000
            for phase, targets in lag.items()
            if targets.get(name)
        }
        for name in ("codex-lb", "reference")
    }
    lb, ref = worst["codex-lb"], worst["reference"]
    available = out.get("lag_available", True) and bool(lb)
    scrapes = sum(len(v) for targets in lag.values() for v in targets.values())
    by_phase = ", ".join(
        f"{phase} {ms:.1f}" + (f" / {ref[phase]:.1f}" if phase in ref else "")
        for phase, ms in lb.items()
    )
    return [
        Row(
            "longest event-loop stall under load",
            "ms",
            max(lb.values()) if available else None,
            max(ref.values()) if ref else None,
            target="<= 50 ms",
            met=lambda lb, _ref: lb <= 50,
            digits=1,
            note=(
                f"max of {scrapes} scrapes of codex_lb_event_loop_lag_seconds "
                "every 0.5 s (the longest lag of a 25 ms probe since the "
                "previous scrape; the reference runs the same probe); worst by "
                f"phase, codex-lb / reference, ms: {by_phase}"
                if available
                else "codex_lb_event_loop_lag_seconds not in /metrics"
            ),
        )
    ]


def _metrics_rows(out: dict[str, Any]) -> list[Row]:
    metrics = out["metrics"]
    if not metrics.get("available"):
        return [
            Row(
                "/metrics GET",
                "ms",
                None,
                target="< 25 ms",
                met=lambda lb, _ref: lb < 25,
                note="/metrics not served",
            )
        ]
    return [
        Row(
            f"/metrics GET, {metrics['accounts']} accounts, p50",
            "ms",
            metrics["p50"],
            target="< 25 ms",
            met=lambda lb, _ref: lb < 25,
            note=f"max {metrics['max']:.2f} ms over 30 scrapes, loopback HTTP included",
        ),
        Row("/metrics size", "KiB", metrics["size"] / 1024, digits=1),
    ]


def _inprocess_rows(args: Any, out: dict[str, Any]) -> list[Row]:
    selection = out["selection_ms"]
    return [
        Row(
            f"account selection, {args.accounts} accounts, p50",
            "ms",
            selection["p50"],
            target="< 0.2 ms",
            met=lambda lb, _ref: lb < 0.2,
            digits=4,
            note=f"p99 {selection['p99']:.4f} ms, max {selection['max']:.4f} ms; "
            f"in-process AccountPool.select, {args.selection_calls} calls",
        ),
        Row(
            "request-log rows written",
            "rows/s",
            out["request_log_rows_per_second"],
            digits=0,
            note="RequestLogBuffer.add then flush to SQLite, in-process",
        ),
    ]
