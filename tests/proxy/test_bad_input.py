"""Bad client input gets a clear error and harms nothing.

Each case checks the exact status and the OpenAI error shape of SPEC section
5, that nothing reached the upstream or the request log, and that the very
next good request is served and logged as usual.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import aiohttp
import pytest
import zstandard

from tests.conftest import LB
from tests.proxy.test_relay import CODEX, events_of, turn

COMPACT = "/backend-api/codex/responses/compact"
RESPONSES = "/v1/responses"
CHAT = "/v1/chat/completions"
BODY_ROUTES = (CODEX, COMPACT, RESPONSES, CHAT)
LIMIT = 100_000


def assert_error_shape(
    body: Any, code: str, type_: str = "invalid_request_error"
) -> None:
    """``body`` is ``{"error": {message, type, code, param}}`` with these values."""
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "code", "param"} <= set(error)
    assert (error["code"], error["type"]) == (code, type_)
    assert isinstance(error["message"], str) and error["message"]


async def assert_refused(
    response: aiohttp.ClientResponse, status: int, code: str
) -> dict[str, Any]:
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = await response.json()
    assert_error_shape(body, code)
    return body


async def assert_unharmed(lb: LB) -> None:
    """Nothing reached the upstream or the log; the next turn is served."""
    assert lb.emulator.requests == []
    assert await lb.request_logs() == []
    assert lb.recorder.of("request_finished") == []

    response = await lb.client.post(CODEX, json=turn())
    events = events_of(await response.read())

    assert events[-1]["type"] == "response.completed"
    (row,) = await lb.request_logs()
    assert (row.status, row.status_code, row.error_code) == ("success", 200, None)
    assert all(a.status == "active" for a in lb.pool.accounts)


def gzip_bomb(size: int) -> bytes:
    return gzip.compress(b"{" + b" " * size + b"}", compresslevel=9)


class TestMalformedBodies:
    @pytest.mark.parametrize("route", BODY_ROUTES)
    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"{not json",
            b'{"model": "gpt-5",}',
            b"[1, 2]",
            b'"a string"',
            b"null",
            b"42",
            b"\xef\xbb\xbf{}",
        ],
        ids=[
            "empty",
            "malformed",
            "trailing-comma",
            "array",
            "string",
            "null",
            "number",
            "utf8-bom",
        ],
    )
    async def test_not_a_json_object_is_400(
        self, lb: LB, route: str, data: bytes
    ) -> None:
        """Whatever is not one JSON object gets 400 invalid_request_error."""
        response = await lb.client.post(
            route, data=data, headers={"Content-Type": "application/json"}
        )

        await assert_refused(response, 400, "invalid_request_error")
        await assert_unharmed(lb)

    @pytest.mark.parametrize("route", BODY_ROUTES)
    async def test_invalid_utf8_is_400_naming_the_byte(
        self, lb: LB, route: str
    ) -> None:
        """A body that is not UTF-8 is refused, the offending offset named."""
        data = b'{"model": "gpt-5\xff"}'

        response = await lb.client.post(route, data=data)

        body = await assert_refused(response, 400, "invalid_request_error")
        assert f"byte {data.index(0xFF)}" in body["error"]["message"]
        await assert_unharmed(lb)

    @pytest.mark.parametrize("route", BODY_ROUTES)
    async def test_deeply_nested_json_is_400(self, lb: LB, route: str) -> None:
        """Nesting deep enough to exhaust the parser's stack is a 400, not a 500."""
        data = b"[" * 200_000 + b"]" * 200_000

        response = await lb.client.post(route, data=data)

        await assert_refused(response, 400, "invalid_request_error")
        await assert_unharmed(lb)

    @pytest.mark.parametrize("route", BODY_ROUTES)
    @pytest.mark.parametrize(
        "data",
        [
            b'{"model": "gpt-5", "n": ' + b"1" * 5000 + b"}",
            b'{"model": "gpt-5", "input": [{"x": -' + b"9" * 4301 + b"}]}",
        ],
        ids=["top-level", "nested-negative"],
    )
    async def test_integer_past_the_digit_limit_is_400(
        self, lb: LB, route: str, data: bytes
    ) -> None:
        """An integer longer than Python converts (4300 digits) is a 400."""
        response = await lb.client.post(
            route, data=data, headers={"Content-Type": "application/json"}
        )

        body = await assert_refused(response, 400, "invalid_request_error")
        assert "4300 digits" in body["error"]["message"]
        await assert_unharmed(lb)


