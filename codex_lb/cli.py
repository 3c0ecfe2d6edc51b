"""The ``codex-lb`` commands: serve, and manage accounts.

Account commands write to the store directly; a running server picks the
change up within two seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import webbrowser
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from codex_lb import __version__
from codex_lb.accounts.identity import AuthFileError, account_from_auth_file
from codex_lb.accounts.oauth import (
    DEFAULT_CALLBACK_PORT,
    DeviceCode,
    LoginError,
    browser_login,
    device_login,
)
from codex_lb.accounts.states import StateConflict, paused, resumed
from codex_lb.cli_keys import add_key_commands, run_keys
from codex_lb.config import Settings, SettingsError, load_settings
from codex_lb.logs import configure_logging
from codex_lb.store import (
    STORE_ERRORS,
    AccountRow,
    Store,
    StoreOpenError,
    open_store,
    store_failure,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codex-lb",
        description="One local endpoint in front of a pool of ChatGPT (Codex) "
        "accounts. Settings come from CODEX_LB_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("serve", help="serve the proxy (the default command)")

    accounts = commands.add_parser("accounts", help="manage pooled accounts")
    actions = accounts.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("import", help="add accounts from Codex auth.json files")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE")
    listing = actions.add_parser("list", help="show accounts and their quota")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    for name, text in (
        ("pause", "take an account out of routing"),
        ("resume", "end a pause (a bench it was under comes back if still on)"),
        ("remove", "delete an account and its tokens"),
        ("pin", "route to this account (and other pinned ones) first"),
        ("unpin", "stop preferring this account"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("account", metavar="ID", help="account id or email")

    login = commands.add_parser(
        "login",
        help="add (or re-login) an account by signing in to ChatGPT",
        description="Sign in as the Codex CLI does, against CODEX_LB_AUTH_BASE_URL. "
        "A known account gets its tokens replaced and leaves reauth_required.",
    )
    login.add_argument(
        "--device",
        action="store_true",
        help="use a code typed on another device instead of a local browser",
    )
    login.add_argument(
        "--callback-port",
        type=int,
        default=DEFAULT_CALLBACK_PORT,
        metavar="PORT",
        help="local port for the browser's return (default %(default)s; "
        "0 picks a free one, which a real ChatGPT login refuses)",
    )
    login.add_argument(
        "--no-browser",
        action="store_true",
        help="only print the sign-in address, do not open a browser",
    )
    add_key_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"codex-lb: bad setting: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)

    try:
        return _run_command(settings, args)
    except StoreOpenError as exc:
        # A data folder that is read-only, unreadable or not a folder.
        print(f"codex-lb: {exc} (CODEX_LB_DATA_DIR)", file=sys.stderr)
        return 2


def _run_command(settings: Settings, args: argparse.Namespace) -> int:
    if args.command in (None, "serve"):
        from codex_lb.serve import StartupError, run

        try:
            run(settings)
        except StartupError as exc:
            for problem in exc.problems:
                print(f"codex-lb: {problem}", file=sys.stderr)
            return 2
        return 0
    if args.command == "accounts":
        return asyncio.run(_accounts(settings, args))
    if args.command == "login":
        return asyncio.run(_login(settings, args))
    if args.command == "keys":
        return asyncio.run(run_keys(settings, args))
    return 2


async def _accounts(settings: Settings, args: argparse.Namespace) -> int:
    store = await open_store(settings.data_path)
    try:
        if args.action == "import":
            return await _import(store, args.files)
        rows = await store.list_accounts()
        if args.action == "list":
            _print_accounts(rows, args.json)
            return 0

        matches = [r for r in rows if args.account in (r.id, r.email)]
        if len(matches) != 1:
            what = "no account" if not matches else "several accounts"
            print(
                f"codex-lb: {what} with id or email {args.account!r}", file=sys.stderr
            )
            return 1
        row = matches[0]
        try:
            note = await _account_action(store, row, args.action)
        except StateConflict as exc:
            print(
                f"codex-lb: cannot {args.action} {row.id} ({row.email}): {exc}",
                file=sys.stderr,
            )
            return 1
        except STORE_ERRORS as exc:
            print(
                f"codex-lb: cannot {args.action} {row.id} ({row.email}): the "
                f"store could not be written: {store_failure(exc)}",
                file=sys.stderr,
            )
            return 1
        print(f"{args.action}: {row.id} ({row.email}){note}")
        return 0
    finally:
        await store.close()


async def _account_action(store: Store, row: AccountRow, action: str) -> str:
    """Apply ``action`` to the account; a note on what it came to."""
    if action in ("pause", "resume"):
        return await _pause_or_resume(store, row, action)
    if action == "remove":
        await store.remove_account(row.id)
    elif action in ("pin", "unpin"):
        await store.set_pinned(row.id, action == "pin")
    return ""


async def _pause_or_resume(store: Store, row: AccountRow, action: str) -> str:
    """Apply the operator's pause or its end; a note on what it came to."""
    if action == "pause":
        state = paused(row.state)
        if state == row.state:
            return " (already paused)"
    else:
        state = resumed(row.state, time.time())
    await store.set_account_state(row.id, state)
    if state.status not in ("active", "paused"):
        return f" (back to its bench: {state.status} until {_when(state.status_until)})"
    return ""


