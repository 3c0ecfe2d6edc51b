"""Prices: most specific entry wins, unknown models stay unpriced."""

from __future__ import annotations

from pathlib import Path

import pytest

from codex_lb.proxy.pricing import Price, PriceTable, PricingFileError, Usage

MILLION_INPUT = Usage(1_000_000, 0, 0, 0)


@pytest.fixture
def c05_table() -> PriceTable:
    return PriceTable(
        {
            "gpt-5": Price(1.25, 0.125, 10.0),
            "gpt-5.6-sol": Price(5.00, 0.50, 30.0),
            "gpt-5*": Price(1.25, 0.125, 10.0),
            "gpt-5.6-sol*": Price(5.00, 0.50, 30.0),
        }
    )


class TestPriceTable:
    @pytest.mark.parametrize(
        ("model", "cost"),
        [
            ("gpt-5", 1.25),
            ("gpt-5.6-sol", 5.00),
            ("gpt-5.6-sol-2026-07-01", 5.00),
            ("gpt-5.9-nova", 1.25),
        ],
    )
    def test_most_specific_price_wins(
        self, c05_table: PriceTable, model: str, cost: float
    ) -> None:
        """C05: exact beats prefix, longer prefix beats shorter."""
        assert c05_table.cost(model, MILLION_INPUT) == pytest.approx(cost)

    def test_unmatched_model_is_unpriced(self) -> None:
        """C05: with no prefix alias, gpt-5.9-nova has no price, not a guess."""
        table = PriceTable(
            {"gpt-5": Price(1.25, 0.125, 10.0), "gpt-5.6-sol*": Price(5, 0.5, 30)}
        )

        assert table.cost("gpt-5.9-nova", MILLION_INPUT) is None
        assert table.label("gpt-5.9-nova") == "other"

    def test_cost_formula_splits_cached_input(self) -> None:
        """Cost = (input - cached) x input + cached x cached + output x output."""
        table = PriceTable({"m": Price(2.0, 0.5, 8.0)})
        usage = Usage(
            input_tokens=1000,
            cached_input_tokens=400,
            output_tokens=300,
            reasoning_tokens=100,
        )

        expected = (600 * 2.0 + 400 * 0.5 + 300 * 8.0) / 1e6
        assert table.cost("m", usage) == pytest.approx(expected)

    def test_labels_are_bounded_by_the_table(self) -> None:
        """C10: junk model names all share the ``other`` label."""
        table = PriceTable.builtin()

        labels = {table.label(f"gpt-5-typo-{i}") for i in range(1000)}

        assert labels == {"other"}
        assert table.label("gpt-5") == "gpt-5"

    def test_pricing_file_replaces_and_adds(self, tmp_path: Path) -> None:
        """A TOML file overrides a built-in price and adds a prefix alias."""
        path = tmp_path / "prices.toml"
        path.write_text(
            '[models."gpt-5"]\ninput = 2.0\ncached_input = 0.2\noutput = 20.0\n'
            '[models."house-*"]\ninput = 1.0\ncached_input = 0.1\noutput = 1.0\n'
        )

        table = PriceTable.load(path)

        assert table.cost("gpt-5", MILLION_INPUT) == pytest.approx(2.0)
        assert table.cost("house-large", MILLION_INPUT) == pytest.approx(1.0)
        assert table.label("house-large") == "house-*"

    def test_bad_pricing_file_names_the_entry(self, tmp_path: Path) -> None:
        """A wrong price names the model and key."""
        path = tmp_path / "prices.toml"
        path.write_text('[models."gpt-5"]\ninput = "cheap"\noutput = 1\n')

        with pytest.raises(PricingFileError, match=r"gpt-5.*input.*cheap"):
            PriceTable.load(path)
