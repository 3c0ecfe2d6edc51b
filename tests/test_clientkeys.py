"""Client keys: their form, their stored hash, the in-memory key ring."""

from __future__ import annotations

import hashlib
from pathlib import Path

from codex_lb.clientkeys import KeyRing, create_key, generate_key, hash_key
from codex_lb.store import Store, open_store


class TestKeys:
    def test_key_form_and_hash(self) -> None:
        """A key is sk-clb- and 43 URL-safe characters (32 bytes); hash is SHA-256."""
        key = generate_key()

        assert key.startswith("sk-clb-") and len(key) == len("sk-clb-") + 43
        assert generate_key() != key
        assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()

    async def test_only_the_hash_is_stored(self, store: Store, tmp_path: Path) -> None:
        """The store holds the hash and a short prefix, never the key."""
        key, row = await create_key(store, "laptop")

        assert row.key_hash == hash_key(key)
        assert row.shown == key[:11]
        assert key.encode() not in (tmp_path / "data" / "store.db").read_bytes()


class TestKeyRing:
    async def test_check_and_exist(self, store: Store) -> None:
        """A live key maps to its id; anything else to None."""
        ring = KeyRing(store)
        await ring.load()
        empty = ring.exist()
        key, row = await create_key(store, "ci")
        await ring.load()

        assert empty is False
        assert ring.exist() is True
        assert await ring.check(key) == row.id
        assert await ring.check(key + "x") is None
        assert await ring.check("sk-clb-guess") is None

    async def test_changes_from_another_process_are_synced(
        self, store: Store, tmp_path: Path
    ) -> None:
        """A key made and revoked through another connection reaches the ring."""
        ring = KeyRing(store)
        await ring.load()
        other = await open_store(tmp_path / "data")
        try:
            key, row = await create_key(other, "cli")
            created = await ring.sync()
            accepted = await ring.check(key)
            await other.revoke_api_key(row.id)
            revoked = await ring.sync()
        finally:
            await other.close()

        assert (created, accepted) == (True, row.id)
        assert revoked is True
        assert await ring.check(key) is None
        assert ring.exist() is False
        assert await ring.sync() is False
