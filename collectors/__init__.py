"""The built-in collectors, one per module, in the order they register."""

from __future__ import annotations

from collectors.account_roster import AccountRoster
from collectors.account_traffic import AccountTraffic
from collectors.inflight import Inflight
from collectors.primary_usage import PrimaryUsage
from collectors.process_health import ProcessHealth
from collectors.quota_forecast import QuotaForecast
from collectors.quota_snapshot_age import QuotaSnapshotAge
from collectors.request_metrics import RequestMetrics
from collectors.routing_metrics import RoutingMetrics
from collectors.weekly_usage import WeeklyUsage

BUILTIN: list[type] = [
    RequestMetrics,
    AccountTraffic,
    AccountRoster,
    PrimaryUsage,
    WeeklyUsage,
    RoutingMetrics,
    Inflight,
    ProcessHealth,
    QuotaSnapshotAge,
    QuotaForecast,
]

__all__ = [
    "BUILTIN",
    "AccountRoster",
    "AccountTraffic",
    "Inflight",
    "PrimaryUsage",
    "ProcessHealth",
    "QuotaForecast",
    "QuotaSnapshotAge",
    "RequestMetrics",
    "RoutingMetrics",
    "WeeklyUsage",
]