class TestWrongFields:
    @pytest.mark.parametrize("route", BODY_ROUTES)
    @pytest.mark.parametrize("model", [None, 5, "", "   ", [], {"a": 1}, True])
    async def test_missing_or_mistyped_model_is_400(
        self, lb: LB, route: str, model: Any
    ) -> None:
        """``model`` must be a non-empty string on every model route."""
        body: dict[str, Any] = {"input": "hi", "messages": [], "stream": True}
        if model is not None:
            body["model"] = model

        response = await lb.client.post(route, json=body)

        payload = await assert_refused(response, 400, "invalid_request_error")
        assert "'model'" in payload["error"]["message"]
        assert payload["error"]["param"] == "model"
        await assert_unharmed(lb)

    @pytest.mark.parametrize(
        ("field", "value", "param"),
        [
            ("messages", "hello", "messages"),
            ("messages", [1], "messages[0]"),
            ("stream", "yes", "stream"),
            ("n", True, "n"),
            ("n", 1.0, "n"),
            ("tools", {"type": "function"}, "tools"),
            ("stream_options", "x", "stream_options"),
        ],
    )
    async def test_chat_field_of_the_wrong_type_is_named(
        self, lb: LB, field: str, value: Any, param: str
    ) -> None:
        """A Chat field of the wrong type is refused with ``param`` naming it."""
        body: dict[str, Any] = {
            "model": "gpt-5",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        body[field] = value

        response = await lb.client.post(CHAT, json=body)

        payload = await assert_refused(response, 400, "invalid_request_error")
        assert payload["error"]["param"] == param
        await assert_unharmed(lb)

    @pytest.mark.parametrize(
        ("field", "value", "param"),
        [
            ("stream", "yes", "stream"),
            ("stream", 1, "stream"),
            ("store", "yes", "store"),
            ("input", 5, "input"),
            ("input", {"role": "user"}, "input"),
            ("input", None, "input"),
        ],
    )
    async def test_responses_field_that_decides_the_answer_is_checked(
        self, lb: LB, field: str, value: Any, param: str
    ) -> None:
        """``stream`` and ``input`` on /v1/responses are refused, named, if wrong.

        ``stream`` decides whether codex-lb streams or assembles the answer
        (a "yes" was taken as false); ``input`` is what the upstream needs.
        """
        body: dict[str, Any] = {"model": "gpt-5", "input": "hi", "stream": True}
        if value is None:
            del body[field]
        else:
            body[field] = value

        response = await lb.client.post(RESPONSES, json=body)

        payload = await assert_refused(response, 400, "invalid_request_error")
        assert payload["error"]["param"] == param
        await assert_unharmed(lb)

    @pytest.mark.parametrize("route", BODY_ROUTES)
    @pytest.mark.parametrize(
        "model",
        ["gpt-5\\ud800", "gpt-5\\n2", "gpt-5\\u0000", "m" * 201],
        ids=["lone-surrogate", "newline", "nul", "201-chars"],
    )
    async def test_a_model_name_no_model_has_is_refused_before_the_log(
        self, lb: LB, route: str, model: str
    ) -> None:
        """A name that could not be stored as text, or that would fill every
        dashboard page listing models, never reaches the upstream or the log.

        (A lone surrogate once made the request-log batch fail to encode.)
        """
        data = b'{"model": "%s", "input": "hi", "messages": [], "stream": true}' % (
            model.encode()
        )

        response = await lb.client.post(
            route, data=data, headers={"Content-Type": "application/json"}
        )

        payload = await assert_refused(response, 400, "invalid_request_error")
        assert payload["error"]["param"] == "model"
        await assert_unharmed(lb)

    async def test_a_long_real_looking_model_name_is_still_taken(self, lb: LB) -> None:
        """200 printable characters pass on (the upstream judges the name)."""
        response = await lb.client.post(CODEX, json=turn(model="gpt-5-" + "x" * 194))
        await response.read()

        (row,) = await lb.request_logs()
        assert row.model == "gpt-5-" + "x" * 194


class TestSizes:
    @pytest.mark.parametrize("route", BODY_ROUTES)
    async def test_declared_length_over_the_limit_is_413(
        self, make_lb: Any, emulator: Any, route: str
    ) -> None:
        """A Content-Length over the limit is refused before the body is read."""
        lb = await make_lb(emulator, CODEX_LB_MAX_REQUEST_BYTES=str(LIMIT))
        data = json.dumps(turn(text="x" * LIMIT)).encode()

        response = await lb.client.post(route, data=data)

        body = await assert_refused(response, 413, "request_too_large")
        assert str(LIMIT) in body["error"]["message"]
        await assert_unharmed(lb)

    async def test_chunked_body_over_the_limit_is_413(
        self, make_lb: Any, emulator: Any
    ) -> None:
        """A body with no length is cut off as soon as it passes the limit."""
        lb = await make_lb(emulator, CODEX_LB_MAX_REQUEST_BYTES=str(LIMIT))
        sent = 0

        async def body() -> Any:
            nonlocal sent
            for _ in range(100):
                sent += 16_384
                yield b" " * 16_384

        response = await lb.client.post(CODEX, data=body())

        await assert_refused(response, 413, "request_too_large")
        await assert_unharmed(lb)

    @pytest.mark.parametrize(
        ("encoding", "data"),
        [
            ("gzip", gzip_bomb(20_000_000)),
            ("deflate", zlib.compress(b" " * 20_000_000, 9)),
            ("zstd", zstandard.ZstdCompressor(level=3).compress(b" " * 20_000_000)),
            ("gzip, gzip", gzip.compress(gzip_bomb(20_000_000))),
        ],
        ids=["gzip", "deflate", "zstd", "gzip-twice"],
    )
    async def test_decompression_bombs_are_413(
        self, make_lb: Any, emulator: Any, encoding: str, data: bytes
    ) -> None:
        """Small bodies that inflate past the limit are refused while inflating."""
        lb = await make_lb(emulator, CODEX_LB_MAX_REQUEST_BYTES=str(LIMIT))
        assert len(data) < LIMIT

        response = await lb.client.post(
            CODEX, data=data, headers={"Content-Encoding": encoding}
        )

        await assert_refused(response, 413, "request_too_large")
        await assert_unharmed(lb)


class TestEncodings:
    @pytest.mark.parametrize("encoding", ["br", "compress", "x-unknown", "gzip, br"])
    async def test_unknown_content_encoding_is_415(self, lb: LB, encoding: str) -> None:
        """An encoding codex-lb cannot decode is named in a 415."""
        response = await lb.client.post(
            CODEX,
            data=json.dumps(turn()).encode(),
            headers={"Content-Encoding": encoding},
        )

        body = await assert_refused(response, 415, "unsupported_content_encoding")
        outermost = encoding.split(",")[-1].strip()
        assert repr(outermost) in body["error"]["message"]
        await assert_unharmed(lb)

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "zstd"])
    async def test_corrupt_compressed_body_is_400(self, lb: LB, encoding: str) -> None:
        """Bytes that are not valid data for their encoding get 400."""
        data = gzip.compress(json.dumps(turn()).encode())[:-12] + b"garbage!"
        if encoding != "gzip":
            data = b"\x00\x01not-" + encoding.encode() + b"-data" * 10

        response = await lb.client.post(
            CODEX, data=data, headers={"Content-Encoding": encoding}
        )

        body = await assert_refused(response, 400, "invalid_request_error")
        assert encoding in body["error"]["message"]
        await assert_unharmed(lb)


