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
        ],
    )
    def test_most_specific_price_wins(
        self, c05_table: PriceTable, model: str, cost: float
    ) -> None:
        """C05: exact beats prefix, longer prefix beats shorter."""
        assert c05_table.cost(model, MILLION_INPUT) == pytest.approx(cost)

    def test_a_new_version_is_not_priced_as_an_old_one(
        self, c05_table: PriceTable
    ) -> None:
        """C05: gpt-5.9-nova is unpriced with exactly the case's table, its
        ``gpt-5*`` alias included: it continues the version number, so it is
        a new model, not a variant of gpt-5."""
        assert c05_table.match("gpt-5.9-nova") is None
        assert c05_table.cost("gpt-5.9-nova", MILLION_INPUT) is None
        assert c05_table.label("gpt-5.9-nova") == "other"

    @pytest.mark.parametrize(
        ("model", "entry"),
        [
            ("gpt-5-codex", "gpt-5*"),
            ("gpt-5-2025-08-07", "gpt-5*"),
            ("gpt-5_preview", "gpt-5*"),
            ("gpt-5:beta", "gpt-5*"),
            ("gpt-5@2025", "gpt-5*"),
            ("gpt-5/eu", "gpt-5*"),
            ("gpt-50", None),
            ("gpt-5o", None),
            ("gpt-5.1", None),
            ("gpt-5.6-solar", None),
            ("gpt-5.6-sol.2", None),
            ("gpt-5.6-sol-mini", "gpt-5.6-sol*"),
            ("gpt", None),
        ],
    )
    def test_a_prefix_matches_at_a_separator_only(
        self, c05_table: PriceTable, model: str, entry: str | None
    ) -> None:
        """The prefix rule: equal, or going on at - _ : / @; never going on
        inside a version number or a word."""
        matched = c05_table.match(model)

        assert (matched[0] if matched else None) == (
            entry if model not in ("gpt-5", "gpt-5.6-sol") else model
        )

    def test_a_prefix_ending_in_a_separator_matches_anything_after(self) -> None:
        """``house-*`` takes any name after ``house-``; ``*`` takes every name."""
        table = PriceTable({"house-*": Price(1, 1, 1)})
        everything = PriceTable({"*": Price(2, 2, 2)})

        assert table.match("house-large.2") == ("house-*", Price(1, 1, 1))
        assert table.match("house") is None
        assert everything.match("anything.at/all") == ("*", Price(2, 2, 2))

    def test_the_builtin_table_prices_every_model_it_lists(self) -> None:
        """Each built-in name is priced by its own entry, not a neighbour's."""
        table = PriceTable.builtin()

        for name in table.names:
            if name.endswith("*"):
                continue
            matched = table.match(name)
            assert matched is not None and matched[0] == name, name

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

    @pytest.mark.parametrize(
        ("line", "shown"),
        [
            ("input = nan", "nan"),
            ("input = inf", "inf"),
            ("input = 1e400", "inf"),
            ("input = -0.5", "-0.5"),
            ("cached_input = -inf", "-inf"),
        ],
    )
    def test_a_price_that_is_no_finite_amount_is_refused(
        self, tmp_path: Path, line: str, shown: str
    ) -> None:
        """A price every cost would turn into NaN or infinity stops start-up.

        Such a cost cannot be stored or summed, so the request would count
        neither as priced nor as unpriced.
        """
        path = tmp_path / "prices.toml"
        valid = "input = 1\n" if line.startswith("cached_input") else ""
        path.write_text(f'[models."gpt-5"]\noutput = 1\n{valid}{line}\n')

        with pytest.raises(PricingFileError, match=rf"gpt-5.*= {shown}: must be"):
            PriceTable.load(path)


# The catalog of the pinned Codex CLI 0.171.0 (its bundled models.json),
# with OpenAI's published Standard rates per 1M tokens.
CODEX_CLI_CATALOG_PRICES = {
    "gpt-6.2-sol": (2.0, 0.1, 10.0),
    "gpt-6.2-astra": (8.0, 0.4, 40.0),
    "gpt-6-astra": (10.0, 1.0, 50.0),
    "gpt-6.1-sol": (2.0, 0.1, 10.0),
    "gpt-6.1-terra": (1.0, 0.05, 5.0),
    "gpt-6-sol": (2.0, 0.2, 10.0),
    "gpt-6-luna": (0.1, 0.01, 0.5),
    "gpt-5.6-sol": (4.0, 0.4, 20.0),
    "gpt-5.6-terra": (2.0, 0.2, 12.0),
    "gpt-5.6-luna": (0.2, 0.02, 1.2),
    "gpt-5.5": (5.0, 0.5, 30.0),
}
# In that catalog but with no published price: unpriced, never guessed.
CODEX_CLI_UNPUBLISHED = (
    "gpt-daybreak-blue-latest",
    "gpt-daybreak-red-latest",
    "codex-auto-review",
)


class TestBuiltinTable:
    @pytest.mark.parametrize(("model", "rates"), CODEX_CLI_CATALOG_PRICES.items())
    def test_prices_every_current_codex_model(
        self, model: str, rates: tuple[float, float, float]
    ) -> None:
        """Each model the bundled Codex CLI offers costs its published rate."""
        table = PriceTable.builtin()
        usage = Usage(3_000_000, 1_000_000, 2_000_000, 500_000)
        input_rate, cached_rate, output_rate = rates

        cost = table.cost(model, usage)

        assert cost == pytest.approx(2 * input_rate + cached_rate + 2 * output_rate)
        assert table.label(model) == model

    @pytest.mark.parametrize("model", CODEX_CLI_UNPUBLISHED)
    def test_models_without_a_published_price_stay_unpriced(self, model: str) -> None:
        """A catalog name no price was published for is not priced by a guess."""
        assert PriceTable.builtin().cost(model, MILLION_INPUT) is None
