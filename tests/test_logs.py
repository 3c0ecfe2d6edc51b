"""Log redaction: secrets never reach a log line, counts and ids do."""

from __future__ import annotations

from typing import Any

import pytest

from codex_lb.logs import REDACTED, redact_bytes, redact_secrets, redact_text


def redacted(**fields: Any) -> dict[str, Any]:
    return dict(redact_secrets(None, "info", dict(fields)))


class TestRedactText:
    @pytest.mark.parametrize(
        "secret",
        [
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln",
            "sk-clb-abcdef123456",
            "rt-0123456789",
            "rt_abc.def",
            "at-opaque-token",
            "at_opaque.token",
        ],
    )
    def test_blanks_each_kind_of_token_inside_text(self, secret: str) -> None:
        """A token anywhere in a message is replaced, its surroundings kept."""
        text = f"refresh failed for {secret} today"

        result = redact_text(text)

        assert result == f"refresh failed for {REDACTED} today"

    @pytest.mark.parametrize("word", ["Bearer", "bearer", "BEARER", "bEaReR"])
    def test_blanks_bearer_credentials_in_any_case(self, word: str) -> None:
        """An authorization value is blanked whatever the case of its scheme."""
        result = redact_text(f"header was {word} abc.def~ghi")

        assert result == f"header was {REDACTED}"

    def test_leaves_text_without_secrets_alone(self) -> None:
        """Ordinary text, including words that merely contain 'at', passes."""
        text = "gpt-5 at 12:00, status rate_limited, account 9f1c2b3a"

        assert redact_text(text) == text


class TestRedactSecrets:
    def test_blanks_fields_named_for_secrets_and_keeps_counts(self) -> None:
        """Secret-named fields go; token counts and plain values stay."""
        result = redacted(
            event="request_finished",
            refresh_token="anything",
            authorization="x",
            input_tokens=1200,
            output_tokens=300,
            latency_ms=12.5,
            error_code=None,
            model="gpt-5",
        )

        assert result == {
            "event": "request_finished",
            "refresh_token": REDACTED,
            "authorization": REDACTED,
            "input_tokens": 1200,
            "output_tokens": 300,
            "latency_ms": 12.5,
            "error_code": None,
            "model": "gpt-5",
        }

    def test_redacts_inside_nested_values(self) -> None:
        """Dicts and lists are searched: secret keys and token values both."""
        result = redacted(
            detail={"api_key": "k", "note": "sent sk-abcdef1"},
            items=["ok", "rt-123456"],
        )

        assert result == {
            "detail": {"api_key": REDACTED, "note": f"sent {REDACTED}"},
            "items": ["ok", REDACTED],
        }

    def test_same_field_name_is_judged_alike_every_time(self) -> None:
        """A field judged once (cached) is redacted on every later line too."""
        first = redacted(id_token="a")
        second = redacted(id_token="b")

        assert first == second == {"id_token": REDACTED}


class TestRedactBytes:
    def test_blanks_tokens_in_a_body_and_keeps_other_bytes(self) -> None:
        """An upstream error body loses its tokens; undecodable bytes stay."""
        body = b'{"error": "Bearer at-LEAK-1 for rt-LEAK-2"}\xff'

        result = redact_bytes(body)

        assert result == b'{"error": "[redacted] for [redacted]"}\xff'

    def test_returns_a_clean_body_unchanged(self) -> None:
        """A body with nothing to hide is the very same bytes."""
        body = b'{"error": {"code": "invalid_value"}}'

        assert redact_bytes(body) is body
