"""The codex-lb commands, run as a user runs them: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codex_lb.sim import Emulator, SimAccount


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
            "must be more than 0 seconds",
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
