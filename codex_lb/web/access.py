"""Who may call what (SPEC section 8).

- Bound to loopback with no client keys, every route is open to local callers.
- Proxy routes need a client key once any key exists, and always from a
  caller that is not on loopback.
- The dashboard and ``/api/*`` need the admin token from any caller that is
  not on loopback; with no admin token set they refuse such callers.
- ``X-Forwarded-For`` is believed only from the operator's trusted proxies.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

from codex_lb.clientkeys import API_KEY_ID
from codex_lb.errors import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KeyCheck = Callable[[str], Awaitable[str | None]]

# The admin login form checks the token itself (it sets the cookie below).
_OPEN_PATHS = frozenset({"/health", "/dashboard/login"})


def _is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _networks(spec: str | None) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if not spec:
        return []
    return [
        ipaddress.ip_network(s.strip(), strict=False)
        for s in spec.split(",")
        if s.strip()
    ]


def client_address(
    request: web.Request,
    trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str | None:
    """The caller's address; the forwarded one only via a trusted proxy."""
    peer = request.remote
    trusted = list(trusted)
    if not trusted or peer is None:
        return peer
    try:
        peer_ip = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if not any(peer_ip in net for net in trusted):
        return peer
    # Several header lines are one list in order (a proxy may add its own
    # line after the client's forged one instead of appending to it).
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    # Walk back from the nearest hop while the hops are trusted proxies.
    for hop in reversed(hops):
        try:
            hop_ip = ipaddress.ip_address(hop)
        except ValueError:
            # "unknown", a port, junk: a caller nobody can place is not local.
            return hop
        if not any(hop_ip in net for net in trusted):
            return hop
    return hops[0] if hops else peer


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _unauthorized(message: str) -> web.Response:
    return error_response(
        401,
        "invalid_api_key",
        message,
        "invalid_request_error",
        headers={"WWW-Authenticate": "Bearer"},
    )


def access_middleware(
    admin_token: str | None,
    metrics_token: str | None,
    trusted_proxies: str | None,
    keys_exist: Callable[[], bool],
    check_key: KeyCheck,
) -> Middleware:
    """The middleware enforcing the rules above."""
    trusted = _networks(trusted_proxies)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in _OPEN_PATHS:
            return await handler(request)
        local = _is_loopback(client_address(request, trusted))

        if path == "/metrics":
            if metrics_token is not None:
                if not hmac.compare_digest(_bearer(request) or "", metrics_token):
                    return _unauthorized("/metrics needs the metrics token")
            elif not local:
                return _unauthorized("/metrics is served to loopback callers only")
            return await handler(request)

        if (path.startswith("/api/") and not path.startswith("/api/codex/")) or (
            path.startswith("/dashboard")
        ):
            if admin_token is not None and hmac.compare_digest(
                _bearer(request) or request.cookies.get("codex_lb_admin", ""),
                admin_token,
            ):
                return await handler(request)
            if local:
                return await handler(request)
            return _unauthorized(
                "the dashboard and /api need the admin token from a remote caller"
            )

        # Proxy routes (and the pool's usage for the Codex CLI).
        token = _bearer(request)
        if token is not None and token.startswith("sk-clb-"):
            key_id = await check_key(token)
            if key_id is None:
                return _unauthorized("unknown or revoked codex-lb API key")
            request[API_KEY_ID] = key_id
            return await handler(request)
        if local and not keys_exist():
            return await handler(request)
        return _unauthorized(
            "a codex-lb API key is required (Authorization: Bearer sk-clb-...)"
        )

    return middleware
