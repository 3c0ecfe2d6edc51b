"""Account: its tokens are kept out of the logs by value, however they come."""

from __future__ import annotations

from codex_lb.accounts.account import ACTIVE, Account
from codex_lb.logs import REDACTED, redact_text
from codex_lb.store import TokenSet

T = 1_800_000_000.0


def account(tokens: TokenSet) -> Account:
    return Account(
        id="acc_1",
        email="a@example.com",
        chatgpt_account_id="cg-1",
        plan="plus",
        status=ACTIVE,
        status_reason=None,
        status_until=None,
        pinned=False,
        tokens=tokens,
        quota=None,
        last_used_at=None,
    )


class TestTokens:
    def test_loaded_and_refreshed_tokens_are_redacted_by_value(self) -> None:
        """Tokens given at construction and tokens assigned later (a
        refresh) are both blanked wherever they appear in a log text."""
        first = TokenSet("Ld1opaqueAccess", "Ld1opaqueRefresh", None, T)
        later = TokenSet("Rf2opaqueAccess", "Rf2opaqueRefresh", "Rf2opaqueIdTok", T)

        held = account(first)
        held.tokens = later

        assert held.tokens is later
        secrets = (
            first.access_token,
            first.refresh_token,
            later.access_token,
            later.refresh_token,
            later.id_token,
        )
        for secret in secrets:
            assert redact_text(f"saw {secret} here") == f"saw {REDACTED} here"

    def test_routing_fields_are_set_without_hooks(self) -> None:
        """Routing's per-request fields are plain attributes (no attrs hook
        runs on assignment, which every request would pay for)."""
        assert Account.__setattr__ is object.__setattr__