async def _import(store: Store, files: list[Path]) -> int:
    """Import each file on its own: the good ones land, the bad are named.

    Exits 1 when any file was not imported, so a script notices.
    """
    failed: list[str] = []
    for path in files:
        try:
            new = account_from_auth_file(path)
            saved = await store.save_account(new)
        except AuthFileError as exc:
            print(f"codex-lb: {exc}", file=sys.stderr)
            failed.append(str(path))
            continue
        except STORE_ERRORS as exc:
            print(
                f"codex-lb: {path}: the store could not be written: "
                f"{store_failure(exc)}",
                file=sys.stderr,
            )
            failed.append(str(path))
            continue
        if saved.tokens_kept:
            print(
                f"kept the newer stored tokens of {saved.id} ({new.email}): "
                f"they were refreshed after {path} was written"
            )
        else:
            print(f"imported {saved.id} ({new.email}, {new.plan}) from {path}")
    if failed:
        print(
            f"codex-lb: {len(failed)} of {len(files)} files not imported: "
            + ", ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0


async def _login(settings: Settings, args: argparse.Namespace) -> int:
    """Sign in, then add the account or replace a known one's tokens."""

    def show_url(url: str) -> None:
        print(f"Sign in to ChatGPT in a browser:\n\n  {url}\n", flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    def show_code(device: DeviceCode) -> None:
        print(
            f"On any device, open {device.verification_url}\n"
            f"and enter the code {device.user_code}\n",
            flush=True,
        )

    try:
        async with aiohttp.ClientSession(trust_env=True) as session:
            if args.device:
                new = await device_login(session, settings.auth_base_url, show_code)
            else:
                new = await browser_login(
                    session, settings.auth_base_url, show_url, args.callback_port
                )
    except LoginError as exc:
        print(f"codex-lb: login failed: {exc}", file=sys.stderr)
        return 1

    store = await open_store(settings.data_path)
    try:
        known = {r.chatgpt_account_id: r for r in await store.list_accounts()}
        account_id = await store.add_account(new)
    except STORE_ERRORS as exc:
        print(
            f"codex-lb: signed in as {new.email}, but the store could not be "
            f"written: {store_failure(exc)}",
            file=sys.stderr,
        )
        return 1
    finally:
        await store.close()
    before = known.get(new.chatgpt_account_id)
    if before is None:
        print(f"added {account_id} ({new.email}, {new.plan})")
    else:
        relogin = before.status == "reauth_required"
        note = " and cleared reauth_required" if relogin else ""
        print(f"replaced the tokens of {account_id} ({new.email}){note}")
    return 0


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _print_accounts(rows: list[AccountRow], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": r.id,
                        "email": r.email,
                        "plan": r.plan,
                        "status": r.status,
                        "status_reason": r.status_reason,
                        "status_until": r.status_until,
                        "under_pause": None
                        if r.under_pause is None
                        else {
                            "status": r.under_pause.status,
                            "status_reason": r.under_pause.status_reason,
                            "status_until": r.under_pause.status_until,
                        },
                        "pinned": r.pinned,
                        "primary_used_percent": r.quota.primary_used_percent
                        if r.quota
                        else None,
                        "primary_reset_at": r.quota.primary_reset_at
                        if r.quota
                        else None,
                        "secondary_used_percent": r.quota.secondary_used_percent
                        if r.quota
                        else None,
                        "secondary_reset_at": r.quota.secondary_reset_at
                        if r.quota
                        else None,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return
    if not rows:
        print("no accounts: add one with 'codex-lb accounts import auth.json'")
        return
    header = ("ID", "EMAIL", "PLAN", "STATUS", "5H", "5H RESET", "WEEK", "WEEK RESET")
    table = [header]
    now = time.time()
    for r in rows:
        q = r.quota
        status = r.status + ("*" if r.pinned else "")
        if r.status_until and r.status_until > now:
            status += f" until {_when(r.status_until)}"
        table.append(
            (
                r.id,
                r.email,
                r.plan,
                status,
                _percent(q.primary_used_percent if q else None),
                _when(q.primary_reset_at if q else None),
                _percent(q.secondary_used_percent if q else None),
                _when(q.secondary_reset_at if q else None),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        cells = (
            str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
        )
        print("  ".join(cells).rstrip())
    if any(r.pinned for r in rows):
        print("* pinned: tried before the rest of the pool")