class TestHeaders:
    async def test_huge_but_legal_headers_are_served(self, lb: LB) -> None:
        """Headers at aiohttp's size limits reach the relay and are served."""
        headers = {f"x-filler-{i}": "v" * 100 for i in range(100)}
        headers["session_id"] = "s" * 8000

        response = await lb.client.post(CODEX, json=turn(), headers=headers)
        events = events_of(await response.read())

        assert events[-1]["type"] == "response.completed"
        (seen,) = lb.emulator.requests
        assert seen.headers["session_id"] == "s" * 8000

    @pytest.mark.parametrize(
        "header",
        [
            b"X-Long: " + b"a" * 70_000 + b"\r\n",
            b"".join(b"X-H%d: v\r\n" % i for i in range(500)),
            b"X-Bad\x00Name: v\r\n",
        ],
        ids=["line-too-long", "too-many", "nul-in-name"],
    )
    async def test_absurd_headers_are_refused_and_harm_nothing(
        self, lb: LB, header: bytes
    ) -> None:
        """Headers past the parser's limits get a 400 and the server carries on."""
        port = lb.client.port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(turn()).encode()
        writer.write(
            b"POST "
            + CODEX.encode()
            + b" HTTP/1.1\r\nHost: localhost\r\n"
            + header
            + b"Content-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()

        assert status_line.split()[1] == b"400"
        await assert_unharmed(lb)


async def partial_request(lb: LB, path: str, content_type: str, sent: bytes) -> bytes:
    """Announce a 1000-byte body, send ``sent`` of it, then wait; what comes back
    before codex-lb closes the connection."""
    assert lb.client.server.host is not None and lb.client.server.port is not None
    reader, writer = await asyncio.open_connection(
        lb.client.server.host, lb.client.server.port
    )
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n".encode()
        + sent
    )
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(65536), timeout=10)
        # Then the connection is closed, not held for the rest of the body
        # (aiohttp drops what still comes for at most 2 s).
        assert await asyncio.wait_for(reader.read(), timeout=3) == b""
        return answer
    finally:
        writer.close()


