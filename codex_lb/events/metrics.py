"""Metric helpers for collectors: typed metrics over aioprometheus, and the
text exposition that Prometheus reads.

A metric declares its label names once; every update names each label by
keyword (``requests.inc(status="success", model="gpt-5", api="codex")``), so
a missing or extra label fails at the line that made it. Every label value
enters a series through ``label_value``, which makes it valid UTF-8 (a lone
surrogate, as a broken email can hold, would make aioprometheus' key
encoding raise), and is escaped when rendered: aioprometheus writes values
raw, and one quote or newline in a value would make Prometheus reject the
whole scrape.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import aioprometheus
import orjson
from aioprometheus.collectors import Collector as PromCollector
from aioprometheus.formats.text import TEXT_CONTENT_TYPE
from aioprometheus.metricdict import MetricDict

CONTENT_TYPE = TEXT_CONTENT_TYPE

# Latency of LLM calls: a cached compact answer takes tens of milliseconds, a
# long reasoning stream many minutes. Milliseconds, up to 15 minutes.
LATENCY_MS_BUCKETS: tuple[float, ...] = (
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1_000.0,
    2_500.0,
    5_000.0,
    10_000.0,
    20_000.0,
    30_000.0,
    60_000.0,
    120_000.0,
    300_000.0,
    600_000.0,
    900_000.0,
)


class MetricError(ValueError):
    """A metric was declared or updated wrongly."""


def label_value(value: object) -> str:
    """``value`` as label text: a string that is valid UTF-8, with each lone
    surrogate (which no UTF-8 encoder accepts) replaced by U+FFFD."""
    text = value if isinstance(value, str) else str(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_label_value(value: str) -> str:
    """A label value as the text exposition format writes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text as the text exposition format writes it."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Metric:
    """One metric family with fixed label names.

    Updates write the series' value into aioprometheus' store directly,
    under the key aioprometheus itself would make (the label set as sorted
    JSON). That key is made once per distinct label set and remembered:
    collectors update a few metrics per request, and making the key again
    each time (plus aioprometheus' checks of names fixed at declaration)
    was the largest part of their cost.
    """

    kind: ClassVar[str] = ""

    def __init__(
        self,
        collector: PromCollector,
        labels: Sequence[str],
    ) -> None:
        self._metric = collector
        self.label_names: tuple[str, ...] = tuple(labels)
        if self.label_names:
            # Reserved names and prefixes are refused here, once.
            collector._check_labels(dict.fromkeys(self.label_names, ""))
        self._store: dict[bytes | str, Any] = collector.values.store
        self._values = operator.itemgetter(*self.label_names) if labels else None
        self._keys: dict[Any, bytes | str] = {}

    @property
    def name(self) -> str:
        return self._metric.name

    @property
    def doc(self) -> str:
        return self._metric.doc

    def _key(self, labels: Mapping[str, Any]) -> bytes | str:
        if len(labels) != len(self.label_names):
            raise self._wrong_labels(labels)
        if self._values is None:
            return MetricDict.EMPTY_KEY
        try:
            # One name: the value itself; more: a tuple of values.
            values = self._values(labels)
        except KeyError:
            raise self._wrong_labels(labels) from None
        key = self._keys.get(values)
        if key is None:
            key = self._new_key(values)
        return key

    def _new_key(self, values: Any) -> bytes | str:
        names = self.label_names
        if len(names) == 1:
            values = (values,)
        key = _series_key(
            {
                name: label_value(value)
                for name, value in zip(names, values, strict=True)
            }
        )
        # Only text values are remembered: 1, 1.0 and True are equal as
        # dictionary keys but are different label text.
        if all(type(value) is str for value in values):
            if len(self._keys) >= _MAX_KEYS:
                self._keys.clear()
            self._keys[values if len(names) > 1 else values[0]] = key
        return key

    def _wrong_labels(self, labels: Mapping[str, Any]) -> MetricError:
        return MetricError(
            f"{self.name} takes labels {sorted(self.label_names)}, got {sorted(labels)}"
        )

    def remove(self, **labels: Any) -> None:
        """Drop the series with exactly these labels, if it exists."""
        self._store.pop(self._key(labels), None)

    def remove_where(self, **labels: Any) -> int:
        """Drop every series whose labels include these; how many went."""
        wanted = {name: label_value(value) for name, value in labels.items()}
        unknown = set(wanted) - set(self.label_names)
        if unknown:
            raise MetricError(f"{self.name} has no label {sorted(unknown)}")
        gone = [
            key
            for key, series in self._series()
            if all(series.get(k) == v for k, v in wanted.items())
        ]
        for key in gone:
            del self._store[key]
        return len(gone)

    def series(self) -> Iterator[dict[str, str]]:
        """The label sets of every series this metric has now."""
        for _key, labels in self._series():
            yield labels

    def _series(self) -> list[tuple[bytes | str, dict[str, str]]]:
        return [
            (key, {} if key == MetricDict.EMPTY_KEY else orjson.loads(key))
            for key in list(self._store)
        ]

    def clear(self) -> None:
        self._store.clear()


