"""The commands on bad input and a bad disk: one clear line, never a traceback."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from tests.test_cli import auth_files, run
from tests.tmpfs import fill, remount_read_only, small_tmpfs


def one_line(stderr: str) -> str:
    """The only line of ``stderr``; fails on a traceback or several lines."""
    assert "Traceback" not in stderr, stderr
    (line,) = stderr.strip().splitlines()
    return line


class TestImport:
    def test_a_bad_file_among_good_ones_fails_the_command(self, tmp_path: Path) -> None:
        """The good files are imported, the bad one is named, the exit is 1."""
        data = tmp_path / "data"
        good = auth_files(tmp_path)
        bad = tmp_path / "bad.json"
        bad.write_text("not json")

        result = run(data, "accounts", "import", str(bad), *map(str, good))
        listed = json.loads(run(data, "accounts", "list", "--json").stdout)

        assert result.returncode == 1
        assert sorted(a["email"] for a in listed) == ["a@example.com", "b@example.com"]
        assert result.stdout.count("imported acc_") == 2
        lines = result.stderr.splitlines()
        assert lines == [
            f"codex-lb: {bad}: not JSON: Expecting value at line 1",
            f"codex-lb: 1 of 3 files not imported: {bad}",
        ]

    def test_an_endless_file_is_refused_quickly(self, tmp_path: Path) -> None:
        """/dev/zero is read up to the size cap, then refused by name."""
        result = run(tmp_path / "data", "accounts", "import", "/dev/zero")

        assert result.returncode == 1
        assert result.stderr.splitlines()[0] == (
            "codex-lb: /dev/zero: larger than 1048576 bytes: not an auth.json"
        )


class TestKeyNames:
    @pytest.mark.parametrize(
        ("name", "why"),
        [
            ("", "a key name has 1 to 64 characters, not 0"),
            ("x" * 5000, "a key name has 1 to 64 characters, not 5000"),
            ("two\nlines", "has a control character or leading or trailing spaces"),
            (" padded", "has a control character or leading or trailing spaces"),
        ],
    )
    def test_unusable_names_are_refused(
        self, tmp_path: Path, name: str, why: str
    ) -> None:
        result = run(tmp_path / "data", "keys", "create", name)

        assert result.returncode == 1
        line = one_line(result.stderr)
        assert line.startswith("codex-lb: cannot create the key: ")
        assert why in line
        assert run(tmp_path / "data", "keys", "list", "--json").stdout.strip() == "[]"

    def test_a_live_name_or_a_key_id_is_not_reused(self, tmp_path: Path) -> None:
        """A name must pick out one key for ``keys revoke``."""
        data = tmp_path / "data"
        run(data, "keys", "create", "laptop")
        (first,) = json.loads(run(data, "keys", "list", "--json").stdout)

        same_name = run(data, "keys", "create", "laptop")
        an_id = run(data, "keys", "create", first["id"])
        run(data, "keys", "revoke", "laptop")
        after_revoke = run(data, "keys", "create", "laptop")

        assert same_name.returncode == an_id.returncode == 1
        assert one_line(same_name.stderr) == (
            "codex-lb: cannot create the key: a live key is already named 'laptop'"
        )
        assert one_line(an_id.stderr) == (
            f"codex-lb: cannot create the key: key name {first['id']!r} is "
            "another key's id"
        )
        assert after_revoke.returncode == 0, after_revoke.stderr


class TestBadDataFolder:
    def test_read_only_data_folder_is_one_line_for_every_command(
        self, tmp_path: Path
    ) -> None:
        """serve and accounts list name the folder and the cause, exit 2."""
        with small_tmpfs(tmp_path / "mnt") as mount:
            data = mount / "data"
            run(data, "accounts", "import", *map(str, auth_files(tmp_path)))
            remount_read_only(mount)

            listed = run(data, "accounts", "list")
            served = run(data, "serve", CODEX_LB_PORT=str(_free_port()))

        for result in (listed, served):
            assert result.returncode == 2
            line = one_line(result.stderr)
            assert line.startswith(f"codex-lb: cannot open the store in {data}: ")
            assert "Read-only file system" in line or "readonly" in line
            assert line.endswith("(CODEX_LB_DATA_DIR)")

    def test_full_disk_at_open_names_the_cause(self, tmp_path: Path) -> None:
        """With no server holding the store, opening it is what fails."""
        with small_tmpfs(tmp_path / "mnt") as mount:
            data = mount / "data"
            run(data, "accounts", "import", *map(str, auth_files(tmp_path)))
            fill(mount)

            created = run(data, "keys", "create", "laptop")

        assert created.returncode in (1, 2)
        line = one_line(created.stderr)
        assert "No space left on device" in line or "full" in line, line

    def test_a_file_where_the_folder_should_be(self, tmp_path: Path) -> None:
        not_a_folder = tmp_path / "data"
        not_a_folder.write_text("")

        result = run(not_a_folder, "accounts", "list")

        assert result.returncode == 2
        assert one_line(result.stderr).startswith(
            f"codex-lb: cannot open the store in {not_a_folder}: "
        )

    def test_full_disk_fails_account_and_key_commands_in_one_line(
        self, tmp_path: Path
    ) -> None:
        """pause and keys create say what failed and why; nothing changes."""
        with small_tmpfs(tmp_path / "mnt", size_kb=1024) as mount:
            data = mount / "data"
            run(data, "accounts", "import", *map(str, auth_files(tmp_path)))
            # A reader holds the database open, as a running server does, so
            # its WAL index exists and the commands fail on their write.
            server_like = sqlite3.connect(data / "store.db")
            server_like.execute("SELECT count(*) FROM accounts").fetchone()
            fill(mount)

            paused = run(data, "accounts", "pause", "a@example.com")
            created = run(data, "keys", "create", "laptop")
            (mount / "filler").unlink()
            server_like.close()
            listed = json.loads(run(data, "accounts", "list", "--json").stdout)
            keys = json.loads(run(data, "keys", "list", "--json").stdout)

        assert paused.returncode == created.returncode == 1
        assert "(a@example.com): the store could not be written: " in one_line(
            paused.stderr
        )
        assert one_line(paused.stderr).startswith("codex-lb: cannot pause acc_")
        assert one_line(created.stderr).startswith(
            "codex-lb: cannot create the key: the store could not be written: "
        )
        assert "full" in paused.stderr and "full" in created.stderr
        assert [a["status"] for a in listed] == ["active", "active"]
        assert keys == []


class TestServeStartup:
    def test_a_host_that_does_not_resolve_is_named(self, tmp_path: Path) -> None:
        result = run(tmp_path / "data", "serve", CODEX_LB_HOST="not.a.host.invalid")

        assert result.returncode == 2
        line = one_line(result.stderr)
        assert line.startswith(
            "codex-lb: bad setting: CODEX_LB_HOST='not.a.host.invalid': must be an "
            "IP address or a host name that resolves ("
        )

    def test_a_port_in_use_is_named(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            result = run(tmp_path / "data", "serve", CODEX_LB_PORT=str(port))

        assert result.returncode == 2
        assert (
            f"codex-lb: cannot listen on 127.0.0.1:{port} (CODEX_LB_HOST, "
            "CODEX_LB_PORT): " in result.stderr
        )
        assert "Traceback" not in result.stderr

    def test_a_bad_env_file_line_stops_startup(self, tmp_path: Path) -> None:
        """The line python-dotenv cannot read is named with its file."""
        env_file = tmp_path / ".env"  # run() works in tmp_path
        env_file.write_text("CODEX_LB_PORT=2999\nCODEX_LB_LOG_LEVEL debug\n")

        result = run(tmp_path / "data", "accounts", "list")

        assert result.returncode == 2
        assert one_line(result.stderr) == (
            f"codex-lb: bad setting: {env_file}:2: not a NAME=value line: "
            "'CODEX_LB_LOG_LEVEL debug'"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
