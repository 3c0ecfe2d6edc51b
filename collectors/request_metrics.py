"""Requests, errors, latency, tokens and cost by model and API.

The series of a model and API exist at 0 from the moment codex-lb knows the
pair: both outcomes, every token kind and the cost start together, so a
ratio such as the error or cache rate has both sides from the first request.
The pairs seen are kept in the collector's state, so after a restart every
series comes back at 0 before the first request, and ``rate()`` and
``increase()`` count that request too. The pairs are bounded: ``model`` is
a price-table name or ``other``, ``api`` one of four.
"""

from __future__ import annotations

from codex_lb.events import RequestFinished, Retry, UnpricedSuccess
from codex_lb.events.collector_api import CollectorContext, CollectorState
from codex_lb.events.labels import RETRY_CLASSES, UNPRICED_REASONS, error_code_label
from codex_lb.events.metrics import LATENCY_MS_BUCKETS

ATTEMPT_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)
STATUSES = ("success", "error")
TOKEN_KINDS = ("input", "cached_input", "output", "reasoning")
# The state key holding the (model, api) pairs seen.
SEEN_KEY = "series"


class RequestMetrics:
    """Pool-wide request counters and histograms, one count per request."""

    def register(self, ctx: CollectorContext) -> None:
        self.state: CollectorState = ctx.state
        self.seen: set[tuple[str, str]] = set()
        self.requests = ctx.counter(
            "codex_lb_proxy_requests_total",
            "Client requests by outcome, model and API.",
            ("status", "model", "api"),
        )
        self.errors = ctx.counter(
            "codex_lb_proxy_errors_total",
            "Client requests that ended in an error, by error code (known "
            "codes, else other).",
            ("error_code",),
        )
        self.latency = ctx.histogram(
            "codex_lb_proxy_latency_ms",
            "Time from a request's arrival to its last byte, in milliseconds.",
            ("model", "api"),
            LATENCY_MS_BUCKETS,
        )
        self.tokens = ctx.counter(
            "codex_lb_proxy_tokens_total",
            "Tokens by kind; cached input is part of input, reasoning of output.",
            ("kind", "model"),
        )
        self.cost = ctx.counter(
            "codex_lb_proxy_cost_usd_total",
            "API-equivalent cost of served requests in USD.",
            ("model",),
        )
        self.attempts = ctx.histogram(
            "codex_lb_proxy_attempts",
            "Accounts tried per client request.",
            ("api",),
            ATTEMPT_BUCKETS,
        )
        self.retries = ctx.counter(
            "codex_lb_proxy_retries_total",
            "Requests moved from one account to another, by error class.",
            ("error_class",),
        )
        self.unpriced = ctx.counter(
            "codex_lb_proxy_unpriced_success_total",
            "Successful requests whose cost is unknown, by reason.",
            ("reason",),
        )
        for error_class in RETRY_CLASSES:
            self.retries.touch(error_class=error_class)
        for reason in UNPRICED_REASONS:
            self.unpriced.touch(reason=reason)
        for model, api in _pairs(ctx.state.get(SEEN_KEY)):
            self._start(model, api)

    def request_finished(self, event: RequestFinished) -> None:
        model = event.model_label
        if (model, event.api) not in self.seen:
            self._start(model, event.api)
            self.state.set(SEEN_KEY, sorted(self.seen))
        self.requests.inc(status=event.status, model=model, api=event.api)
        if event.status != "success":
            self.errors.inc(error_code=error_code_label(event.error_code))
        self.latency.observe(event.latency_ms, model=model, api=event.api)
        self.attempts.observe(event.attempts, api=event.api)

        for kind, count in (
            ("input", event.input_tokens),
            ("cached_input", event.cached_input_tokens),
            ("output", event.output_tokens),
            ("reasoning", event.reasoning_tokens),
        ):
            if count:
                self.tokens.inc(count, kind=kind, model=model)
        if event.cost_usd is not None:
            self.cost.inc(event.cost_usd, model=model)

    def _start(self, model: str, api: str) -> None:
        """Make every series of ``model`` and ``api`` exist at 0."""
        self.seen.add((model, api))
        for status in STATUSES:
            self.requests.touch(status=status, model=model, api=api)
        self.latency.touch(model=model, api=api)
        for kind in TOKEN_KINDS:
            self.tokens.touch(kind=kind, model=model)
        self.cost.touch(model=model)

    def retry(self, event: Retry) -> None:
        self.retries.inc(error_class=event.error_class)

    def unpriced_success(self, event: UnpricedSuccess) -> None:
        self.unpriced.inc(reason=event.reason)


def _pairs(saved: object) -> list[tuple[str, str]]:
    """The (model, api) pairs a saved state holds; none for anything else."""
    if not isinstance(saved, list):
        return []
    return [
        (item[0], item[1])
        for item in saved
        if isinstance(item, list)
        and len(item) == 2
        and all(isinstance(part, str) for part in item)
    ]
