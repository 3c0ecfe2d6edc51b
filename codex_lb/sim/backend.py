"""The ChatGPT backend routes: responses, compact, the model catalog, usage.

A request is served in a fixed order: authenticate (access token, and the
`chatgpt-account-id` header when sent), act out a queued fault, validate
the body and model, refuse with 429 when a window is full, then answer and
charge the windows. Usage is charged before the first byte, so the
`x-codex-*` headers show the windows after the request; a stream that a
`cut` or `raw` fault replaces is not charged.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import time
from typing import Any

from aiohttp import web

from .answers import Answer, Usage, count_usage, plan_answer
from .app import EMULATOR, RECORD, json_error
from .catalog import model_catalog
from .emulator import Emulator
from .faults import Fault, FaultRoute
from .state import SimAccount, Window, request_cost
from .streams import build_events, encode_event

routes = web.RouteTableDef()

STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _number(value: float) -> str:
    # "12.5", "100", "0": no float noise such as "12.500000001".
    return f"{value:.6f}".rstrip("0").rstrip(".")


def reported_percent(used: float, whole: bool) -> float:
    """A used percent as the upstream reports it: with six decimals, or as
    the real upstream does, a whole number (rounded half up)."""
    return float(math.floor(used + 0.5)) if whole else used


def _window_json(
    window: Window | None, now: float, whole: bool = False
) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "used_percent": reported_percent(window.used_percent, whole),
        "limit_window_seconds": window.seconds,
        "reset_after_seconds": max(0, int(window.reset_at - now)),
        "reset_at": int(window.reset_at),
    }


def quota_headers(
    account: SimAccount, now: float, whole: bool = False
) -> dict[str, str]:
    """The `x-codex-primary-*` and `x-codex-secondary-*` headers of an account
    (used percents as whole numbers when `whole`)."""
    account.roll(now)
    headers = {}
    for slot, window in zip(("primary", "secondary"), account.slots, strict=True):
        if window is None:
            continue
        prefix = f"x-codex-{slot}-"
        headers[prefix + "used-percent"] = _number(
            reported_percent(window.used_percent, whole)
        )
        headers[prefix + "window-minutes"] = str(window.seconds // 60)
        headers[prefix + "reset-after-seconds"] = str(
            max(0, int(window.reset_at - now))
        )
        headers[prefix + "reset-at"] = str(int(window.reset_at))
    return headers


def authenticate(request: web.Request) -> SimAccount | web.Response:
    """The account a request's bearer token belongs to, or a 401/403 answer."""
    emulator = request.app[EMULATOR]
    header = request.headers.get("Authorization", "")
    token = (
        header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    )

    email, problem = emulator.tokens.check_access(token, emulator.clock.now())
    if email is None:
        messages = {
            "token_expired": "Provided authentication token is expired.",
            "token_revoked": "Provided authentication token has been revoked.",
        }
        message = messages.get(problem or "", "Missing or unknown bearer token.")
        return json_error(401, problem or "invalid_token", message)

    # The Codex CLI with an API-key provider sends no account header; the
    # token alone names the account then.
    account = emulator.account(email)
    claimed = request.headers.get("chatgpt-account-id")
    if claimed is not None and claimed != account.chatgpt_account_id:
        return json_error(
            403,
            "account_mismatch",
            "chatgpt-account-id does not belong to the bearer token.",
        )
    return account


def limit_response(
    account: SimAccount, full: list[Window], now: float, whole: bool = False
) -> web.Response:
    """The 429 `usage_limit_reached` answer, resetting with the last full window."""
    resets_at = int(max(window.reset_at for window in full))
    return json_error(
        429,
        "usage_limit_reached",
        "The usage limit has been reached",
        error_type="usage_limit_reached",
        headers=quota_headers(account, now, whole),
        plan_type=account.plan,
        resets_at=resets_at,
        resets_in_seconds=max(0, resets_at - int(now)),
    )


def status_fault_response(fault: Fault) -> web.Response:
    payload = json.dumps(fault.body).encode()
    headers = {"Content-Type": "application/json", **fault.headers}
    if fault.gzip:
        payload = gzip.compress(payload)
        headers["Content-Encoding"] = "gzip"
    return web.Response(status=fault.status_code, body=payload, headers=headers)


async def simple_fault(fault: Fault | None) -> web.Response | None:
    """Act out a fault that needs no stream; None means answer normally."""
    if fault is None:
        return None
    if fault.kind == "timeout":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "bad_json":
        return web.Response(body=b"{not json", content_type="application/json")
    if fault.kind == "garbage":
        page = b"<html>\xff\xfe bad gateway \xc3\x28</html>"
        return web.Response(
            status=fault.status_code, body=page, content_type="text/html"
        )
    return status_fault_response(fault)


