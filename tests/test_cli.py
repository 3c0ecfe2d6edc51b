"""The codex-lb commands, run as a user runs them: in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from codex_lb.sim import Emulator, SimAccount
from codex_lb.store import AccountRow, AccountState, Store, TokenSet, open_store


def run(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_LB_")}
    environ.update(CODEX_LB_DATA_DIR=str(data_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "codex_lb", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        cwd=data_dir.parent,
    )


def auth_files(tmp_path: Path) -> list[Path]:
    emu = Emulator(
        [SimAccount.make("a@example.com"), SimAccount.make("b@example.com", "pro")]
    )
    return emu.write_auth_files(tmp_path / "auth")


class TestAccountsCommands:
    def test_import_list_pause_resume_remove(self, tmp_path: Path) -> None:
        """Accounts go in from auth.json files and obey the account actions."""
        data = tmp_path / "data"
        files = auth_files(tmp_path)

        imported = run(data, "accounts", "import", *map(str, files))
        listed = json.loads(run(data, "accounts", "list", "--json").stdout)
        paused = run(data, "accounts", "pause", "b@example.com")
        after_pause = json.loads(run(data, "accounts", "list", "--json").stdout)
        run(data, "accounts", "resume", "b@example.com")
        removed = run(data, "accounts", "remove", "a@example.com")
        final = json.loads(run(data, "accounts", "list", "--json").stdout)

        assert imported.returncode == 0, imported.stderr
        assert [(a["email"], a["plan"], a["status"]) for a in listed] == [
            ("a@example.com", "plus", "active"),
            ("b@example.com", "pro", "active"),
        ]
        assert all(a["id"].startswith("acc_") for a in listed)
        assert paused.returncode == 0
        assert [a["status"] for a in after_pause] == ["active", "paused"]
        assert removed.returncode == 0
        assert [(a["email"], a["status"]) for a in final] == [
            ("b@example.com", "active")
        ]

    def test_table_lists_accounts(self, tmp_path: Path) -> None:
        """The table has a header and one line per account."""
        data = tmp_path / "data"
        run(data, "accounts", "import", *map(str, auth_files(tmp_path)))

        table = run(data, "accounts", "list").stdout.splitlines()

        assert table[0].split()[:4] == ["ID", "EMAIL", "PLAN", "STATUS"]
        assert len(table) == 3

    def test_bad_auth_file_says_why(self, tmp_path: Path) -> None:
        """A file that is not a Codex login is refused with its reason."""
        bad = tmp_path / "auth.json"
        bad.write_text('{"OPENAI_API_KEY": "sk-x"}')

        result = run(tmp_path / "data", "accounts", "import", str(bad))

        assert result.returncode == 1
        assert f"{bad}: no 'tokens' object" in result.stderr

    def test_claims_of_the_wrong_type_are_a_clear_refusal(self, tmp_path: Path) -> None:
        """An id token that is a number and an account id that is a number:
        one line naming the file, no traceback, nothing stored."""
        bad = tmp_path / "typed.json"
        bad.write_text(
            json.dumps(
                {
                    "tokens": {
                        "id_token": 5,
                        "access_token": "opaque",
                        "refresh_token": "opaque-too",
                        "account_id": 12345,
                    }
                }
            )
        )

        result = run(tmp_path / "data", "accounts", "import", str(bad))
        listed = run(tmp_path / "data", "accounts", "list", "--json")

        assert result.returncode == 1
        assert f"{bad}: no ChatGPT account id" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert json.loads(listed.stdout) == []

    def test_resume_ends_only_a_pause(self, tmp_path: Path) -> None:
        """Resume of an account that is not paused is one clear error line and
        changes nothing; a benched account paused then resumed is benched
        again, not active (SPEC 5: nothing but a reading shortens a bench)."""
        data = tmp_path / "data"
        run(data, "accounts", "import", *map(str, auth_files(tmp_path)))
        until = time.time() + 3600
        asyncio.run(_set_state(data, "b@example.com", "rate_limited", until))

        refused = run(data, "accounts", "resume", "a@example.com")
        refused_benched = run(data, "accounts", "resume", "b@example.com")
        paused = run(data, "accounts", "pause", "b@example.com")
        while_paused = json.loads(run(data, "accounts", "list", "--json").stdout)[1]
        resumed = run(data, "accounts", "resume", "b@example.com")
        final = json.loads(run(data, "accounts", "list", "--json").stdout)

        assert refused.returncode == 1
        (line,) = refused.stderr.splitlines()
        assert line.startswith("codex-lb: cannot resume acc_")
        assert line.endswith(
            "(a@example.com): the account is not paused (it is active); "
            "resume only ends a pause"
        )
        assert refused_benched.returncode == 1
        assert "it is rate_limited until" in refused_benched.stderr
        assert paused.returncode == resumed.returncode == 0
        assert while_paused["under_pause"] == {
            "status": "rate_limited",
            "status_reason": "x",
            "status_until": until,
        }
        assert "(back to its bench: rate_limited until" in resumed.stdout
        assert [(a["status"], a["status_until"]) for a in final] == [
            ("active", None),
            ("rate_limited", until),
        ]

    def test_pause_refuses_an_account_needing_a_login(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        run(data, "accounts", "import", *map(str, auth_files(tmp_path)))
        asyncio.run(_set_state(data, "a@example.com", "reauth_required", None))

        result = run(data, "accounts", "pause", "a@example.com")

        assert result.returncode == 1
        assert "needs a new login (reauth_required)" in result.stderr

    def test_import_of_an_older_file_keeps_the_newer_tokens(
        self, tmp_path: Path
    ) -> None:
        """Importing a file again after codex-lb rotated its tokens keeps the
        rotated ones, and says so."""
        data = tmp_path / "data"
        files = auth_files(tmp_path)
        run(data, "accounts", "import", *map(str, files))
        asyncio.run(_rotate(data, "a@example.com"))

        again = run(data, "accounts", "import", str(files[0]))

        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("kept the newer stored tokens of acc_")
        assert f"refreshed after {files[0]} was written" in again.stdout
        assert asyncio.run(_refresh_token(data, "a@example.com")) == "rt-ROTATED"

    def test_unknown_account_is_an_error(self, tmp_path: Path) -> None:
        result = run(tmp_path / "data", "accounts", "pause", "nobody@example.com")

        assert result.returncode == 1
        assert "no account with id or email 'nobody@example.com'" in result.stderr


class TestStartup:
    def test_bad_settings_stop_startup_with_one_line_each(self, tmp_path: Path) -> None:
        """Every bad variable is named with its value and what is allowed."""
        result = run(
            tmp_path / "data",
            "serve",
            CODEX_LB_PORT="x",
            CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS="-1",
        )

        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "codex-lb: bad setting: CODEX_LB_PORT='x': must be an integer from 1 "
            "to 65535",
            "codex-lb: bad setting: CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS='-1': "
            "must be more than 0 and at most 86400 seconds",
        ]

    def test_bad_pricing_file_stops_startup(self, tmp_path: Path) -> None:
        prices = tmp_path / "prices.toml"
        prices.write_text('[models."gpt-5"]\ninput = -1\noutput = 1\n')

        result = run(tmp_path / "data", CODEX_LB_PRICING_FILE=str(prices))

        assert result.returncode == 2
        assert "CODEX_LB_PRICING_FILE" in result.stderr
        assert '[models."gpt-5"].input = -1' in result.stderr

    def test_every_command_has_help(self, tmp_path: Path) -> None:
        for args in (["--help"], ["accounts", "--help"], ["accounts", "import", "-h"]):
            result = run(tmp_path / "data", *args)
            assert result.returncode == 0
            assert "usage:" in result.stdout


async def _row(store: Store, email: str) -> AccountRow:
    (row,) = [r for r in await store.list_accounts() if r.email == email]
    return row


async def _set_state(data: Path, email: str, status: str, until: float | None) -> None:
    """What the server writes when it benches an account or marks it."""
    store = await open_store(data)
    try:
        row = await _row(store, email)
        await store.set_account_state(row.id, AccountState(status, "x", until))
    finally:
        await store.close()


async def _rotate(data: Path, email: str) -> None:
    """What the server stores after it refreshed an account's tokens."""
    store = await open_store(data)
    try:
        row = await _row(store, email)
        rotated = TokenSet("at-ROTATED", "rt-ROTATED", None, time.time() + 60)
        await store.set_tokens(row.id, rotated)
    finally:
        await store.close()


async def _refresh_token(data: Path, email: str) -> str:
    store = await open_store(data)
    try:
        return (await _row(store, email)).tokens.refresh_token
    finally:
        await store.close()
