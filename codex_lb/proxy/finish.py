"""Finishing a request: its events, its log row and its canonical log line.

Every proxied model request ends here exactly once, served or not: the
``request_finished`` event feeds the metrics and the dashboard, the row
waits in the request-log buffer for the store, and one log line says how
the request went.
"""

from __future__ import annotations

import time

import structlog

from codex_lb.events import EventBus, RequestFinished, UnpricedSuccess
from codex_lb.proxy.outcome import Outcome, ProxyRequest
from codex_lb.proxy.pricing import PriceTable
from codex_lb.proxy.request_log import RequestLogBuffer
from codex_lb.store import RequestLogRow

log = structlog.get_logger("codex_lb.proxy")


def finish_request(
    proxied: ProxyRequest,
    outcome: Outcome,
    attempts: int,
    prices: PriceTable,
    bus: EventBus,
    request_log: RequestLogBuffer,
) -> None:
    """Publish the request's events and queue its log row."""
    latency_ms = (time.monotonic() - proxied.started_mono) * 1000
    account = outcome.account
    # Both may come from the client or the upstream: keep them storable.
    model = _storable(outcome.model or proxied.model)
    error_code = _storable(outcome.error_code)
    usage = outcome.usage
    cost = None
    if outcome.success and usage is not None:
        cost = prices.cost(model, usage)
    status = "success" if outcome.success else "error"

    if outcome.success and cost is None:
        reason = (
            "missing_model"
            if not model
            else "missing_usage"
            if usage is None
            else "unknown_pricing"
        )
        bus.publish(
            UnpricedSuccess(
                request_id=proxied.request_id,
                account_id=account.id if account else None,
                api=proxied.api,
                model=model,
                reason=reason,
            )
        )

    tokens: dict[str, int | None] = {
        "input_tokens": usage.input_tokens if usage else None,
        "cached_input_tokens": usage.cached_input_tokens if usage else None,
        "output_tokens": usage.output_tokens if usage else None,
        "reasoning_tokens": usage.reasoning_tokens if usage else None,
    }
    bus.publish(
        RequestFinished(
            request_id=proxied.request_id,
            api=proxied.api,
            model=model,
            account_id=account.id if account else None,
            status=status,
            status_code=outcome.status_code,
            model_label=prices.label(model),
            error_code=error_code,
            latency_ms=latency_ms,
            attempts=attempts,
            cost_usd=cost,
            api_key_id=proxied.api_key_id,
            **tokens,
        )
    )
    request_log.add(
        RequestLogRow(
            request_id=proxied.request_id,
            started_at=proxied.started_at,
            api=proxied.api,
            model=model,
            account_id=account.id if account else None,
            status=status,
            status_code=outcome.status_code,
            error_code=error_code,
            attempts=attempts,
            latency_ms=round(latency_ms, 3),
            cost_usd=cost,
            api_key_id=proxied.api_key_id,
            **tokens,
        )
    )
    log.info(
        "request_finished",
        request_id=proxied.request_id,
        api=proxied.api,
        model=model,
        account_id=account.id if account else None,
        status=status,
        status_code=outcome.status_code,
        error_code=error_code,
        attempts=attempts,
        latency_ms=round(latency_ms, 1),
        input_tokens=tokens["input_tokens"],
        output_tokens=tokens["output_tokens"],
        cost_usd=cost,
    )


def _storable(text: str | None) -> str | None:
    """``text`` that UTF-8 can encode: a lone surrogate (valid in JSON) is "?".

    SQLite and the log refuse such text, and one refused row would hold up
    every row behind it in the request-log buffer.
    """
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")
