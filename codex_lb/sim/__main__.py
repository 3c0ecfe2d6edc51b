"""`python -m codex_lb.sim`: run the emulated backend as a standalone server.

It prints the settings that point codex-lb at it and the `auth.json` files
to import, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from .emulator import DEFAULT_EVENT_DELAY, DEFAULT_MODELS, DEFAULT_TEXT_EVENTS, Emulator
from .state import SimAccount
from .tokens import DEFAULT_ACCESS_TOKEN_TTL

KNOWN_PLANS = ("free", "plus", "pro", "team", "business", "enterprise", "edu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m codex_lb.sim",
        description="Emulated ChatGPT (Codex) backend and OAuth server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free)")
    parser.add_argument("--accounts", type=int, default=3, help="number of accounts")
    parser.add_argument(
        "--plans",
        default="plus",
        help="comma-separated plans, cycled over the accounts (free is weekly-only)",
    )
    parser.add_argument(
        "--email-domain", default="example.com", help="accounts are simN@DOMAIN"
    )
    parser.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="emulated seconds per real second (3600: an hour a second; 0: frozen)",
    )
    parser.add_argument(
        "--auth-dir",
        type=Path,
        default=None,
        help="write DIR/<email>/auth.json for every account",
    )
    parser.add_argument(
        "--fast", action="store_true", help="no delays between stream events"
    )
    parser.add_argument(
        "--event-delay-ms",
        type=float,
        default=DEFAULT_EVENT_DELAY * 1000,
        help="delay between stream events in milliseconds",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_TEXT_EVENTS,
        help="text deltas per streamed answer",
    )
    parser.add_argument(
        "--access-token-ttl",
        type=int,
        default=DEFAULT_ACCESS_TOKEN_TTL,
        help="access token lifetime in emulated seconds",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="comma-separated models served; others get 400 model_not_found",
    )
    parser.add_argument(
        "--whole-percents",
        action="store_true",
        help="report used percents as whole numbers, as the real upstream does",
    )
    parser.add_argument(
        "--auto-approve-device",
        action="store_true",
        help="approve device logins at once (as the next account to log in)",
    )
    args = parser.parse_args(argv)

    plans = [plan.strip() for plan in args.plans.split(",") if plan.strip()]
    unknown = [plan for plan in plans if plan not in KNOWN_PLANS]
    if not plans or unknown:
        parser.error(f"--plans {args.plans!r}: use some of {', '.join(KNOWN_PLANS)}")
    args.plans = plans
    if args.accounts < 1:
        parser.error(f"--accounts {args.accounts}: at least 1")
    return args


def build_emulator(args: argparse.Namespace) -> Emulator:
    accounts = [
        SimAccount.make(
            f"sim{index + 1}@{args.email_domain}", args.plans[index % len(args.plans)]
        )
        for index in range(args.accounts)
    ]
    return Emulator(
        accounts,
        clock_speed=args.clock_speed,
        event_delay=0.0 if args.fast else args.event_delay_ms / 1000,
        text_events=args.events,
        access_token_ttl=args.access_token_ttl,
        models=[model.strip() for model in args.models.split(",") if model.strip()],
        auto_approve_device=args.auto_approve_device,
        whole_percents=args.whole_percents,
    )


async def serve(args: argparse.Namespace) -> None:
    emulator = build_emulator(args)
    await emulator.start(args.host, args.port)
    try:
        print(f"codex-lb emulator on {emulator.base_url}")
        print(f"  CODEX_LB_UPSTREAM_BASE_URL={emulator.upstream_base_url}")
        print(f"  CODEX_LB_AUTH_BASE_URL={emulator.auth_base_url}")
        for row in emulator.snapshot():
            print(f"  {row['email']} ({row['plan']}) {row['chatgpt_account_id']}")
        if args.auth_dir is not None:
            for path in emulator.write_auth_files(args.auth_dir):
                print(f"  auth file: {path}")
        print(f"  control API: {emulator.base_url}/_sim/accounts")
        sys.stdout.flush()

        # Serve until interrupted; the runner does the work.
        await asyncio.Event().wait()
    finally:
        await emulator.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