class TestSlowBodies:
    @pytest.mark.parametrize(
        ("path", "content_type", "sent"),
        [
            (CODEX, "application/json", b"{"),
            ("/v1/chat/completions", "application/json", b"{"),
            (
                "/api/accounts/import",
                "multipart/form-data; boundary=b",
                b'--b\r\nContent-Disposition: form-data; name="f"; '
                b'filename="auth.json"\r\n\r\n{',
            ),
        ],
    )
    async def test_a_body_that_stops_arriving_gets_408(
        self, make_lb: Any, emulator: Any, path: str, content_type: str, sent: bytes
    ) -> None:
        """Past CODEX_LB_BODY_READ_TIMEOUT_SECONDS: 408 in the error shape,
        then the connection closes; the upstream never hears of it."""
        lb = await make_lb(emulator, CODEX_LB_BODY_READ_TIMEOUT_SECONDS="0.5")
        start = asyncio.get_running_loop().time()

        answer = await partial_request(lb, path, content_type, sent)

        elapsed = asyncio.get_running_loop().time() - start
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert b"application/json" in head
        error = json.loads(body)["error"]
        assert error["code"] == "request_timeout"
        assert error["message"] == (
            "the request body did not arrive within 0.5 s "
            "(CODEX_LB_BODY_READ_TIMEOUT_SECONDS)"
        )
        assert 0.5 <= elapsed < 3
        assert lb.emulator.requests == []