async def prelude(
    request: web.Request, route: FaultRoute
) -> tuple[SimAccount, dict[str, Any], Fault | None] | web.Response:
    """Authenticate, take a fault and validate the body and quota.

    Returns the account, the body and a stream fault still to act out, or
    the response that ends the request here.
    """
    emulator = request.app[EMULATOR]
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account

    fault = emulator.take_fault(account.email, route)
    stream_fault = fault if fault and fault.kind in ("cut", "stall", "raw") else None
    if stream_fault is None:
        ended = await simple_fault(fault)
        if ended is not None:
            return ended

    body = request[RECORD].body
    if not isinstance(body, dict):
        return json_error(400, "invalid_request_error", "Body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or model not in emulator.models:
        return json_error(
            400,
            "model_not_found",
            f"The model {model!r} does not exist or you do not have access to it.",
        )

    now = emulator.clock.now()
    full = account.full_windows(now)
    if full:
        return limit_response(account, full, now, emulator.whole_percents)
    return account, body, stream_fault


def charge(
    emulator: Emulator, account: SimAccount, body: dict[str, Any], answer: Answer
) -> Usage:
    """Count the tokens of an answer and fill the account's windows with it."""
    # The prompt cache is per account: a key seen before makes the part of
    # input already sent then count as cached.
    key = body.get("prompt_cache_key")
    cache_slot = (account.email, key) if isinstance(key, str) else None
    cached = emulator.cache_keys.get(cache_slot, 0) if cache_slot else 0
    usage = count_usage(body, answer, cached)
    if cache_slot is not None:
        emulator.cache_keys[cache_slot] = usage.input_tokens

    cost = request_cost(
        body["model"], usage.input_tokens, usage.cached_tokens, usage.output_tokens
    )
    account.consume(cost, emulator.clock.now())
    return usage


@routes.post("/backend-api/codex/responses")
async def responses(request: web.Request) -> web.StreamResponse:
    """Answer a Responses request, streamed unless `stream` is false."""
    emulator = request.app[EMULATOR]
    outcome = await prelude(request, "responses")
    if isinstance(outcome, web.Response):
        return outcome
    account, body, fault = outcome

    answer = plan_answer(body, account.email)
    charged = fault is None or fault.kind == "stall"
    usage = (
        charge(emulator, account, body, answer)
        if charged
        else count_usage(body, answer, 0)
    )
    now = emulator.clock.now()
    seed = f"{account.email}:{len(emulator.requests)}:{time.monotonic_ns()}"
    events = build_events(
        answer, usage, body["model"], int(now), body, seed, emulator.text_events
    )
    headers = quota_headers(account, now, emulator.whole_percents)

    if body.get("stream") is not True:
        return web.json_response(events[-1][1]["response"], headers=headers)

    response = web.StreamResponse(headers={**STREAM_HEADERS, **headers})
    await response.prepare(request)
    try:
        await send_events(request, response, events, fault, emulator.event_delay)
    except ConnectionError:
        # The client hung up mid-stream; nothing is left to send it.
        return response
    return response


async def send_events(
    request: web.Request,
    response: web.StreamResponse,
    events: list[tuple[str, dict[str, Any]]],
    fault: Fault | None,
    delay: float,
) -> None:
    """Write the events, acting out a stream fault on the way."""
    if fault is not None and fault.kind == "raw":
        for chunk in fault.chunks:
            await response.write(chunk)
        if fault.then == "reset":
            abort(request)
            return
        await response.write_eof()
        return

    for index, (name, data) in enumerate(events):
        if fault is not None and index == fault.events:
            if fault.kind == "cut":
                abort(request)
                return
            await asyncio.sleep(fault.seconds)
        if index and delay:
            await asyncio.sleep(delay)
        await response.write(encode_event(name, data))
    await response.write_eof()


def abort(request: web.Request) -> None:
    """Drop the TCP connection at once, with no terminal event or chunk end."""
    if request.transport is not None:
        request.transport.abort()


@routes.post("/backend-api/codex/responses/compact")
async def compact(request: web.Request) -> web.StreamResponse:
    """Compact a history: keep the user messages, add one summary message."""
    emulator = request.app[EMULATOR]
    outcome = await prelude(request, "compact")
    if isinstance(outcome, web.Response):
        return outcome
    account, body, _ = outcome

    raw_items = body.get("input")
    items: list[Any] = raw_items if isinstance(raw_items, list) else []
    kept = [
        item
        for item in items
        if isinstance(item, dict)
        and item.get("type", "message") == "message"
        and item.get("role") == "user"
    ]
    summary = f"Summary from {account.email}: {len(items)} items compacted."
    answer = Answer(text=summary)
    usage = charge(emulator, account, body, answer)
    kept.append(
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": summary}],
        }
    )

    now = emulator.clock.now()
    payload = {"output": kept, "usage": usage.as_json()}
    headers = quota_headers(account, now, emulator.whole_percents)
    return web.json_response(payload, headers=headers)


@routes.get("/backend-api/codex/models")
async def models(request: web.Request) -> web.Response:
    """The model catalog the Codex CLI fetches at start."""
    emulator = request.app[EMULATOR]
    return web.json_response(model_catalog(emulator.models))


@routes.get("/backend-api/wham/usage")
async def usage(request: web.Request) -> web.Response:
    """The account's plan, windows and credits."""
    emulator = request.app[EMULATOR]
    account = authenticate(request)
    if isinstance(account, web.Response):
        return account
    ended = await simple_fault(emulator.take_fault(account.email, "usage"))
    if ended is not None:
        return ended

    now = emulator.clock.now()
    account.roll(now)
    primary, secondary = account.slots
    limit_reached = any(window.full for window in account.windows)
    payload = {
        "plan_type": account.plan,
        "rate_limit": {
            "allowed": not limit_reached,
            "limit_reached": limit_reached,
            "primary_window": _window_json(primary, now, emulator.whole_percents),
            "secondary_window": _window_json(secondary, now, emulator.whole_percents),
        },
        "credits": {
            "has_credits": account.credits_balance > 0,
            "unlimited": False,
            "balance": _number(account.credits_balance),
        },
    }
    return web.json_response(payload)
