"""codex-lb / Accounts and risk: per-account quota, traffic and reset cliffs."""

from __future__ import annotations

from .model import (
    Dashboard,
    Panel,
    Row,
    account_table,
    account_variable,
    per_account,
    q,
)

# Accounts whose weekly reset is still ahead. Once a reset time has passed
# the account's row says nothing about what that reset will cost.
RESET_AHEAD = "codex_lb_secondary_reset_at_seconds > time()"


def reset_ahead(expr: str) -> str:
    """`expr` for the accounts whose weekly reset is still ahead."""
    return f"({expr}) and on(account_id) ({RESET_AHEAD})"


# The seed's implied quota: cost over a day per percent of the weekly window
# the day consumed.
IMPLIED_QUOTA = (
    "increase(codex_lb_proxy_account_cost_usd_total[1d]) / "
    "(increase(codex_lb_secondary_used_percent_increase_total[1d]) / 100)"
)
# An idle account used no percent: its quotient is NaN or +Inf, not a figure.
USED_SOME = "increase(codex_lb_secondary_used_percent_increase_total[1d]) > 0"

RESET_IN = "Weekly reset in"

ACCOUNTS = Dashboard(
    uid="codex-lb-accounts",
    title="codex-lb / Accounts and risk",
    description="Per-account quota, traffic and the risks of the weekly windows.",
    variables=(account_variable(multi=True),),
    items=(
        Panel(
            "Pool runway",
            "stat",
            (q("min(codex_lb_pool_runway_seconds)"),),
            width=6,
            height=4,
            unit="s",
            description="Time until the pool's usable weekly capacity runs out "
            "at the last day's burn rate, counting resets (codex-lb's forecast; "
            "infinite when resets keep up with the use, no data when nothing "
            "is being used).",
        ),
        Panel(
            "Earliest weekly reset in",
            "stat",
            (q(f"min({RESET_AHEAD}) - time()"),),
            width=6,
            height=4,
            unit="s",
        ),
        Panel(
            "Weekly credits left (pool)",
            "stat",
            (q("sum(codex_lb_secondary_remaining_credits)"),),
            width=6,
            height=4,
            unit="short",
        ),
        Panel(
            "Accounts needing re-auth",
            "stat",
            (q('sum(codex_lb_accounts{status="reauth_required"})'),),
            width=6,
            height=4,
            unit="short",
            description="Log these accounts in again (dashboard or `codex_lb login`).",
        ),
        Row("Weekly quota: top 20"),
        account_table(
            "Top 20 by remaining weekly credits",
            "topk(20, codex_lb_secondary_remaining_credits)",
            "short",
            "Credits left in each account's weekly window.",
        ),
        account_table(
            "Top 20 by weekly used %",
            "topk(20, codex_lb_secondary_used_percent)",
            "percent",
            "How full each account's weekly window is.",
        ),
        Row("Traffic: top 10"),
        account_table(
            "Top 10 by cost per hour",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_cost_usd_total[5m])) * 3600)",
            "currencyUSD",
            "API-equivalent dollars per hour spent through each account.",
        ),
        account_table(
            "Top 10 by requests/s",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_requests_total[5m])))",
            "reqps",
            "Requests each account served (success or error).",
        ),
        account_table(
            "Top 10 by error rate",
            "topk(10, sum by (account_id) "
            '(rate(codex_lb_proxy_account_requests_total{status="error"}[5m])) / '
            "sum by (account_id) (rate(codex_lb_proxy_account_requests_total[5m])))",
            "percentunit",
            "Share of each account's requests that ended in an error.",
        ),
        account_table(
            "Top 10 by retries/s",
            "topk(10, sum by (account_id) "
            "(rate(codex_lb_proxy_account_retries_total[5m])))",
            "reqps",
            "How often requests left each account for another.",
        ),
        Row("Reset cliff and forecasts"),
        Panel(
            "Reset cliff: time to weekly reset beside what is left",
            "table",
            (
                q(
                    per_account("codex_lb_secondary_reset_at_seconds - time() > 0"),
                    instant=True,
                    label=RESET_IN,
                    unit="s",
                ),
                q(
                    per_account(reset_ahead("codex_lb_secondary_remaining_credits")),
                    instant=True,
                    label="Credits left now",
                    unit="short",
                ),
                q(
                    per_account(reset_ahead("codex_lb_secondary_used_percent")),
                    instant=True,
                    label="Weekly used %",
                    unit="percent",
                ),
                q(
                    per_account(
                        reset_ahead("codex_lb_secondary_waste_forecast_credits")
                    ),
                    instant=True,
                    label="Credits lost at reset (forecast)",
                    unit="short",
                ),
                q(
                    per_account(
                        reset_ahead("codex_lb_secondary_exhaustion_eta_seconds")
                    ),
                    instant=True,
                    label="Weekly window full in (forecast)",
                    unit="s",
                ),
            ),
            width=24,
            height=10,
            sort_by=RESET_IN,
            sort_ascending=True,
            description="Capacity left close to a reset is lost at the reset. "
            "Soonest reset first; accounts whose reset time has passed (no "
            "reading since) are left out. A large 'Credits lost at reset' "
            "means route more work to that account.",
        ),
        Panel(
            "Implied weekly quota (USD, observed over 1 d)",
            "table",
            (
                q(
                    per_account(f"({IMPLIED_QUOTA}) and on(account_id) ({USED_SOME})"),
                    instant=True,
                    label="Implied USD (Prometheus, 1 d)",
                ),
                q(
                    per_account("codex_lb_secondary_implied_quota_usd"),
                    instant=True,
                    label="Implied USD (codex-lb)",
                ),
            ),
            width=24,
            height=9,
            unit="currencyUSD",
            description="What 100 % of a weekly window is worth in API dollars, "
            "from cost divided by the weekly percent it consumed. "
            "Workload-dependent: an operational estimate. The Prometheus "
            "column needs weekly use in the last day (idle accounts are left "
            "out) and reads low for a day after a reset, whose lost capacity "
            "the reset-aware counter adds; codex-lb's column fits the current "
            "window only.",
        ),
        Row("Trends"),
        Panel(
            "Weekly used % by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_secondary_used_percent{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="percent",
        ),
        Panel(
            "5 h used % by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_primary_used_percent{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="percent",
        ),
        Panel(
            "Accounts by status",
            "timeseries",
            (q("sum by (status) (codex_lb_accounts)", "{{status}}"),),
            width=12,
            unit="short",
            stacked=True,
        ),
        Panel(
            "Requests in flight by account",
            "timeseries",
            (
                q(
                    per_account(
                        'codex_lb_account_inflight_requests{account_id=~"$account"}'
                    ),
                    "{{display}}",
                ),
            ),
            width=12,
            unit="short",
        ),
    ),
)
