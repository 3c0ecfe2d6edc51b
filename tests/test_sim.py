"""Tests of the emulated ChatGPT backend, over loopback with a real client."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import itertools
import json
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import zstandard

from codex_lb.constants import AUTH_CLAIM, CODEX_OAUTH_CLIENT_ID
from codex_lb.sim import Emulator, Fault, SimAccount, decode_jwt
from codex_lb.sim.__main__ import build_emulator, parse_args

PLUS = "a@example.com"
FREE = "f@example.com"
MODEL = "gpt-5.1-codex"

# A request whose usage is worked out by hand: `input` "hi" is '"hi"' as
# JSON, 4 characters, 1 token; the answer "Hello from a@example.com. You
# said: hi" has 38 characters, 9 tokens, plus 2 x 9 reasoning tokens at the
# default medium effort. At gpt-5.1-codex prices that costs
# (1 x 1.25 + 27 x 10) / 1e6 = 0.00027125 USD.
SMALL_BODY = {"model": MODEL, "input": "hi", "stream": True}
SMALL_COST = 0.00027125


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    # A frozen clock and tiny window worths make every percent exact.
    emulator = Emulator(
        [
            SimAccount.make(PLUS, "plus", primary_dollars=0.01, secondary_dollars=0.1),
            SimAccount.make(FREE, "free", secondary_dollars=0.1),
        ],
        clock_speed=0,
        event_delay=0,
    )
    await emulator.start()
    yield emulator
    await emulator.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(emu: Emulator, email: str = PLUS) -> dict[str, str]:
    account = emu.account(email)
    return {
        "Authorization": f"Bearer {account.access_token}",
        "chatgpt-account-id": account.chatgpt_account_id,
    }


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def post_responses(
    http: aiohttp.ClientSession,
    emu: Emulator,
    body: dict[str, Any],
    email: str = PLUS,
) -> tuple[aiohttp.ClientResponse, list[tuple[str, dict[str, Any]]]]:
    url = emu.upstream_base_url + "/codex/responses"
    async with http.post(url, json=body, headers=bearer(emu, email)) as resp:
        raw = await resp.read()
    events = parse_sse(raw) if resp.status == 200 else []
    return resp, events


def completed(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    name, data = events[-1]
    assert name == "response.completed"
    response: dict[str, Any] = data["response"]
    return response


class TestResponses:
    async def test_stream_has_the_backend_event_sequence(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A text answer streams the events the real backend sends, in order."""
        resp, events = await post_responses(http, emu, SMALL_BODY)

        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        names = [name for name, _ in events]
        assert names == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            *["response.output_text.delta"] * 4,
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [data["sequence_number"] for _, data in events] == list(range(12))
        assert all(data["type"] == name for name, data in events)

    async def test_answer_names_the_account_and_echoes_the_prompt(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The text says which account answered and repeats the prompt."""
        _, events = await post_responses(http, emu, SMALL_BODY)

        text = "Hello from a@example.com. You said: hi"
        deltas = "".join(d["delta"] for n, d in events if n.endswith("text.delta"))
        assert deltas == text
        item = completed(events)["output"][0]
        assert item["type"] == "message"
        assert item["content"][0] == {
            "type": "output_text",
            "text": text,
            "annotations": [],
        }

    async def test_usage_is_counted_from_the_request_and_answer(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Input is JSON length over four, output the answer's plus reasoning."""
        _, events = await post_responses(http, emu, SMALL_BODY)

        response = completed(events)
        assert response["model"] == MODEL
        assert response["id"].startswith("resp_")
        assert response["usage"] == {
            "input_tokens": 1,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 27,
            "output_tokens_details": {"reasoning_tokens": 18},
            "total_tokens": 28,
        }

    async def test_reasoning_tokens_follow_the_effort(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """High effort gives four reasoning tokens per visible token."""
        body = {**SMALL_BODY, "reasoning": {"effort": "high"}}
        _, events = await post_responses(http, emu, body)

        usage = completed(events)["usage"]
        assert usage["output_tokens_details"]["reasoning_tokens"] == 36
        assert usage["output_tokens"] == 45

    async def test_repeated_cache_key_counts_cached_input(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The second request of a session has the first one's input cached."""
        history = [{"type": "message", "role": "user", "content": "x" * 400}]
        first = {**SMALL_BODY, "input": history, "prompt_cache_key": "s1"}
        longer = [*history, {"type": "message", "role": "user", "content": "more"}]
        second = {**first, "input": longer}

        _, events_one = await post_responses(http, emu, first)
        _, events_two = await post_responses(http, emu, second)

        one = completed(events_one)["usage"]
        two = completed(events_two)["usage"]
        assert one["input_tokens_details"]["cached_tokens"] == 0
        assert two["input_tokens_details"]["cached_tokens"] == one["input_tokens"]
        assert two["input_tokens"] > one["input_tokens"]

    async def test_cache_is_per_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A cache key seen on one account is cold on another."""
        body = {**SMALL_BODY, "prompt_cache_key": "shared"}
        await post_responses(http, emu, body, PLUS)
        _, events = await post_responses(http, emu, body, FREE)

        assert completed(events)["usage"]["input_tokens_details"]["cached_tokens"] == 0

    async def test_non_streaming_request_gets_the_completed_response(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """With stream false the answer is the completed response as JSON."""
        url = emu.upstream_base_url + "/codex/responses"
        body = {**SMALL_BODY, "stream": False}
        async with http.post(url, json=body, headers=bearer(emu)) as resp:
            payload = await resp.json()

        assert resp.status == 200
        assert payload["status"] == "completed"
        assert payload["usage"]["output_tokens"] == 27
        assert resp.headers["x-codex-primary-used-percent"] == "2.7125"

    @pytest.mark.parametrize(
        ("encoding", "compress"),
        [
            ("gzip", gzip.compress),
            ("deflate", zlib.compress),
            ("zstd", lambda data: zstandard.ZstdCompressor().compress(data)),
        ],
    )
    async def test_compressed_bodies_are_decoded(
        self,
        emu: Emulator,
        http: aiohttp.ClientSession,
        encoding: str,
        compress: Any,
    ) -> None:
        """zstd, gzip and deflate request bodies are read and recorded plain."""
        url = emu.upstream_base_url + "/codex/responses"
        headers = {
            **bearer(emu),
            "Content-Encoding": encoding,
            "Content-Type": "application/json",
        }
        data = compress(json.dumps(SMALL_BODY).encode())
        async with http.post(url, data=data, headers=headers) as resp:
            events = parse_sse(await resp.read())

        assert resp.status == 200
        assert completed(events)["usage"]["input_tokens"] == 1
        assert emu.requests[-1].body == SMALL_BODY

    async def test_unknown_model_is_refused(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A model the emulator does not serve gets 400 model_not_found."""
        url = emu.upstream_base_url + "/codex/responses"
        body = {**SMALL_BODY, "model": "gpt-5-typo"}
        async with http.post(url, json=body, headers=bearer(emu)) as resp:
            payload = await resp.json()

        assert resp.status == 400
        assert payload["error"]["code"] == "model_not_found"
        assert payload["error"]["type"] == "invalid_request_error"

    async def test_requests_are_recorded_with_their_headers(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Every request lands in `emu.requests` with lower-cased headers."""
        await post_responses(http, emu, SMALL_BODY)

        record = emu.requests[-1]
        assert record.method == "POST"
        assert record.path == "/backend-api/codex/responses"
        assert record.headers["authorization"] == bearer(emu)["Authorization"]
        assert record.body == SMALL_BODY


class TestAuthentication:
    async def test_token_alone_names_the_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A valid token with no account header is served as its account."""
        url = emu.upstream_base_url + "/codex/responses"
        headers = {"Authorization": f"Bearer {emu.account(FREE).access_token}"}
        async with http.post(url, json=SMALL_BODY, headers=headers) as resp:
            events = parse_sse(await resp.read())

        text = completed(events)["output"][0]["content"][0]["text"]
        assert text.startswith("Hello from f@example.com.")

    @pytest.mark.parametrize(
        ("spoil", "code"),
        [
            ("revoke", "token_revoked"),
            ("expire", "token_expired"),
            ("unknown", "invalid_token"),
        ],
    )
    async def test_bad_tokens_get_401(
        self, emu: Emulator, http: aiohttp.ClientSession, spoil: str, code: str
    ) -> None:
        """A revoked, expired or unknown access token is refused with 401."""
        headers = bearer(emu)
        if spoil == "revoke":
            emu.revoke_access_token(PLUS)
        elif spoil == "expire":
            emu.expire_access_token(PLUS)
        else:
            headers["Authorization"] = "Bearer nonsense"

        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=headers) as resp:
            payload = await resp.json()

        assert resp.status == 401
        assert payload["error"]["code"] == code

    async def test_token_expires_on_the_clock(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """An access token stops working once the clock passes its `exp`."""
        claims = decode_jwt(emu.account(PLUS).access_token)
        emu.clock.advance(claims["exp"] - emu.clock.now())

        resp, _ = await post_responses(http, emu, SMALL_BODY)

        assert resp.status == 401

    async def test_account_header_must_match_the_token(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Another account's id beside a token is refused with 403."""
        headers = bearer(emu)
        headers["chatgpt-account-id"] = emu.account(FREE).chatgpt_account_id
        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=headers) as resp:
            payload = await resp.json()

        assert resp.status == 403
        assert payload["error"]["code"] == "account_mismatch"

    async def test_access_token_claims(self, emu: Emulator) -> None:
        """Tokens are unsigned JWTs carrying email, expiry and the auth claim."""
        account = emu.account(PLUS)
        claims = decode_jwt(account.access_token)
        id_claims = decode_jwt(account.id_token)

        assert claims["email"] == id_claims["email"] == PLUS
        assert claims["exp"] - claims["iat"] == 10 * 24 * 3600
        assert claims[AUTH_CLAIM] == {
            "chatgpt_account_id": account.chatgpt_account_id,
            "chatgpt_plan_type": "plus",
            "chatgpt_user_id": account.user_id,
            "user_id": account.user_id,
        }
        header = account.access_token.split(".")[0]
        assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
            "alg": "none",
            "typ": "JWT",
        }


class TestWindows:
    async def test_request_fills_each_window_by_its_cost_share(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Cost over a window's dollar worth is the percent it uses."""
        resp, _ = await post_responses(http, emu, SMALL_BODY)

        account = emu.account(PLUS)
        assert account.primary is not None
        assert account.primary.used_percent == pytest.approx(SMALL_COST / 0.01 * 100)
        assert account.secondary.used_percent == pytest.approx(SMALL_COST / 0.1 * 100)
        assert resp.headers["x-codex-primary-used-percent"] == "2.7125"
        assert resp.headers["x-codex-secondary-used-percent"] == "0.27125"

    async def test_quota_headers_describe_both_windows(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The x-codex headers give window length, reset time and time left."""
        resp, _ = await post_responses(http, emu, SMALL_BODY)

        account = emu.account(PLUS)
        assert account.primary is not None
        assert resp.headers["x-codex-primary-window-minutes"] == "300"
        assert resp.headers["x-codex-secondary-window-minutes"] == "10080"
        assert resp.headers["x-codex-primary-reset-at"] == str(
            int(account.primary.reset_at)
        )
        assert resp.headers["x-codex-primary-reset-after-seconds"] == "18000"
        assert resp.headers["x-codex-secondary-reset-after-seconds"] == "604800"

    async def test_primary_window_resets_after_five_hours(self, emu: Emulator) -> None:
        """Passing the reset time empties the 5 h window and starts a new one."""
        emu.set_usage(PLUS, primary=60.0, secondary=30.0)
        account = emu.account(PLUS)
        assert account.primary is not None
        first_reset = account.primary.reset_at

        emu.clock.advance(5 * 3600)
        account.roll(emu.clock.now())

        assert account.primary.used_percent == 0.0
        assert account.primary.reset_at == first_reset + 5 * 3600
        assert account.secondary.used_percent == 30.0

    async def test_long_jump_lands_in_the_current_window(self, emu: Emulator) -> None:
        """A jump over several lengths keeps windows aligned to their start."""
        account = emu.account(PLUS)
        assert account.primary is not None
        start = account.primary.started_at

        emu.clock.advance(3 * 5 * 3600 + 10)
        account.roll(emu.clock.now())

        assert account.primary.started_at == start + 3 * 5 * 3600

    async def test_full_primary_window_gets_429(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A full 5 h window answers usage_limit_reached with its reset time."""
        emu.set_usage(PLUS, primary=100.0)
        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
            payload = await resp.json()

        account = emu.account(PLUS)
        assert account.primary is not None
        assert resp.status == 429
        error = payload["error"]
        assert error["type"] == error["code"] == "usage_limit_reached"
        assert error["plan_type"] == "plus"
        assert error["resets_at"] == int(account.primary.reset_at)
        assert error["resets_in_seconds"] == 18000
        assert resp.headers["x-codex-primary-used-percent"] == "100"

    async def test_full_weekly_window_resets_with_the_week(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A full weekly window reports the weekly reset."""
        emu.set_usage(PLUS, secondary=100.0)
        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
            payload = await resp.json()

        assert resp.status == 429
        assert payload["error"]["resets_in_seconds"] == 7 * 24 * 3600

    async def test_window_reset_lifts_the_limit(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """After the reset time the same account is served again."""
        emu.set_usage(PLUS, primary=100.0)
        emu.clock.advance(5 * 3600)

        resp, _ = await post_responses(http, emu, SMALL_BODY)

        assert resp.status == 200

    async def test_requests_fill_a_window_until_refused(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Thirty-seven small requests fill a window worth one cent."""
        statuses = []
        for _ in range(38):
            resp, _ = await post_responses(http, emu, SMALL_BODY)
            statuses.append(resp.status)

        # 36 x 2.7125 % = 97.65 %, the 37th caps it at 100 %.
        assert statuses == [200] * 37 + [429]


class TestUsageEndpoint:
    async def test_plus_reports_both_windows(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A plus account has a 5 h primary and a weekly secondary window."""
        emu.set_usage(PLUS, primary=12.5, secondary=40.0)
        url = emu.upstream_base_url + "/wham/usage"
        async with http.get(url, headers=bearer(emu)) as resp:
            payload = await resp.json()

        account = emu.account(PLUS)
        assert account.primary is not None
        assert payload == {
            "plan_type": "plus",
            "rate_limit": {
                "allowed": True,
                "limit_reached": False,
                "primary_window": {
                    "used_percent": 12.5,
                    "limit_window_seconds": 18000,
                    "reset_after_seconds": 18000,
                    "reset_at": int(account.primary.reset_at),
                },
                "secondary_window": {
                    "used_percent": 40.0,
                    "limit_window_seconds": 604800,
                    "reset_after_seconds": 604800,
                    "reset_at": int(account.secondary.reset_at),
                },
            },
            "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
        }

    async def test_weekly_only_plan_reports_in_the_primary_slot(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A free account shows its weekly window as primary, secondary null."""
        emu.set_usage(FREE, secondary=100.0)
        url = emu.upstream_base_url + "/wham/usage"
        async with http.get(url, headers=bearer(emu, FREE)) as resp:
            payload = await resp.json()

        limits = payload["rate_limit"]
        assert payload["plan_type"] == "free"
        assert limits["primary_window"]["limit_window_seconds"] == 604800
        assert limits["primary_window"]["used_percent"] == 100.0
        assert limits["secondary_window"] is None
        assert limits["allowed"] is False
        assert limits["limit_reached"] is True

    async def test_weekly_only_headers_use_the_primary_slot(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Response headers of a free account carry only the primary slot."""
        resp, _ = await post_responses(http, emu, SMALL_BODY, FREE)

        assert resp.headers["x-codex-primary-window-minutes"] == "10080"
        assert resp.headers["x-codex-primary-used-percent"] == "0.27125"
        assert "x-codex-secondary-used-percent" not in resp.headers

    async def test_usage_needs_a_token(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The usage endpoint refuses a request without a valid token."""
        async with http.get(emu.upstream_base_url + "/wham/usage") as resp:
            assert resp.status == 401


class TestTools:
    async def test_shell_marker_asks_for_the_offered_tool(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """SIM_SHELL makes a function call to the shell tool the CLI offers."""
        body = {
            **SMALL_BODY,
            "input": [
                {"type": "message", "role": "user", "content": "SIM_SHELL: echo hi"}
            ],
            "tools": [
                {"type": "function", "name": "write_stdin"},
                {"type": "function", "name": "exec_command"},
            ],
        }
        _, events = await post_responses(http, emu, body)

        names = [name for name, _ in events]
        assert "response.function_call_arguments.delta" in names
        assert "response.output_text.delta" not in names
        item = completed(events)["output"][0]
        assert item["type"] == "function_call"
        assert item["name"] == "exec_command"
        assert json.loads(item["arguments"]) == {"cmd": "echo hi"}
        assert item["call_id"].startswith("call_")

    @pytest.mark.parametrize(
        ("tool", "arguments"),
        [
            ("shell", {"command": ["bash", "-lc", "ls"]}),
            ("shell_command", {"command": "ls"}),
        ],
    )
    async def test_shell_arguments_fit_the_tool(
        self,
        emu: Emulator,
        http: aiohttp.ClientSession,
        tool: str,
        arguments: dict[str, Any],
    ) -> None:
        """Each shell tool gets the argument shape it expects."""
        body = {
            **SMALL_BODY,
            "input": "please SIM_SHELL: ls",
            "tools": [{"type": "function", "name": tool}],
        }
        _, events = await post_responses(http, emu, body)

        item = completed(events)["output"][0]
        assert item["name"] == tool
        assert json.loads(item["arguments"]) == arguments

    async def test_tool_output_is_answered_with_text(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """An input ending with a tool result gets text quoting that result."""
        body = {
            **SMALL_BODY,
            "input": [
                {"type": "message", "role": "user", "content": "SIM_SHELL: echo hi"},
                {"type": "function_call", "name": "exec_command", "call_id": "c1"},
                {"type": "function_call_output", "call_id": "c1", "output": "hi\n"},
            ],
            "tools": [{"type": "function", "name": "exec_command"}],
        }
        _, events = await post_responses(http, emu, body)

        item = completed(events)["output"][0]
        assert item["content"][0]["text"] == "Hello from a@example.com. Tool said: hi"


class TestCompactAndModels:
    async def test_compact_keeps_user_messages_and_charges(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Compact answers JSON output items and fills the windows."""
        body = {
            "model": MODEL,
            "input": [
                {"type": "message", "role": "user", "content": "one"},
                {"type": "message", "role": "assistant", "content": "two"},
            ],
        }
        url = emu.upstream_base_url + "/codex/responses/compact"
        async with http.post(url, json=body, headers=bearer(emu)) as resp:
            payload = await resp.json()

        assert resp.status == 200
        assert payload["output"][0] == body["input"][0]
        summary = payload["output"][1]["content"][0]["text"]
        assert summary == "Summary from a@example.com: 2 items compacted."
        assert payload["usage"]["input_tokens"] > 0
        assert float(resp.headers["x-codex-primary-used-percent"]) > 0

    async def test_compact_refuses_a_full_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Compact follows the same quota rule as responses."""
        emu.set_usage(PLUS, primary=100.0)
        url = emu.upstream_base_url + "/codex/responses/compact"
        body = {"model": MODEL, "input": []}
        async with http.post(url, json=body, headers=bearer(emu)) as resp:
            assert resp.status == 429

    async def test_model_catalog_lists_the_served_models(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The catalog has one entry per served model with the CLI's fields."""
        url = emu.upstream_base_url + "/codex/models?client_version=0.171.0"
        async with http.get(url) as resp:
            payload = await resp.json()

        slugs = [entry["slug"] for entry in payload["models"]]
        assert slugs == emu.models
        entry = payload["models"][0]
        assert entry["shell_type"] == "shell_command"
        assert entry["truncation_policy"] == {"mode": "tokens", "limit": 10000}


class TestOAuth:
    async def token(
        self, emu: Emulator, http: aiohttp.ClientSession, **fields: str
    ) -> tuple[int, dict[str, Any]]:
        form = {"client_id": CODEX_OAUTH_CLIENT_ID, **fields}
        async with http.post(emu.auth_base_url + "/oauth/token", data=form) as resp:
            return resp.status, await resp.json()

    async def test_refresh_token_is_single_use(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A refresh token works once; the second use is refresh_token_reused."""
        old = emu.account(PLUS).refresh_token

        status, first = await self.token(
            emu, http, grant_type="refresh_token", refresh_token=old
        )
        again, second = await self.token(
            emu, http, grant_type="refresh_token", refresh_token=old
        )

        assert status == 200
        assert first["token_type"] == "Bearer"
        assert first["expires_in"] == 10 * 24 * 3600
        assert first["refresh_token"] != old
        assert decode_jwt(first["id_token"])["email"] == PLUS
        assert again == 401
        assert second["error"] == "refresh_token_reused"
        assert "error_description" in second

    async def test_refresh_accepts_json(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """The token endpoint reads a JSON body as well as a form."""
        body = {
            "client_id": CODEX_OAUTH_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": emu.account(PLUS).refresh_token,
        }
        async with http.post(emu.auth_base_url + "/oauth/token", json=body) as resp:
            assert resp.status == 200

    async def test_unknown_refresh_token_is_invalid_grant(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A refresh token never issued gets 400 invalid_grant."""
        status, payload = await self.token(
            emu, http, grant_type="refresh_token", refresh_token="rt-nope"
        )

        assert status == 400
        assert payload["error"] == "invalid_grant"

    async def test_old_access_token_survives_a_refresh(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Both the old and the new access token work after a refresh."""
        old_headers = bearer(emu)
        await self.token(
            emu,
            http,
            grant_type="refresh_token",
            refresh_token=emu.account(PLUS).refresh_token,
        )

        url = emu.upstream_base_url + "/wham/usage"
        async with http.get(url, headers=old_headers) as old_resp:
            assert old_resp.status == 200
        async with http.get(url, headers=bearer(emu)) as new_resp:
            assert new_resp.status == 200
        assert bearer(emu) != old_headers

    async def test_wrong_client_is_refused(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A token request from another client id is invalid_client."""
        status, payload = await self.token(
            emu,
            http,
            client_id="someone-else",
            grant_type="refresh_token",
            refresh_token=emu.account(PLUS).refresh_token,
        )

        assert status == 401
        assert payload["error"] == "invalid_client"

    async def test_pkce_code_flow(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Authorize redirects with a code that only the right verifier redeems."""
        verifier = "v" * 50
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        redirect = "http://127.0.0.1:1455/auth/callback"
        params = {
            "response_type": "code",
            "client_id": CODEX_OAUTH_CLIENT_ID,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": "st4te",
            "login_hint": FREE,
        }
        async with http.get(
            emu.auth_base_url + "/oauth/authorize",
            params=params,
            allow_redirects=False,
        ) as resp:
            location = resp.headers["Location"]
        assert resp.status == 302
        assert location.startswith(redirect + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == ["st4te"]
        code = query["code"][0]

        fields = {"grant_type": "authorization_code", "code": code}
        fields["redirect_uri"] = redirect
        bad, _ = await self.token(emu, http, **fields, code_verifier="w" * 50)
        good, tokens = await self.token(emu, http, **fields, code_verifier=verifier)
        reused, _ = await self.token(emu, http, **fields, code_verifier=verifier)

        assert bad == 400
        assert good == 200
        assert decode_jwt(tokens["access_token"])["email"] == FREE
        assert reused == 400

    async def test_login_without_hint_takes_the_next_account(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Successive logins without a hint sign into successive accounts."""
        params = {
            "client_id": CODEX_OAUTH_CLIENT_ID,
            "redirect_uri": "http://127.0.0.1:1455/auth/callback",
            "code_challenge": "c",
        }
        for _ in range(2):
            async with http.get(
                emu.auth_base_url + "/oauth/authorize",
                params=params,
                allow_redirects=False,
            ) as resp:
                assert resp.status == 302

        emails = [pending.email for pending in emu.auth_codes.values()]
        assert emails == [PLUS, FREE]

    async def test_device_flow(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A device login is pending until approved, then yields a code."""
        base = emu.auth_base_url + "/api/accounts/deviceauth"
        async with http.post(
            base + "/usercode", json={"client_id": CODEX_OAUTH_CLIENT_ID}
        ) as resp:
            started = await resp.json()
        assert started["interval"] == "1"
        poll = {
            "device_auth_id": started["device_auth_id"],
            "user_code": started["user_code"],
        }

        async with http.post(base + "/token", json=poll) as pending:
            assert pending.status == 403
        emu.approve_device(started["user_code"], FREE)
        async with http.post(base + "/token", json=poll) as approved:
            grant = await approved.json()
        status, tokens = await self.token(
            emu,
            http,
            grant_type="authorization_code",
            code=grant["authorization_code"],
            code_verifier=grant["code_verifier"],
            redirect_uri=emu.auth_base_url + "/deviceauth/callback",
        )

        assert approved.status == 200
        assert status == 200
        assert decode_jwt(tokens["id_token"])["email"] == FREE


class TestFaults:
    async def test_status_fault_is_served_once(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A status fault answers one request; the next one is normal."""
        body = {"error": {"code": "server_error", "message": "boom"}}
        emu.add_fault(PLUS, Fault.status(503, body, headers={"Retry-After": "1"}))

        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
            payload = await resp.json()
        after, _ = await post_responses(http, emu, SMALL_BODY)

        assert resp.status == 503
        assert payload == body
        assert resp.headers["Retry-After"] == "1"
        assert after.status == 200

    async def test_faults_are_served_in_order(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Queued faults act on successive requests, oldest first."""
        emu.add_fault(PLUS, Fault.status(500, {}))
        emu.add_fault(PLUS, Fault.status(502, {}))

        statuses = []
        for _ in range(3):
            resp, _ = await post_responses(http, emu, SMALL_BODY)
            statuses.append(resp.status)

        assert statuses == [500, 502, 200]

    async def test_gzip_status_fault(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A gzip status fault sends a compressed body with its encoding."""
        body = {"error": {"code": "rate_limit_exceeded"}}
        emu.add_fault(PLUS, Fault.status(429, body, gzip=True))

        url = emu.upstream_base_url + "/codex/responses"
        headers = {**bearer(emu), "Accept-Encoding": "gzip"}
        async with http.post(
            url, json=SMALL_BODY, headers=headers, auto_decompress=False
        ) as resp:
            raw = await resp.read()

        assert resp.status == 429
        assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(raw)) == body

    async def test_cut_aborts_after_n_events(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A cut stream delivers N events and then breaks the connection."""
        emu.add_fault(PLUS, Fault.cut(after_events=3))

        url = emu.upstream_base_url + "/codex/responses"
        received = b""
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
                async for chunk in resp.content.iter_any():
                    received += chunk

        names = [name for name, _ in parse_sse(received)]
        assert names == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
        ]

    async def test_cut_stream_is_not_charged(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A stream cut before its end leaves the windows as they were."""
        emu.add_fault(PLUS, Fault.cut(after_events=1))

        with pytest.raises(aiohttp.ClientPayloadError):
            await post_responses(http, emu, SMALL_BODY)

        assert emu.account(PLUS).secondary.used_percent == 0.0

    async def test_stall_goes_quiet_then_finishes(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A stall pauses after N events and then completes the stream."""
        emu.add_fault(PLUS, Fault.stall(after_events=2, seconds=0.3))

        url = emu.upstream_base_url + "/codex/responses"
        arrivals: list[float] = []
        raw = b""
        async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
            async for line in resp.content:
                raw += line
                if line.startswith(b"event:"):
                    arrivals.append(time.monotonic())

        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        assert max(range(len(gaps)), key=gaps.__getitem__) == 1
        assert gaps[1] >= 0.3
        assert parse_sse(raw)[-1][0] == "response.completed"

    async def test_stall_trips_a_client_read_timeout(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A client with a short read timeout gives up during the stall."""
        emu.add_fault(PLUS, Fault.stall(after_events=2, seconds=5))

        url = emu.upstream_base_url + "/codex/responses"
        timeout = aiohttp.ClientTimeout(sock_read=0.2)
        with pytest.raises(asyncio.TimeoutError):
            async with http.post(
                url, json=SMALL_BODY, headers=bearer(emu), timeout=timeout
            ) as resp:
                await resp.read()

    async def test_raw_chunks_are_sent_verbatim(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A raw fault sends exactly its bytes as an event stream."""
        chunks = [b"event: response.created\n", b'data: {"x": 1}\n\n', b"junk"]
        emu.add_fault(PLUS, Fault.raw(chunks))

        url = emu.upstream_base_url + "/codex/responses"
        async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
            raw = await resp.read()

        assert resp.headers["Content-Type"] == "text/event-stream"
        assert raw == b"".join(chunks)

    async def test_raw_then_reset_breaks_the_connection(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A raw fault with then=reset aborts after its bytes."""
        emu.add_fault(PLUS, Fault.raw([b"event: response.created\n\n"], then="reset"))

        url = emu.upstream_base_url + "/codex/responses"
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(url, json=SMALL_BODY, headers=bearer(emu)) as resp:
                await resp.read()

    async def test_usage_faults(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Usage faults give a status, bad JSON, or a slow answer."""
        emu.add_fault(PLUS, Fault.status(500, {"detail": "x"}), route="usage")
        emu.add_fault(PLUS, Fault.bad_json(), route="usage")
        emu.add_fault(PLUS, Fault.timeout(5), route="usage")
        url = emu.upstream_base_url + "/wham/usage"

        async with http.get(url, headers=bearer(emu)) as failed:
            assert failed.status == 500
        async with http.get(url, headers=bearer(emu)) as garbled:
            assert garbled.status == 200
            with pytest.raises(json.JSONDecodeError):
                json.loads(await garbled.read())
        with pytest.raises(asyncio.TimeoutError):
            timeout = aiohttp.ClientTimeout(total=0.2)
            async with http.get(url, headers=bearer(emu), timeout=timeout) as slow:
                await slow.read()

    async def test_token_endpoint_fault_keeps_the_refresh_token(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """A failed refresh does not spend the refresh token."""
        emu.add_fault(PLUS, Fault.status(500, {"error": "server_error"}), route="token")
        form = {
            "client_id": CODEX_OAUTH_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": emu.account(PLUS).refresh_token,
        }
        url = emu.auth_base_url + "/oauth/token"

        async with http.post(url, data=form) as failed:
            assert failed.status == 500
        async with http.post(url, data=form) as retried:
            assert retried.status == 200

    def test_stream_faults_do_not_fit_other_routes(self, emu: Emulator) -> None:
        """Queuing a cut on the usage route is refused."""
        with pytest.raises(ValueError, match="does not apply"):
            emu.add_fault(PLUS, Fault.cut(1), route="usage")


class TestControlApi:
    async def test_control_routes_drive_the_emulator(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """Usage, faults and the clock can be set over HTTP."""
        base = emu.base_url + "/_sim"

        async with http.post(
            base + "/usage", json={"email": PLUS, "primary": 42.0}
        ) as resp:
            assert resp.status == 200
        async with http.post(
            base + "/faults",
            json={"email": PLUS, "fault": {"kind": "status", "status": 418}},
        ) as resp:
            assert resp.status == 200
        async with http.post(base + "/clock/advance", json={"seconds": 60}) as resp:
            assert resp.status == 200
        async with http.get(base + "/accounts") as resp:
            accounts = (await resp.json())["accounts"]
        teapot, _ = await post_responses(http, emu, SMALL_BODY)

        plus = next(row for row in accounts if row["email"] == PLUS)
        assert plus["primary"]["used_percent"] == 42.0
        assert plus["plan"] == "plus"
        assert teapot.status == 418

    async def test_bad_control_request_names_the_problem(
        self, emu: Emulator, http: aiohttp.ClientSession
    ) -> None:
        """An unknown account is a 400 that names it."""
        async with http.post(
            emu.base_url + "/_sim/usage", json={"email": "nobody@x", "primary": 1}
        ) as resp:
            payload = await resp.json()

        assert resp.status == 400
        assert "nobody@x" in payload["error"]["message"]


class TestFilesAndCli:
    def test_auth_files_match_the_codex_cli_format(
        self, emu: Emulator, tmp_path: Path
    ) -> None:
        """One auth.json per account, in the Codex CLI's layout, mode 0600."""
        paths = emu.write_auth_files(tmp_path)

        assert [path.parent.name for path in paths] == [PLUS, FREE]
        data = json.loads(paths[0].read_text())
        account = emu.account(PLUS)
        assert data["OPENAI_API_KEY"] is None
        assert data["tokens"] == {
            "id_token": account.id_token,
            "access_token": account.access_token,
            "refresh_token": account.refresh_token,
            "account_id": account.chatgpt_account_id,
        }
        assert data["last_refresh"].endswith("Z")
        assert paths[0].stat().st_mode & 0o777 == 0o600

    def test_cli_help(self) -> None:
        """`python -m codex_lb.sim --help` describes the flags and exits 0."""
        done = subprocess.run(
            [sys.executable, "-m", "codex_lb.sim", "--help"],
            capture_output=True,
            text=True,
            check=False,
        )

        assert done.returncode == 0
        for flag in ("--clock-speed", "--auth-dir", "--fast", "--event-delay-ms"):
            assert flag in done.stdout

    def test_cli_whole_percents_flag_reaches_the_emulator(self) -> None:
        """--whole-percents makes the emulator report whole used percents."""
        assert build_emulator(parse_args(["--whole-percents"])).whole_percents
        assert not build_emulator(parse_args([])).whole_percents

    def test_cli_refuses_an_unknown_plan(self) -> None:
        """A bad --plans value stops the CLI with a message naming it."""
        done = subprocess.run(
            [sys.executable, "-m", "codex_lb.sim", "--plans", "plus,gold"],
            capture_output=True,
            text=True,
            check=False,
        )

        assert done.returncode == 2
        assert "plus,gold" in done.stderr


class TestCommandLine:
    def test_help_shows_the_defaults(self) -> None:
        """--help tells what running it bare gives: port 8765, 3 accounts, and
        the Codex CLI's default model among those served."""
        result = subprocess.run(
            [sys.executable, "-m", "codex_lb.sim", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert result.returncode == 0
        text = " ".join(result.stdout.split())
        assert "port (0: any free) (default: 8765)" in text
        assert "number of accounts (default: 3)" in text
        assert "gpt-6.2-sol" in text
