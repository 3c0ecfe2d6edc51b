"""Client API keys: making them, hashing them, and checking them fast.

A key is ``sk-clb-`` and 32 random bytes (URL-safe base64). Only its
SHA-256 is stored: with that much entropy a fast hash cannot be reversed by
guessing, so no slow password hash is needed. The :class:`KeyRing` keeps the
hashes of the live keys in memory, so checking a request costs one hash and
one dictionary lookup, and follows changes the ``keys`` commands make from
another process through the store's change marker.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from typing import Final

import structlog
from aiohttp import web

from codex_lb.logs import remember_secret
from codex_lb.store import ApiKeyRow, Store

log = structlog.get_logger("codex_lb.keys")

# Where the access middleware leaves the id of the key a request carried.
API_KEY_ID: Final = web.RequestKey("api_key_id", str)

KEY_PREFIX: Final = "sk-clb-"
# Characters of a key shown by `keys list` to tell keys apart: the prefix
# and four random characters, never enough to use.
SHOWN_CHARS: Final = len(KEY_PREFIX) + 4


def generate_key() -> str:
    """A new client key; shown once, never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of ``key``: its SHA-256, hex.

    ``key`` may come from a header holding any bytes (undecodable ones kept
    as surrogates): it is hashed as those bytes, so it simply matches
    nothing.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


MAX_NAME_CHARS: Final = 64


class KeyNameError(ValueError):
    """A key name that cannot be used; the message says why."""


async def create_key(store: Store, name: str) -> tuple[str, ApiKeyRow]:
    """Make and store a key named ``name``: (the key itself, its row).

    Raises KeyNameError for a name that is empty, too long, not printable,
    held by another live key or equal to a key's id (``keys revoke`` takes
    either, so it must name one key).
    """
    check_key_name(name, await store.list_api_keys())
    key = generate_key()
    remember_secret(key)
    row = await store.add_api_key(name, hash_key(key), key[:SHOWN_CHARS])
    return key, row


def check_key_name(name: str, keys: list[ApiKeyRow]) -> None:
    """Raise KeyNameError unless ``name`` can name a new key among ``keys``."""
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise KeyNameError(
            f"a key name has 1 to {MAX_NAME_CHARS} characters, not {len(name)}"
        )
    if not name.isprintable() or name != name.strip():
        raise KeyNameError(
            f"key name {name[:MAX_NAME_CHARS]!r} has a control character or "
            "leading or trailing spaces"
        )
    if any(row.id == name for row in keys):
        raise KeyNameError(f"key name {name!r} is another key's id")
    if any(row.name == name and row.revoked_at is None for row in keys):
        raise KeyNameError(f"a live key is already named {name!r}")


class KeyRing:
    """The live keys' hashes, in memory, following the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._hashes: dict[str, str] = {}
        self._marker: int | None = None

    def exist(self) -> bool:
        """Whether any live key exists (so every proxy route needs one)."""
        return bool(self._hashes)

    async def check(self, key: str) -> str | None:
        """The id of the live key ``key``, or None.

        Every live hash is compared in constant time, with no early exit, so
        the time taken says nothing about how close a guess came.
        """
        digest = hash_key(key)
        found = None
        for stored, key_id in self._hashes.items():
            if hmac.compare_digest(stored, digest):
                found = key_id
        return found

    async def load(self) -> None:
        """Read the live keys from the store now."""
        self._marker = await self._store.change_marker()
        rows = await self._store.list_api_keys()
        self._hashes = {r.key_hash: r.id for r in rows if r.revoked_at is None}

    async def sync(self) -> bool:
        """Reload when another process changed the store; True if reloaded."""
        marker = await self._store.change_marker()
        if marker == self._marker:
            return False
        before = set(self._hashes.values())
        await self.load()
        after = set(self._hashes.values())
        if before != after:
            log.info("api_keys_changed", live_keys=len(after))
        return True

    async def watch(self, interval: float = 1.0) -> None:
        """Sync with the store forever (a background task)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sync()
            except Exception as exc:  # the store may be briefly locked
                log.warning("api_key_sync_failed", error=str(exc))


# The application's key ring, which the access middleware checks keys with.
KEYS_KEY: Final = web.AppKey("api_keys", KeyRing)
