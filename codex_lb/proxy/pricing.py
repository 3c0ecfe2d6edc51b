"""The price table: USD per million tokens, and the cost of one request.

A name ending in ``*`` is a prefix alias. It matches a model named exactly
the prefix, or one that goes on after the prefix at a separator (``-``,
``_``, ``:``, ``/``, ``@``): ``gpt-5*`` matches ``gpt-5``, ``gpt-5-codex``
and ``gpt-5-2025-08-07``, but never a name that continues the prefix's
version number or word, such as ``gpt-5.9-nova`` or ``gpt-50`` (a new model,
not a variant). A prefix that itself ends in a separator (``house-*``)
matches anything after it, and ``*`` alone matches every model.

An exact name beats any prefix and a longer prefix beats a shorter one. A
model with no match is unpriced (``unknown_pricing``): its cost is unknown,
never guessed from a neighbour.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from codex_lb.constants import BUILTIN_PRICES

OTHER_MODEL = "other"
# Where a model name may go on after a prefix alias (see the module's doc).
SEPARATORS = frozenset("-_:/@")


class PricingFileError(ValueError):
    """The pricing file cannot be used; the message names the entry."""


@attrs.frozen
class Price:
    """USD per million tokens."""

    input: float
    cached_input: float
    output: float


@attrs.frozen
class Usage:
    """Tokens of one request; cached is part of input, reasoning of output."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int


class PriceTable:
    """Looks up the price of a model name."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._exact = {k: v for k, v in prices.items() if not k.endswith("*")}
        self._prefixes = sorted(
            ((k[:-1], k, v) for k, v in prices.items() if k.endswith("*")),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self._labels: dict[str, str] = {}

    @classmethod
    def builtin(cls) -> PriceTable:
        return cls({k: Price(*v) for k, v in BUILTIN_PRICES.items()})

    @classmethod
    def load(cls, path: Path | None) -> PriceTable:
        """The built-in table, with the entries of ``path`` replacing or adding."""
        prices = {k: Price(*v) for k, v in BUILTIN_PRICES.items()}
        if path is not None:
            prices.update(_read_pricing_file(path))
        return cls(prices)

    @property
    def names(self) -> list[str]:
        return sorted([*self._exact, *(name for _, name, _ in self._prefixes)])

    def match(self, model: str | None) -> tuple[str, Price] | None:
        """The table entry that prices ``model``: (its name, its price)."""
        if not model:
            return None
        price = self._exact.get(model)
        if price is not None:
            return model, price
        for prefix, name, price in self._prefixes:
            if _extends(model, prefix):
                return name, price
        return None

    def label(self, model: str | None) -> str:
        """The metric label for ``model``: a table name, else ``other``.

        Bounded by the table, so junk model names cannot grow the series.
        """
        if not model:
            return OTHER_MODEL
        label = self._labels.get(model)
        if label is None:
            matched = self.match(model)
            label = matched[0] if matched else OTHER_MODEL
            if len(self._labels) < 10_000:
                self._labels[model] = label
        return label

    def cost(self, model: str | None, usage: Usage) -> float | None:
        """USD for ``usage`` on ``model``; None when the model is unpriced."""
        matched = self.match(model)
        if matched is None:
            return None
        price = matched[1]
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        return (
            (usage.input_tokens - cached) * price.input
            + cached * price.cached_input
            + usage.output_tokens * price.output
        ) / 1_000_000


def _extends(model: str, prefix: str) -> bool:
    """Whether ``model`` is ``prefix`` or a variant of it (see the module doc)."""
    if not model.startswith(prefix):
        return False
    if len(model) == len(prefix) or not prefix or prefix[-1] in SEPARATORS:
        return True
    return model[len(prefix)] in SEPARATORS


def _read_pricing_file(path: Path) -> dict[str, Price]:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PricingFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PricingFileError(f"{path}: not valid TOML: {exc}") from exc

    models = document.get("models")
    if not isinstance(models, dict):
        raise PricingFileError(f'{path}: expected a [models."NAME"] table')
    prices: dict[str, Price] = {}
    for name, entry in models.items():
        prices[name] = _price_entry(path, name, entry)
    return prices


def _price_entry(path: Path, name: str, entry: Any) -> Price:
    where = f'{path}: [models."{name}"]'
    if not isinstance(entry, dict):
        raise PricingFileError(f"{where}: must be a table")
    values = {}
    for key in ("input", "cached_input", "output"):
        value = entry.get(key, entry.get("input") if key == "cached_input" else None)
        # TOML reads nan, inf and 1e400 as floats; each would make every
        # cost of the model a NaN or infinity, neither priced nor unpriced.
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise PricingFileError(
                f"{where}.{key} = {value!r}: must be a finite number of USD >= 0"
            )
        values[key] = float(value)
    return Price(**values)
