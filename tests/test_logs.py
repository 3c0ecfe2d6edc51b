"""Log redaction: secrets never reach a log line, counts and ids do."""

from __future__ import annotations

import io
import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog
import structlog.testing
from structlog.processors import TimeStamper

from codex_lb.logs import (
    REDACTED,
    FailureStreak,
    KnownSecrets,
    LogOutput,
    add_timestamp,
    redact_bytes,
    redact_secrets,
    redact_text,
    remember_secret,
    render_json,
)


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


class TestKnownSecrets:
    """Secrets codex-lb holds are blanked by value, whatever their shape."""

    def test_an_opaque_token_is_blanked_wherever_it_appears(self) -> None:
        """No prefix, in prose, in JSON, in a query string, before a full stop."""
        known = KnownSecrets()
        known.add("Zq81opaque0pq")

        texts = [
            "refresh with Zq81opaque0pq failed",
            '{"token":"Zq81opaque0pq"}',
            "GET /x?access=Zq81opaque0pq&y=1",
            "sent Zq81opaque0pq.",
        ]

        assert [known.redact(t) for t in texts] == [
            f"refresh with {REDACTED} failed",
            f'{{"token":"{REDACTED}"}}',
            f"GET /x?access={REDACTED}&y=1",
            f"sent {REDACTED}.",
        ]

    def test_a_secret_with_any_characters_is_found(self) -> None:
        """An admin token of any characters, base64 with padding and slashes."""
        known = KnownSecrets()
        known.add("pa$$ word!42")
        known.add("YWJj/ZGVm+Z2hp==")
        known.add("dXJsc2FmZQ==")

        assert known.redact("a pa$$ word!42 b") == f"a {REDACTED} b"
        assert known.redact("t=YWJj/ZGVm+Z2hp==") == f"t={REDACTED}"
        assert known.redact("t=dXJsc2FmZQ==;") == f"t={REDACTED}==;"

    def test_only_the_exact_value_goes(self) -> None:
        """A longer word holding the secret, a shorter one, and short secrets
        are left alone (a short secret would blank ordinary words)."""
        known = KnownSecrets()
        known.add("Zq81opaque0pq")
        known.add("short1")

        text = "xZq81opaque0pq Zq81opaque0p short1 status ok"

        assert known.redact(text) == text
        assert len(known) == 1

    def test_the_newest_secrets_are_kept_within_the_bound(self) -> None:
        """Past MAX_SECRETS the oldest are forgotten, so the set cannot grow
        without bound (keys presented by clients are remembered too)."""
        known = KnownSecrets()
        known.MAX_SECRETS = 3
        for n in range(5):
            known.add(f"secret-number-{n}")

        assert len(known) == 3
        assert known.redact("secret-number-0") == "secret-number-0"
        assert known.redact("secret-number-4") == REDACTED

    def test_remembered_secrets_leave_every_log_field(self) -> None:
        """Through the structlog processor: any field, nested or not."""
        remember_secret("Mt41opaqueMetrics")

        result = redacted(
            event="odd",
            note="token Mt41opaqueMetrics used",
            nested={"x": ["Mt41opaqueMetrics"]},
        )

        assert result == {
            "event": "odd",
            "note": f"token {REDACTED} used",
            "nested": {"x": [REDACTED]},
        }

    def test_a_body_quoting_a_remembered_secret_is_redacted(self) -> None:
        """redact_bytes (upstream error bodies passed back) blanks them too."""
        remember_secret("Ad93opaqueAdmin7")

        assert redact_bytes(b'{"m": "saw Ad93opaqueAdmin7"}') == (
            b'{"m": "saw ' + REDACTED.encode() + b'"}'
        )

    def test_a_text_seen_before_its_secret_was_remembered_is_blanked_after(
        self,
    ) -> None:
        """Short texts are redacted once and the result kept: remembering a
        new secret makes every kept text count again."""
        text = "account Kp20lateSecret9 refreshed"
        assert redact_text(text) == text

        remember_secret("Kp20lateSecret9")

        assert redact_text(text) == f"account {REDACTED} refreshed"

    def test_a_secret_remembered_again_is_known_already(self) -> None:
        """Adding a secret twice says it is new only the first time."""
        known = KnownSecrets()

        assert known.add("Wd55twiceSeen1") is True
        assert known.add("Wd55twiceSeen1") is False
        assert known.add("pa$$ word!43") is True
        assert known.add("pa$$ word!43") is False


