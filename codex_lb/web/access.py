"""Who may call what (SPEC section 8).

- Bound to loopback with no client keys, every route is open to local callers.
- Proxy routes need a client key once any key exists, and always from a
  caller that is not on loopback.
- The dashboard and ``/api/*`` need the admin token from any caller that is
  not on loopback; with no admin token set they refuse such callers.
- ``X-Forwarded-For`` is believed only from the operator's trusted proxies,
  and a caller counts as local only when every hop to it is on loopback.
- What a local caller gets only for being local, it gets only under a local
  name (``Host`` is ``localhost``, a loopback address or ``CODEX_LB_HOST``):
  a web page whose own name was rebound to 127.0.0.1 ("DNS rebinding") is
  refused, though its requests do come from loopback.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from codex_lb.clientkeys import API_KEY_ID, KEY_PREFIX, KEYS_KEY
from codex_lb.config import IPNetwork
from codex_lb.errors import error_response
from codex_lb.logs import remember_secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The admin login form checks the token itself (it sets the cookie below).
_OPEN_PATHS = frozenset({"/health", "/dashboard/login"})
_LOCAL_NAMES = frozenset({"localhost", "localhost."})


@functools.lru_cache(maxsize=4096)
def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    # Callers come from few addresses and use few host names: each is parsed
    # once (every proxied request asks, two or three times).
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_loopback(address: str | None) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def client_address(request: web.Request, trusted: Sequence[IPNetwork]) -> str | None:
    """The caller's address; the forwarded one only via a trusted proxy."""
    return _route(request, trusted)[-1]


def is_local(request: web.Request, trusted: Sequence[IPNetwork]) -> bool:
    """Whether the caller is on loopback, and every proxy between it and us.

    A trusted proxy on another host that forwards ``127.0.0.1`` speaks for
    a process on *its* host: that caller is not local here.
    """
    return all(_is_loopback(hop) for hop in _route(request, trusted))


def _route(request: web.Request, trusted: Sequence[IPNetwork]) -> list[str | None]:
    """The hops from our peer back to the caller, the caller last.

    Hops are believed while they are trusted proxies; the first hop that is
    not one is the caller.
    """
    peer = request.remote
    peer_ip = _ip(peer)
    if not trusted or peer_ip is None or not any(peer_ip in net for net in trusted):
        return [peer]
    # Several header lines are one list in order (a proxy may add its own
    # line after the client's forged one instead of appending to it).
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    route: list[str | None] = [peer]
    # Walk back from the nearest hop while the hops are trusted proxies.
    for hop in reversed(hops):
        route.append(hop)
        hop_ip = _ip(hop)
        # "unknown", a port, junk: a caller nobody can place is not local.
        if hop_ip is None or not any(hop_ip in net for net in trusted):
            return route
    return route


def _host_name(request: web.Request) -> str:
    """The name the caller used for us: the ``Host`` header without its port."""
    host = request.headers.get("Host", "").strip().lower()
    if host.startswith("["):  # [::1]:2455
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def _local_name(request: web.Request, bound_host: str) -> bool:
    name = _host_name(request)
    return name in _LOCAL_NAMES or _is_loopback(name) or name == bound_host


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def same_secret(given: str | None, expected: str) -> bool:
    """``given`` equals ``expected``, compared in constant time as bytes.

    A header may hold any bytes (aiohttp keeps undecodable ones as
    surrogates): compared as UTF-8 bytes, anything that is not the secret
    is simply wrong, never an error.
    """
    if given is None:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"),
        expected.encode("utf-8", "surrogateescape"),
    )


def _unauthorized(message: str) -> web.Response:
    return error_response(
        401,
        "invalid_api_key",
        message,
        "invalid_request_error",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _foreign_host(request: web.Request) -> web.Response:
    shown = request.headers.get("Host", "")[:100]
    return error_response(
        403,
        "forbidden_host",
        f"Host {shown!r} is not a local name: without a credential, only "
        "localhost, a loopback address or CODEX_LB_HOST is served to a local "
        "caller (a page on another name may have been rebound to this machine)",
        "invalid_request_error",
    )


def access_middleware(
    admin_token: str | None,
    metrics_token: str | None,
    trusted_proxies: Sequence[IPNetwork],
    bound_host: str,
) -> Middleware:
    """The middleware enforcing the rules above.

    The client keys are the application's key ring (``KEYS_KEY``), read on
    each request; ``bound_host`` is ``CODEX_LB_HOST``.
    """
    trusted = tuple(trusted_proxies)
    bound = bound_host.strip().lower()

    async def local_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Serve a caller let in for being local, if it used a local name."""
        if not _local_name(request, bound):
            return _foreign_host(request)
        return await handler(request)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in _OPEN_PATHS:
            return await handler(request)
        local = is_local(request, trusted)

        if path == "/metrics":
            if metrics_token is not None:
                if not same_secret(_bearer(request), metrics_token):
                    return _unauthorized("/metrics needs the metrics token")
                return await handler(request)
            if not local:
                return _unauthorized("/metrics is served to loopback callers only")
            return await local_only(request, handler)

        if (path.startswith("/api/") and not path.startswith("/api/codex/")) or (
            path.startswith("/dashboard")
        ):
            given = _bearer(request) or request.cookies.get("codex_lb_admin")
            if admin_token is not None and same_secret(given, admin_token):
                return await handler(request)
            if local:
                return await local_only(request, handler)
            return _unauthorized(
                "the dashboard and /api need the admin token from a remote caller"
            )

        # Proxy routes (and the pool's usage for the Codex CLI).
        keys = request.app[KEYS_KEY]
        token = _bearer(request)
        if token is not None and token.startswith(KEY_PREFIX):
            # A key as presented is a secret, live or not: never logged.
            remember_secret(token)
            key_id = await keys.check(token)
            if key_id is None:
                return _unauthorized("unknown or revoked codex-lb API key")
            request[API_KEY_ID] = key_id
            return await handler(request)
        if local and not keys.exist():
            return await local_only(request, handler)
        if token:
            return _unauthorized(
                "the bearer token sent is not a codex-lb API key: codex-lb keys "
                "start with sk-clb- (make one with 'codex-lb keys create NAME')"
            )
        return _unauthorized(
            "a codex-lb API key is required (Authorization: Bearer sk-clb-...)"
        )

    return middleware
