"""Events: the records the proxy publishes, the bus, and the collector API."""

from codex_lb.events.bus import EventBus
from codex_lb.events.records import (
    AccountInfo,
    AccountMarked,
    AccountSelected,
    AttemptFinished,
    AttemptStarted,
    Event,
    PoolChanged,
    QuotaSnapshot,
    QuotaWindow,
    RequestFinished,
    RequestLogChanged,
    RequestStarted,
    Retry,
    UnpricedSuccess,
    UsageRefreshFailed,
)

__all__ = [
    "AccountInfo",
    "AccountMarked",
    "AccountSelected",
    "AttemptFinished",
    "AttemptStarted",
    "Event",
    "EventBus",
    "PoolChanged",
    "QuotaSnapshot",
    "QuotaWindow",
    "RequestFinished",
    "RequestLogChanged",
    "RequestStarted",
    "Retry",
    "UnpricedSuccess",
    "UsageRefreshFailed",
]
