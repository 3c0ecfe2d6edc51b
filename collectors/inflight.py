"""Requests in flight, in the whole proxy and per account."""

from __future__ import annotations

from collections import Counter

from codex_lb.events import (
    AttemptFinished,
    AttemptStarted,
    PoolChanged,
    RequestFinished,
    RequestStarted,
)
from codex_lb.events.collector_api import CollectorContext
from codex_lb.events.roster import Roster


class Inflight:
    """Gauges that pair started and finished events; never below 0."""

    def register(self, ctx: CollectorContext) -> None:
        self.roster = Roster()
        self.requests: set[str] = set()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.per_account: Counter[str] = Counter()
        self.proxy = ctx.gauge(
            "codex_lb_proxy_inflight_requests", "Client requests being served."
        )
        self.account = ctx.gauge(
            "codex_lb_account_inflight_requests",
            "Upstream requests open on each account.",
            ("account_id",),
        )
        self.proxy.set(0)

    def pool_changed(self, event: PoolChanged) -> None:
        added, gone = self.roster.update(event)
        for account_id in gone:
            self.account.remove_where(account_id=account_id)
        for info in added:
            self._show(info.account_id)

    def request_started(self, event: RequestStarted) -> None:
        self.requests.add(event.request_id)
        self.proxy.set(len(self.requests))

    def request_finished(self, event: RequestFinished) -> None:
        self.requests.discard(event.request_id)
        self.proxy.set(len(self.requests))

    def attempt_started(self, event: AttemptStarted) -> None:
        self.attempts[(event.request_id, event.account_id)] += 1
        self.per_account[event.account_id] += 1
        self._show(event.account_id)

    def attempt_finished(self, event: AttemptFinished) -> None:
        key = (event.request_id, event.account_id)
        if self.attempts[key] <= 0:
            return
        self.attempts[key] -= 1
        if not self.attempts[key]:
            del self.attempts[key]
        self.per_account[event.account_id] -= 1
        if not self.per_account[event.account_id]:
            del self.per_account[event.account_id]
        self._show(event.account_id)

    def _show(self, account_id: str) -> None:
        if self.roster.knows(account_id):
            self.account.set(self.per_account.get(account_id, 0), account_id=account_id)
