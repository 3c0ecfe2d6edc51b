"""``codex-lb keys``: run as its own process beside a serving codex-lb."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path

from tests.conftest import LB

CHAT = "/v1/chat/completions"
CHAT_BODY = {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}


async def codex_lb(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run ``python -m codex_lb ARGS`` on the test server's data folder."""
    env = {
        **os.environ,
        "CODEX_LB_DATA_DIR": str(tmp_path / "lb-data"),
        "CODEX_LB_LOG_LEVEL": "warning",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "codex_lb",
        *args,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status_within(
    lb: LB, expected: int, seconds: float, headers: dict[str, str] | None = None
) -> float:
    """Seconds until a chat request gets ``expected``; fails after ``seconds``."""
    start = time.monotonic()
    while True:
        response = await lb.client.post(CHAT, json=CHAT_BODY, headers=headers or {})
        await response.read()
        elapsed = time.monotonic() - start
        if response.status == expected:
            return elapsed
        assert elapsed < seconds, f"still {response.status} after {elapsed:.1f} s"
        await asyncio.sleep(0.05)


class TestKeysCommands:
    async def test_create_list_revoke_reach_the_server(
        self, lb: LB, tmp_path: Path
    ) -> None:
        """A key made by the CLI is required within 2 s, and revoked as fast."""
        code, out, err = await codex_lb(tmp_path, "keys", "create", "laptop")
        assert code == 0, err
        key = out.splitlines()[-1]
        assert key.startswith("sk-clb-") and len(key) == 50
        assert "shown once" in err

        locked = await status_within(lb, 401, 2.0)
        assert await status_within(lb, 200, 0.1, {"Authorization": f"Bearer {key}"})
        assert locked < 2.0

        code, listing, _ = await codex_lb(tmp_path, "keys", "list", "--json")
        [entry] = json.loads(listing)
        assert code == 0 and key not in listing
        assert (entry["name"], entry["status"], entry["shown"]) == (
            "laptop",
            "active",
            key[:11] + "...",
        )
        [row] = await lb.store.list_api_keys()
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()

        code, out, _ = await codex_lb(tmp_path, "keys", "revoke", entry["id"])
        assert (code, out.strip()) == (0, f"revoked {entry['id']} (laptop)")
        revoked_in = await status_within(
            lb, 401, 2.0, {"Authorization": f"Bearer {key}"}
        )
        assert revoked_in < 2.0

        logs = await lb.request_logs()
        # Keyless requests before the key reached the server were served too.
        assert {r.api_key_id for r in logs if r.api_key_id} == {row.id}

    async def test_table_and_unknown_id(self, lb: LB, tmp_path: Path) -> None:
        """The table never shows a key; revoking an unknown id fails clearly."""
        _, out, _ = await codex_lb(tmp_path, "keys", "create", "ci")
        key = out.splitlines()[-1]

        code, table, _ = await codex_lb(tmp_path, "keys", "list")
        bad, _, err = await codex_lb(tmp_path, "keys", "revoke", "key_nope")

        header = table.splitlines()[0].split()
        assert code == 0 and key not in table
        assert header == ["ID", "NAME", "KEY", "CREATED", "STATUS"]
        assert (bad, err.strip()) == (
            1,
            "codex-lb: no key with id or name 'key_nope'",
        )