# Distinct label sets remembered per metric (accounts x statuses and the
# like); past this the memory starts over rather than growing.
_MAX_KEYS = 50_000


def _series_key(labels: dict[str, str]) -> bytes | str:
    """The key aioprometheus stores a series under (see ``MetricDict``)."""
    if not labels:
        return MetricDict.EMPTY_KEY
    return orjson.dumps(labels, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)


class Counter(Metric):
    """A value that only goes up; a new series starts at 0."""

    kind = "counter"

    def inc(self, amount: float = 1.0, /, **labels: Any) -> None:
        if amount < 0 or math.isnan(amount):
            raise MetricError(f"{self.name} cannot go down (amount {amount})")
        key = self._key(labels)
        store = self._store
        store[key] = store.get(key, 0) + amount

    def touch(self, **labels: Any) -> None:
        """Make the series exist at 0 so that the first increase is seen."""
        key = self._key(labels)
        if key not in self._store:
            self._store[key] = 0

    def value(self, **labels: Any) -> float | None:
        value: float | None = self._store.get(self._key(labels))
        return value


class Gauge(Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, /, **labels: Any) -> None:
        self._store[self._key(labels)] = value

    def inc(self, amount: float = 1.0, /, **labels: Any) -> None:
        key = self._key(labels)
        self._store[key] = self._store.get(key, 0) + amount

    def dec(self, amount: float = 1.0, /, **labels: Any) -> None:
        self.inc(-amount, **labels)

    def value(self, **labels: Any) -> float | None:
        value: float | None = self._store.get(self._key(labels))
        return value


class Histogram(Metric):
    """Observations counted in cumulative buckets (a bound is inclusive)."""

    kind = "histogram"

    def observe(self, value: float, /, **labels: Any) -> None:
        key = self._key(labels)
        state = self._store.get(key)
        if state is None:
            state = self._store[key] = self._new_state()
        state.observe(float(value))

    def touch(self, **labels: Any) -> None:
        """Make the series exist with every bucket at 0."""
        key = self._key(labels)
        if key not in self._store:
            self._store[key] = self._new_state()

    def _new_state(self) -> HistogramSeries:
        bounds: Any = self._metric
        return HistogramSeries(bounds.upper_bounds)

    def buckets(self, **labels: Any) -> dict[float, float] | None:
        """Cumulative count per upper bound, ``inf`` last; None if unseen."""
        state: Any = self._store.get(self._key(labels))
        if state is None:
            return None
        return {float(k): float(v) for k, v in state.buckets.items()}

    def count(self, **labels: Any) -> float | None:
        state: Any = self._store.get(self._key(labels))
        return None if state is None else float(state.observations)

    def sum(self, **labels: Any) -> float | None:
        state: Any = self._store.get(self._key(labels))
        return None if state is None else float(state.sum)


