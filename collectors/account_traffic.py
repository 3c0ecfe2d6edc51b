"""Requests, cost, retries and unpriced successes per account."""

from __future__ import annotations

from codex_lb.events import PoolChanged, RequestFinished, Retry, UnpricedSuccess
from codex_lb.events.collector_api import CollectorContext
from codex_lb.events.labels import RETRY_CLASSES, UNPRICED_REASONS
from codex_lb.events.roster import Roster

STATUSES = ("success", "error")


class AccountTraffic:
    """Per-account counters; a known account's series start at 0."""

    def register(self, ctx: CollectorContext) -> None:
        self.roster = Roster()
        self.requests = ctx.counter(
            "codex_lb_proxy_account_requests_total",
            "Client requests by the account that answered last, by outcome.",
            ("account_id", "status"),
        )
        self.cost = ctx.counter(
            "codex_lb_proxy_account_cost_usd_total",
            "API-equivalent cost of served requests in USD, per account.",
            ("account_id",),
        )
        self.retries = ctx.counter(
            "codex_lb_proxy_account_retries_total",
            "Requests that left this account for another, by error class.",
            ("account_id", "error_class"),
        )
        self.unpriced = ctx.counter(
            "codex_lb_proxy_account_unpriced_success_total",
            "Successful requests with unknown cost, per account and reason.",
            ("account_id", "reason"),
        )

    def pool_changed(self, event: PoolChanged) -> None:
        added, gone = self.roster.update(event)
        for account_id in gone:
            for metric in (self.requests, self.cost, self.retries, self.unpriced):
                metric.remove_where(account_id=account_id)
        for info in added:
            account_id = info.account_id
            self.cost.touch(account_id=account_id)
            for status in STATUSES:
                self.requests.touch(account_id=account_id, status=status)
            for error_class in RETRY_CLASSES:
                self.retries.touch(account_id=account_id, error_class=error_class)
            for reason in UNPRICED_REASONS:
                self.unpriced.touch(account_id=account_id, reason=reason)

    def request_finished(self, event: RequestFinished) -> None:
        if not self.roster.knows(event.account_id):
            return
        self.requests.inc(account_id=event.account_id, status=event.status)
        if event.cost_usd is not None:
            self.cost.inc(event.cost_usd, account_id=event.account_id)

    def retry(self, event: Retry) -> None:
        if self.roster.knows(event.account_id):
            self.retries.inc(account_id=event.account_id, error_class=event.error_class)

    def unpriced_success(self, event: UnpricedSuccess) -> None:
        if self.roster.knows(event.account_id):
            self.unpriced.inc(account_id=event.account_id, reason=event.reason)
