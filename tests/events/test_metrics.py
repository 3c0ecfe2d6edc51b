"""Typed metrics and the escaping text exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from codex_lb.events.collector_api import MetricRegistry
from codex_lb.events.metrics import MetricError


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class TestExposition:
    def test_label_value_round_trips(self) -> None:
        """A quote, a backslash and a newline survive rendering and parsing."""
        registry = MetricRegistry()
        gauge = registry.gauge("t", "codex_lb_x", "Help with \\ and\nnewline.", ("v",))
        nasty = 'a"b\\c\nd'
        gauge.set(1, v=nasty)

        text = registry.render().decode()

        assert samples(text) == {("codex_lb_x", (("v", nasty),)): 1.0}
        assert "# HELP codex_lb_x Help with \\\\ and\\nnewline." in text

    def test_lone_surrogate_becomes_a_replacement_character(self) -> None:
        """A label value no UTF-8 encoder accepts (a lone surrogate, as a
        broken email can hold) is kept with U+FFFD in its place; updating,
        rendering, parsing and removing the series all work."""
        registry = MetricRegistry()
        gauge = registry.gauge("t", "codex_lb_x", "X.", ("display",))

        gauge.set(1, display="a\ud800@x.com")
        gauge.set(2, display="\udfffb\u00e9")
        text = registry.render().decode()
        removed = gauge.remove_where(display="a\ud800@x.com")

        assert samples(text) == {
            ("codex_lb_x", (("display", "a\ufffd@x.com"),)): 1.0,
            ("codex_lb_x", (("display", "\ufffdb\u00e9"),)): 2.0,
        }
        assert removed == 1
        assert list(gauge.series()) == [{"display": "\ufffdb\u00e9"}]

    def test_counter_is_named_total_once(self) -> None:
        """A counter keeps the name it was given, ``_total`` exactly once."""
        registry = MetricRegistry()
        registry.counter("t", "codex_lb_things_total", "Things.").inc(2)

        text = registry.render().decode()

        assert "codex_lb_things_total 2\n" in text
        assert "_total_total" not in text

    def test_value_on_bucket_bound_lands_in_that_bucket(self) -> None:
        """``le`` is inclusive and the +Inf bucket equals the count."""
        registry = MetricRegistry()
        hist = registry.histogram("t", "codex_lb_h", "H.", ("api",), (10.0, 100.0))
        for value in (10.0, 10.5, 100.0, 1000.0):
            hist.observe(value, api="codex")

        got = samples(registry.render().decode())

        assert got[("codex_lb_h_bucket", (("api", "codex"), ("le", "10.0")))] == 1
        assert got[("codex_lb_h_bucket", (("api", "codex"), ("le", "100.0")))] == 3
        assert got[("codex_lb_h_bucket", (("api", "codex"), ("le", "+Inf")))] == 4
        assert got[("codex_lb_h_count", (("api", "codex"),))] == 4
        assert got[("codex_lb_h_sum", (("api", "codex"),))] == 1120.5


class TestMetric:
    def test_wrong_labels_are_refused(self) -> None:
        """An update naming the wrong labels fails where it is made."""
        counter = MetricRegistry().counter("t", "codex_lb_c_total", "C.", ("a",))

        with pytest.raises(MetricError, match="takes labels"):
            counter.inc(b="x")

    def test_counter_cannot_go_down(self) -> None:
        """A negative increment is refused."""
        counter = MetricRegistry().counter("t", "codex_lb_c_total", "C.")

        with pytest.raises(MetricError):
            counter.inc(-1)

    def test_remove_where_drops_matching_series(self) -> None:
        """Series are removed by a partial label match."""
        counter = MetricRegistry().counter(
            "t", "codex_lb_c_total", "C.", ("account_id", "status")
        )
        counter.inc(account_id="a", status="success")
        counter.inc(account_id="a", status="error")
        counter.inc(account_id="b", status="error")

        assert counter.remove_where(account_id="a") == 2
        assert list(counter.series()) == [{"account_id": "b", "status": "error"}]

    def test_equal_values_of_other_types_are_other_series(self) -> None:
        """1, 1.0 and True are equal as dictionary keys but have three label
        texts: each update lands in the series of its own text."""
        counter = MetricRegistry().counter("t", "codex_lb_c_total", "C.", ("v",))

        for value in ("1", 1, 1.0, True, "1"):
            counter.inc(v=value)

        assert sorted(s["v"] for s in counter.series()) == ["1", "1.0", "True"]
        assert counter.value(v="1") == 3
        assert counter.value(v="True") == 1

    def test_a_removed_series_starts_again_at_zero(self) -> None:
        """Updates after a removal make a new series, however often the label
        set was used before."""
        registry = MetricRegistry()
        counter = registry.counter("t", "codex_lb_c_total", "C.", ("account_id",))
        for _ in range(3):
            counter.inc(account_id="a")

        counter.remove(account_id="a")
        counter.inc(account_id="a")

        assert counter.value(account_id="a") == 1
        assert samples(registry.render().decode()) == {
            ("codex_lb_c_total", (("account_id", "a"),)): 1.0
        }

    def test_reserved_label_names_are_refused_at_declaration(self) -> None:
        """A histogram cannot declare ``le``: refused before any update."""
        with pytest.raises(ValueError, match="le"):
            MetricRegistry().histogram("t", "codex_lb_h", "H.", ("le",), (1.0,))
