"""Faults a test queues on an account to make the next request misbehave.

Each account has one FIFO queue per route (`responses`, `compact`, `usage`,
`token`); a request to that route for that account takes the oldest fault
and acts it out instead of (or in the middle of) a normal answer. Which
kinds make sense where:

- `status`: answer with a status, a JSON body and headers, gzipped if asked
  (every route);
- `timeout`: wait S seconds, then answer normally (every route);
- `bad_json`: 200 with a body that is not JSON (compact, usage, token);
- `garbage`: a status with an HTML page whose bytes are not UTF-8, as a
  broken proxy in front of the server sends (compact, usage, token);
- `cut`: N events of a normal stream, then abort the connection (responses);
- `stall`: N events, S seconds of silence, then the rest (responses);
- `raw`: exact byte chunks as an event stream, then end or reset (responses).
"""

from __future__ import annotations

from typing import Any, Final, Literal, cast

import attrs

FaultKind = Literal["status", "cut", "stall", "raw", "timeout", "bad_json", "garbage"]
FaultRoute = Literal["responses", "compact", "usage", "token"]

ROUTES: Final[tuple[FaultRoute, ...]] = ("responses", "compact", "usage", "token")
KINDS_BY_ROUTE: Final[dict[FaultRoute, frozenset[str]]] = {
    "responses": frozenset({"status", "cut", "stall", "raw", "timeout"}),
    "compact": frozenset({"status", "timeout", "bad_json", "garbage"}),
    "usage": frozenset({"status", "timeout", "bad_json", "garbage"}),
    "token": frozenset({"status", "timeout", "bad_json", "garbage"}),
}


@attrs.frozen
class Fault:
    """One queued misbehaviour; build it with the class methods."""

    kind: FaultKind
    status_code: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.Factory(dict)
    gzip: bool = False
    events: int = 0
    seconds: float = 0.0
    chunks: tuple[bytes, ...] = ()
    then: Literal["end", "reset"] = "end"

    @classmethod
    def status(
        cls,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        gzip: bool = False,
    ) -> Fault:
        """Answer with `status` and `body` as JSON (gzip-encoded if asked)."""
        return cls(
            "status", status_code=status, body=body, headers=headers or {}, gzip=gzip
        )

    @classmethod
    def cut(cls, after_events: int) -> Fault:
        """Send `after_events` events of a normal stream, then drop the TCP link."""
        return cls("cut", events=after_events)

    @classmethod
    def stall(cls, after_events: int, seconds: float) -> Fault:
        """Send `after_events` events, go quiet for `seconds`, then carry on."""
        return cls("stall", events=after_events, seconds=seconds)

    @classmethod
    def raw(
        cls,
        chunks: list[bytes] | tuple[bytes, ...],
        then: Literal["end", "reset"] = "end",
    ) -> Fault:
        """Send these bytes as an event stream, then end cleanly or reset."""
        return cls("raw", chunks=tuple(chunks), then=then)

    @classmethod
    def timeout(cls, seconds: float) -> Fault:
        """Wait `seconds` before answering normally (a client gives up first)."""
        return cls("timeout", seconds=seconds)

    @classmethod
    def bad_json(cls) -> Fault:
        """Answer 200 with a body that does not parse as JSON."""
        return cls("bad_json")

    @classmethod
    def garbage(cls, status: int = 502) -> Fault:
        """Answer `status` with an HTML body that is not valid UTF-8."""
        return cls("garbage", status_code=status)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Build a fault from the control API's JSON (`{"kind": ..., ...}`)."""
        kind = data.get("kind")
        if kind == "status":
            return cls.status(
                int(data.get("status", 500)),
                data.get("body"),
                headers=data.get("headers"),
                gzip=bool(data.get("gzip", False)),
            )
        if kind == "cut":
            return cls.cut(int(data.get("events", 0)))
        if kind == "stall":
            return cls.stall(int(data.get("events", 0)), float(data["seconds"]))
        if kind == "raw":
            chunks = [c.encode() for c in data.get("chunks", [])]
            then = cast(Literal["end", "reset"], data.get("then", "end"))
            return cls.raw(chunks, then)
        if kind == "timeout":
            return cls.timeout(float(data["seconds"]))
        if kind == "bad_json":
            return cls.bad_json()
        if kind == "garbage":
            return cls.garbage(int(data.get("status", 502)))
        raise ValueError(f"unknown fault kind {kind!r}")


def check_route(route: str, fault: Fault) -> FaultRoute:
    """Refuse a fault kind that the route cannot act out."""
    if route not in KINDS_BY_ROUTE:
        raise ValueError(f"unknown fault route {route!r}; use one of {ROUTES}")
    if fault.kind not in KINDS_BY_ROUTE[route]:
        raise ValueError(f"fault kind {fault.kind!r} does not apply to {route!r}")
    return route
