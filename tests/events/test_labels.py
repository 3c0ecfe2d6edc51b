"""Bounded error-code labels: one list of known codes, the rest ``other``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from codex_lb.constants import PERMANENT_REFRESH_CODES, QUOTA_CODES, RATE_LIMIT_CODES
from codex_lb.events.labels import (
    KNOWN_ERROR_CODES,
    SELECTION_OUTCOMES,
    SELECTION_POOLS,
    error_code_label,
)

ROOT = Path(__file__).resolve().parents[2]

# Calls whose positional argument at this index is an error code.
CODE_ARGUMENT = {"error_response": 1, "error_body": 0, "Outcome": 1, "ClientError": 1}

# The client-visible codes of SPEC section 5's table.
SPEC_CODES = {
    "usage_limit_reached",
    "no_accounts",
    "invalid_request_error",
    "request_too_large",
    "upstream_unavailable",
    "stream_incomplete",
}


def strings(node: ast.AST | None) -> Iterator[str]:
    """The string constants ``node`` can evaluate to (a or b, x if c else y)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from strings(node.body)
        yield from strings(node.orelse)
    elif isinstance(node, ast.BoolOp):
        for value in node.values:
            yield from strings(value)


def name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def codes_in_source(folder: Path) -> dict[str, str]:
    """Every error code written literally in ``folder``'s modules: passed to
    the error builders, given as ``code=``/``error_code=``, assigned to a
    name ending in ``code``, or returned by a function named ``..._code``;
    code -> where."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.AST | None] = []
            if isinstance(node, ast.Call):
                index = CODE_ARGUMENT.get(name_of(node.func))
                if index is not None and len(node.args) > index:
                    values.append(node.args[index])
                values += [
                    k.value for k in node.keywords if k.arg in ("code", "error_code")
                ]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = (
                    node.targets if isinstance(node, ast.Assign) else [node.target]
                )
                if any(name_of(t).endswith("code") for t in targets):
                    values.append(node.value)
            elif isinstance(node, ast.FunctionDef) and node.name.endswith("_code"):
                values += [r.value for r in ast.walk(node) if isinstance(r, ast.Return)]
            for value in values:
                for code in strings(value):
                    found.setdefault(code, f"{where}:{node.lineno}")
    return found


class TestKnownCodes:
    def test_every_code_codex_lb_writes_is_known(self) -> None:
        """A code the proxy or the account pool produces itself is never
        ``other`` (the scan finds codes added later, too)."""
        produced = codes_in_source(ROOT / "codex_lb" / "proxy")
        produced |= codes_in_source(ROOT / "codex_lb" / "accounts")

        unknown = {c: w for c, w in produced.items() if c not in KNOWN_ERROR_CODES}

        assert len(produced) >= 15
        assert unknown == {}

    def test_spec_and_refresh_codes_are_known(self) -> None:
        """SPEC 5's client errors, the upstream's limit and quota codes and
        the refresh failures that need a new login are all kept."""
        for codes in (SPEC_CODES, RATE_LIMIT_CODES, QUOTA_CODES):
            assert codes <= KNOWN_ERROR_CODES
        assert PERMANENT_REFRESH_CODES <= KNOWN_ERROR_CODES

    def test_label_of_a_code(self) -> None:
        """Known codes stay, junk is ``other``, no code is ``unknown``."""
        assert error_code_label("invalid_grant") == "invalid_grant"
        assert error_code_label("stream_incomplete") == "stream_incomplete"
        assert error_code_label("gpt-5-typo-17 not found") == "other"
        assert error_code_label(None) == "unknown"
        assert error_code_label("") == "unknown"


def selection_values(path: Path) -> tuple[set[str], set[str]]:
    """The pools and outcomes ``path`` publishes in ``account_selected``:
    literals given as ``pool=``/``outcome=``, assigned to ``outcome`` or
    ``pool``, passed as a pool to ``_select_from``, or returned by
    ``why_none``."""
    pools: set[str] = set()
    outcomes: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "pool":
                    pools |= set(strings(keyword.value))
                if keyword.arg == "outcome":
                    outcomes |= set(strings(keyword.value))
            if name_of(node.func) == "_select_from" and len(node.args) > 1:
                pools |= set(strings(node.args[1]))
            if name_of(node.func) == "_chosen" and len(node.args) > 1:
                pools |= set(strings(node.args[1]))
        elif isinstance(node, ast.Assign):
            names = {name_of(t) for t in node.targets}
            if "outcome" in names:
                outcomes |= set(strings(node.value))
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("why_none"):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Return):
                    outcomes |= set(strings(sub.value))
    return pools, outcomes


class TestSelectionValues:
    def test_every_pool_and_outcome_the_pool_publishes_is_listed(self) -> None:
        """The routing collector makes each pool and outcome exist at 0; the
        lists it uses hold everything the account pool publishes."""
        pools: set[str] = set()
        outcomes: set[str] = set()
        for path in (ROOT / "codex_lb/accounts").glob("*.py"):
            found = selection_values(path)
            pools |= found[0]
            outcomes |= found[1]

        assert pools == set(SELECTION_POOLS)
        assert outcomes == set(SELECTION_OUTCOMES)
