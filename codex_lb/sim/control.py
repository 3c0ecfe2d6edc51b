"""The `/_sim/` control API, for demos and tests that run the emulator apart.

All JSON:

| route | body | does |
| --- | --- | --- |
| `GET /_sim/accounts` | | accounts with windows, plan and current access token |
| `POST /_sim/usage` | `{"email", "primary"?, "secondary"?}` | set used percents |
| `POST /_sim/faults` | `{"email", "route"?, "fault": {"kind", ...}}` | queue a fault |
| `POST /_sim/clock/advance` | `{"seconds"}` | jump the clock |
| `POST /_sim/tokens/revoke` | `{"email"}` | revoke the current access token |
| `POST /_sim/tokens/expire` | `{"email"}` | expire the current access token |
| `POST /_sim/device/approve` | `{"user_code", "email"?}` | approve a device login |
| `GET /_sim/requests` | | every request received, oldest first |

A fault's JSON is the `Fault` fields: `{"kind": "status", "status": 429,
"body": {...}, "headers": {...}, "gzip": false}`, `{"kind": "cut",
"events": 3}`, `{"kind": "stall", "events": 3, "seconds": 10}`,
`{"kind": "raw", "chunks": ["event: ...\\n\\n"], "then": "reset"}`,
`{"kind": "timeout", "seconds": 5}`, `{"kind": "bad_json"}`,
`{"kind": "garbage", "status": 502}`.
"""

from __future__ import annotations

from typing import Any

import attrs
from aiohttp import web

from .app import EMULATOR, RECORD, json_error
from .faults import Fault

routes = web.RouteTableDef()


def _body(request: web.Request) -> dict[str, Any]:
    body = request[RECORD].body
    return body if isinstance(body, dict) else {}


def _refused(exc: Exception) -> web.Response:
    # KeyError wraps its message in quotes; show it as written.
    message = exc.args[0] if exc.args else str(exc)
    return json_error(400, "invalid_request_error", str(message))


@routes.get("/_sim/accounts")
async def list_accounts(request: web.Request) -> web.Response:
    """Every account with its windows."""
    return web.json_response({"accounts": request.app[EMULATOR].snapshot()})


@routes.post("/_sim/usage")
async def set_usage(request: web.Request) -> web.Response:
    """Set an account's used percents."""
    emulator = request.app[EMULATOR]
    body = _body(request)
    try:
        emulator.set_usage(
            str(body.get("email")), body.get("primary"), body.get("secondary")
        )
    except KeyError as exc:
        return _refused(exc)
    return web.json_response({"accounts": emulator.snapshot()})


@routes.post("/_sim/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Queue a fault for an account's next request to a route."""
    emulator = request.app[EMULATOR]
    body = _body(request)
    try:
        fault = Fault.from_json(body.get("fault") or {})
        emulator.add_fault(
            str(body.get("email")), fault, str(body.get("route", "responses"))
        )
    except (KeyError, ValueError, TypeError) as exc:
        return _refused(exc)
    return web.json_response({"queued": fault.kind})


@routes.post("/_sim/clock/advance")
async def advance_clock(request: web.Request) -> web.Response:
    """Jump the emulated clock forward by `seconds`."""
    emulator = request.app[EMULATOR]
    try:
        emulator.clock.advance(float(_body(request)["seconds"]))
    except (KeyError, ValueError, TypeError) as exc:
        return _refused(exc)
    return web.json_response({"now": emulator.clock.now()})


@routes.post("/_sim/tokens/{action:revoke|expire}")
async def spoil_token(request: web.Request) -> web.Response:
    """Revoke or expire an account's current access token."""
    emulator = request.app[EMULATOR]
    email = str(_body(request).get("email"))
    try:
        if request.match_info["action"] == "revoke":
            emulator.revoke_access_token(email)
        else:
            emulator.expire_access_token(email)
    except KeyError as exc:
        return _refused(exc)
    return web.json_response({"email": email})


@routes.post("/_sim/device/approve")
async def approve_device(request: web.Request) -> web.Response:
    """Approve a pending device login."""
    emulator = request.app[EMULATOR]
    body = _body(request)
    email = body.get("email")
    try:
        emulator.approve_device(str(body.get("user_code")), email)
    except KeyError as exc:
        return _refused(exc)
    return web.json_response({"approved": body.get("user_code")})


@routes.get("/_sim/requests")
async def list_requests(request: web.Request) -> web.Response:
    """Every request received so far."""
    records = [attrs.asdict(record) for record in request.app[EMULATOR].requests]
    return web.json_response({"requests": records})