class TestRenderJson:
    def test_writes_one_json_line_of_the_fields(self) -> None:
        """Plain fields come out as JSON with their types, in order."""
        line = render_json(None, "info", {"event": "x", "n": 1, "f": 0.5, "z": None})

        assert json.loads(line) == {"event": "x", "n": 1, "f": 0.5, "z": None}
        assert "\n" not in line

    def test_what_orjson_refuses_is_still_written(self) -> None:
        """A lone surrogate, an integer past 64 bits and an object that is not
        JSON: the line is written all the same."""
        odd = object()

        line = render_json(
            None, "info", {"event": "x", "s": "a\ud800b", "big": 2**70, "o": odd}
        )

        assert json.loads(line) == {
            "event": "x",
            "s": "a\ud800b",
            "big": 2**70,
            "o": repr(odd),
        }


class TestTimestamp:
    def test_iso_utc_to_the_microsecond_like_structlogs(self) -> None:
        """The same shape as structlog's TimeStamper(fmt="iso", utc=True), and
        the same instant within the time between the two calls."""
        theirs = TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
        ours = add_timestamp(None, "info", {})["timestamp"]

        shape = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
        assert re.fullmatch(shape, ours) and re.fullmatch(shape, theirs)
        parsed = [
            datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (theirs, ours)
        ]
        assert timedelta(0) <= parsed[1] - parsed[0] < timedelta(seconds=1)

    def test_a_new_second_is_written_anew(self) -> None:
        """Two stamps a second apart differ in their seconds, not only in
        the fraction (the second is formatted once and kept)."""
        first = add_timestamp(None, "info", {})["timestamp"]
        time.sleep(1.01)
        second = add_timestamp(None, "info", {})["timestamp"]

        assert first[:19] != second[:19]


class TestFailureStreak:
    def test_a_flapping_store_logs_at_most_a_pair_of_lines_a_minute(self) -> None:
        now = [0.0]
        streak = FailureStreak(
            structlog.get_logger("test"), "thing_write", clock=lambda: now[0]
        )
        with structlog.testing.capture_logs() as logs:
            for step in range(240):  # two minutes: a failure, then a success
                now[0] = step * 0.5
                if step % 2 == 0:
                    streak.failed(error="disk full")
                else:
                    streak.succeeded()

        assert [(e["event"], e["failed_writes"]) for e in logs] == [
            ("thing_write_failed", 1),
            ("thing_write_recovered", 1),
            ("thing_write_failed", 61),
            ("thing_write_recovered", 61),
        ]
        assert logs[0]["log_level"] == "error"


class TestLogOutput:
    def test_lines_that_cannot_be_written_are_counted_not_raised(self) -> None:
        class BrokenPipe:
            def write(self, text: str) -> int:
                raise BrokenPipeError(32, "Broken pipe")

            def flush(self) -> None:
                raise BrokenPipeError(32, "Broken pipe")

            def isatty(self) -> bool:
                raise ValueError("I/O operation on closed file")

        output = LogOutput(BrokenPipe())

        assert [output.write("a line\n") for _ in range(3)] == [0, 0, 0]
        output.flush()
        assert output.lost == 3
        assert output.isatty() is False

    def test_a_working_stream_gets_every_line(self) -> None:
        stream = io.StringIO()
        output = LogOutput(stream)

        output.write("one\n")
        output.write("two\n")
        stream.close()
        output.write("three\n")

        assert output.lost == 1