class HistogramSeries:
    """One histogram series, in the shape aioprometheus' own has (cumulative
    ``buckets`` by upper bound, ``observations``, ``sum``), that finds an
    observation's bucket by bisection instead of testing every bound."""

    __slots__ = ("_counts", "observations", "sum", "upper_bounds")

    def __init__(self, bounds: Sequence[float]) -> None:
        upper = [float(b) for b in bounds]
        if not upper or upper[-1] != math.inf:
            upper.append(math.inf)
        self.upper_bounds: tuple[float, ...] = tuple(upper)
        self._counts = [0] * len(upper)
        self.observations = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if value == value:  # NaN lands in no bucket, as in aioprometheus
            self._counts[bisect.bisect_left(self.upper_bounds, value)] += 1
        self.sum += value
        self.observations += 1

    @property
    def buckets(self) -> dict[float, int]:
        """Observations at or under each upper bound, ``inf`` last."""
        return dict(
            zip(self.upper_bounds, itertools.accumulate(self._counts), strict=True)
        )


class ExpositionRenderer:
    """Writes registries in the Prometheus text format, version 0.0.4.

    aioprometheus' own formatter neither escapes label values nor runs fast
    enough for hundreds of accounts: it decodes every series key and builds
    each line through several dictionaries on every scrape. This renderer
    reads the stored series directly and keeps each series' escaped label
    text between scrapes, so a scrape costs a string join per series.
    """

    def __init__(self) -> None:
        self._labels: dict[bytes | str, str] = {}

    def render(self, registry: aioprometheus.Registry) -> bytes:
        families = sorted(registry.get_all(), key=lambda c: c.name)
        lines: list[str] = []
        live = 0
        for family in families:
            kind = _KINDS.get(type(family))
            if kind is None:
                continue
            lines.append(f"# HELP {family.name} {escape_help(family.doc)}")
            lines.append(f"# TYPE {family.name} {kind}")
            store: dict[bytes | str, Any] = family.values.store
            live += len(store)
            if kind == "histogram":
                self._histogram_lines(family.name, store, lines)
                continue
            for key, value in store.items():
                lines.append(f"{family.name}{self._label_text(key)} {_number(value)}")
        lines.append("")

        # Series of removed accounts leave cached label text behind.
        if len(self._labels) > 2 * live + 1000:
            self._labels.clear()
        return "\n".join(lines).encode()

    def _histogram_lines(
        self, name: str, store: dict[bytes | str, Any], lines: list[str]
    ) -> None:
        for key, state in store.items():
            labels = self._label_text(key)
            prefix = labels[:-1] + "," if labels else "{"
            for bound, count in state.buckets.items():
                le = "+Inf" if math.isinf(bound) else str(float(bound))
                lines.append(f'{name}_bucket{prefix}le="{le}"}} {_number(count)}')
            lines.append(f"{name}_count{labels} {_number(state.observations)}")
            lines.append(f"{name}_sum{labels} {_number(state.sum)}")

    def _label_text(self, key: bytes | str) -> str:
        text = self._labels.get(key)
        if text is None:
            labels = {} if key == MetricDict.EMPTY_KEY else orjson.loads(key)
            text = (
                "{"
                + ",".join(
                    f'{k}="{escape_label_value(str(v))}"' for k, v in labels.items()
                )
                + "}"
                if labels
                else ""
            )
            self._labels[key] = text
        return text


_KINDS: dict[type, str] = {
    aioprometheus.Counter: "counter",
    aioprometheus.Gauge: "gauge",
    aioprometheus.Histogram: "histogram",
}


def _number(value: Any) -> str:
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    return repr(number)


_default_renderer = ExpositionRenderer()


def render(registry: aioprometheus.Registry) -> bytes:
    """The registry in the Prometheus text format, version 0.0.4."""
    return _default_renderer.render(registry)
