"""The ``codex-lb keys`` commands: create, list and revoke client API keys.

A key is printed once, by ``keys create``, and stored only as its SHA-256;
``keys list`` shows its first characters to tell keys apart. The commands
write to the store directly; a running server picks the change up within
two seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from codex_lb.clientkeys import KeyNameError, create_key
from codex_lb.config import Settings
from codex_lb.store import STORE_ERRORS, ApiKeyRow, open_store, store_failure


def add_key_commands(commands: Any) -> None:
    """Add the ``keys`` group to the CLI's subcommands."""
    keys = commands.add_parser("keys", help="manage client API keys")
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create", help="make a key; it is printed once and stored hashed"
    )
    create.add_argument(
        "name",
        metavar="NAME",
        help="who or what uses the key: 1 to 64 printable characters, unique "
        "among live keys",
    )
    listing = actions.add_parser("list", help="show keys (never the keys)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    revoke = actions.add_parser("revoke", help="stop accepting a key")
    revoke.add_argument("key", metavar="ID", help="key id (or its unique name)")


async def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    store = await open_store(settings.data_path)
    try:
        if args.action == "create":
            try:
                key, row = await create_key(store, args.name)
            except KeyNameError as exc:
                print(f"codex-lb: cannot create the key: {exc}", file=sys.stderr)
                return 1
            except STORE_ERRORS as exc:
                print(
                    f"codex-lb: cannot create the key: the store could not be "
                    f"written: {store_failure(exc)}",
                    file=sys.stderr,
                )
                return 1
            print(f"created {row.id} ({row.name}):")
            print(key)
            print(
                "This key is shown once and stored only as a hash: keep it now. "
                "Once any key exists, every proxy route needs one.",
                file=sys.stderr,
            )
            return 0
        rows = await store.list_api_keys()
        if args.action == "list":
            _print_keys(rows, args.json)
            return 0

        # An id names one key; a name may, among the live keys.
        matches = [r for r in rows if r.id == args.key] or [
            r for r in rows if r.name == args.key and r.revoked_at is None
        ]
        if len(matches) != 1:
            what = "no key" if not matches else "several live keys"
            print(f"codex-lb: {what} with id or name {args.key!r}", file=sys.stderr)
            return 1
        row = matches[0]
        try:
            revoked = await store.revoke_api_key(row.id)
        except STORE_ERRORS as exc:
            print(
                f"codex-lb: cannot revoke {row.id}: the store could not be "
                f"written: {store_failure(exc)}",
                file=sys.stderr,
            )
            return 1
        if not revoked:
            print(f"codex-lb: key {row.id} is already revoked", file=sys.stderr)
            return 1
        print(f"revoked {row.id} ({row.name})")
        return 0
    finally:
        await store.close()


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print_keys(rows: list[ApiKeyRow], as_json: bool) -> None:
    if as_json:
        listing = [
            {
                "id": r.id,
                "name": r.name,
                "shown": r.shown + "...",
                "created_at": r.created_at,
                "revoked_at": r.revoked_at,
                "status": "active" if r.revoked_at is None else "revoked",
            }
            for r in rows
        ]
        print(json.dumps(listing, indent=2))
        return
    if not rows:
        print("no keys: the proxy routes serve loopback callers without one")
        return
    table = [("ID", "NAME", "KEY", "CREATED", "STATUS")]
    for r in rows:
        status = "active" if r.revoked_at is None else f"revoked {_when(r.revoked_at)}"
        table.append((r.id, r.name, r.shown + "...", _when(r.created_at), status))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
