"""Secrets never leave codex-lb (SPEC section 8, case C16); files are owner-only.

codex-lb runs as ``python -m codex_lb`` at debug level in front of the
emulator, with an admin and a metrics token. Tokens marked ``LEAK`` are made
to pass through every path that could print them: a refresh that returns
them, a failed refresh whose body echoes refresh tokens, an upstream 401 on
a request sent with the leaked access token, a client call with an unknown
client key, the admin and metrics tokens on their routes, uploads and CLI
imports of auth files that hold them. The access, refresh and id tokens are
opaque (no ``at-``/``rt-``/``eyJ`` prefix a pattern could know them by), as
SPEC section 8 allows. Afterwards ``LEAK`` must appear in no output, log,
request-log row, response body, metric or file on disk.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from soak.processes import stop
from tests.process.conftest import (
    CODEX,
    CODEX_BODY,
    Processes,
    Running,
    emulator_processes,
)

MARK = "LEAK"
# Opaque: nothing in their shape says they are tokens.
ACCESS = "Zq81LEAKaccess0pq"
REFRESH = "Vn27LEAKrefresh4k"
ID_TOKEN = "Hx55LEAKidtoken9w"
# A refresh token codex-lb never held, echoed by the token endpoint.
ECHOED_REFRESH = "rt-LEAK-3"
CLIENT_KEY = "sk-clb-LEAK-4"
ADMIN_TOKEN = "Ad93LEAKadmin7tok"
METRICS_TOKEN = "Mt41LEAKmetrics2x"
# The prefixed shapes a pattern knows, on the paths that do not store them.
PREFIXED_ACCESS = "at-LEAK-1"


@pytest.fixture
def one_account(tmp_path: Path) -> Iterator[Processes]:
    """An emulator with one account, so every request meets the faults."""
    yield from emulator_processes(tmp_path, "--fast", accounts=1)


class Exchange:
    """Calls to codex-lb and the emulator, keeping every body received."""

    def __init__(self, session: aiohttp.ClientSession, lb: Running, sim: str) -> None:
        self.session = session
        self.lb = lb
        self.sim = sim
        self.bodies: list[str] = []
        self.statuses: list[tuple[str, int]] = []

    async def call(self, method: str, path: str, **kwargs: Any) -> int:
        async with self.session.request(method, self.lb.base + path, **kwargs) as a:
            self.bodies.append(await a.text() + json.dumps(dict(a.headers)))
            self.statuses.append((path, a.status))
            return a.status

    async def sim_post(self, path: str, body: dict[str, Any]) -> None:
        async with self.session.post(self.sim + path, json=body) as answer:
            assert answer.status == 200, await answer.text()

    async def email(self) -> str:
        async with self.session.get(self.sim + "/_sim/accounts") as answer:
            return str((await answer.json())["accounts"][0]["email"])


def _auth_file(where: Path) -> Path:
    """An auth.json carrying leaked tokens and an id token that is no JWT."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "auth.json"
    tokens = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "id_token": ID_TOKEN,
        "account_id": "acc-1",
    }
    path.write_text(json.dumps({"tokens": tokens}))
    return path


async def _leak_everything(x: Exchange, workdir: Path) -> None:
    email = await x.email()

    async def fault(body: dict[str, Any], route: str = "responses") -> None:
        await x.sim_post(
            "/_sim/faults", {"email": email, "route": route, "fault": body}
        )

    def status(code: int, body: dict[str, Any]) -> dict[str, Any]:
        return {"kind": "status", "status": code, "body": body}

    # 0. A plain success, so the request log has one of each.
    await x.call("POST", CODEX, json=CODEX_BODY)
    # 1. A client error passes back to the client, but not a token it quotes.
    quoted = f"bad header Authorization: Bearer {PREFIXED_ACCESS}"
    await fault(status(400, {"error": {"message": quoted, "code": "invalid_value"}}))
    await x.call("POST", CODEX, json=CODEX_BODY)
    #    The same, quoting secrets with no telltale shape that codex-lb holds.
    echoed = f"unexpected headers: {ADMIN_TOKEN}, {METRICS_TOKEN}."
    await fault(status(400, {"error": {"message": echoed, "code": "invalid_value"}}))
    await x.call("POST", CODEX, json=CODEX_BODY)
    # 2. An upstream 401 that quotes a token; the refresh it causes returns
    #    the leaked tokens, and the retry sent with them gets a 401 too.
    await fault(status(401, {"error": {"message": f"token {ACCESS} is invalid"}}))
    leaked = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "id_token": ID_TOKEN,
        "expires_in": 3600,
    }
    await fault(status(200, leaked), route="token")
    await x.call("POST", CODEX, json=CODEX_BODY)
    # 3. The next refresh (of the leaked refresh token) fails for good and
    #    its body echoes refresh tokens: the one sent and an unknown one.
    refused = {
        "error": "invalid_grant",
        "error_description": f"refresh token {REFRESH} (after {ECHOED_REFRESH}) "
        "already used",
    }
    await fault(status(400, refused), route="token")
    await x.call("POST", CODEX, json=CODEX_BODY)
    await x.call("POST", CODEX, json=CODEX_BODY)
    await x.call("POST", "/v1/chat/completions", json={"model": "gpt-5"})
    # 4. A client key nobody issued, on every kind of route.
    bearer = {"Authorization": f"Bearer {CLIENT_KEY}"}
    await x.call("POST", CODEX, json=CODEX_BODY, headers=bearer)
    await x.call("GET", "/v1/models", headers=bearer)
    await x.call("GET", "/api/accounts", headers=bearer)
    await x.call("GET", "/metrics", headers=bearer)
    # 5. The admin and metrics tokens, right and wrong, on their routes.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    await x.call("GET", "/api/accounts", headers=admin)
    await x.call(
        "GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    await x.call("GET", "/metrics", headers=admin)
    await x.call(
        "GET", "/api/accounts", headers={"Authorization": "Bearer x" + ADMIN_TOKEN}
    )
    # 6. Auth files holding the leaked tokens, uploaded and bad.
    auth = json.loads(_auth_file(workdir / "upload").read_text())
    await x.call("POST", "/api/accounts/import", json=auth, headers=admin)
    # 7. Everything an operator can read back.
    metrics = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    for path in (
        "/api/accounts",
        "/api/dashboard",
        "/api/snapshot",
        "/api/requests",
        "/api/keys",
        "/api/codex/usage",
        "/metrics",
        "/dashboard",
    ):
        await x.call("GET", path, headers=metrics if path == "/metrics" else admin)


def _cli(lb: Running, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "codex_lb", *argv],
        env=lb.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout + done.stderr


def _files_under(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class TestNoSecretAnywhere:
    async def test_c16_leaked_tokens_appear_in_no_channel(
        self, one_account: Processes, tmp_path: Path
    ) -> None:
        """C16: no LEAK in output, logs, rows, bodies, metrics or files;
        status and error codes are still logged."""
        lb = one_account.start(
            CODEX_LB_LOG_LEVEL="debug",
            CODEX_LB_MAX_ATTEMPTS="1",
            CODEX_LB_ADMIN_TOKEN=ADMIN_TOKEN,
            CODEX_LB_METRICS_TOKEN=METRICS_TOKEN,
        )
        async with aiohttp.ClientSession() as session:
            x = Exchange(session, lb, one_account.emulator_base)
            await _leak_everything(x, tmp_path)
        cli_output = _cli(lb, "accounts", "import", str(_auth_file(tmp_path / "cli")))
        cli_output += _cli(lb, "accounts", "list", "--json")
        assert stop(lb.process) == 0

        log = lb.log.read_text()
        rows = [dict(r) for r in lb.rows()]
        files = _files_under(lb.data_dir)
        assert MARK not in log
        assert [b for b in x.bodies if MARK in b] == []
        assert MARK not in cli_output
        assert [r for r in rows if MARK in json.dumps(r)] == []
        assert [f for f, data in files.items() if MARK.encode() in data] == []
        # The failures themselves are still told, with their codes.
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        events = {line["event"] for line in lines}
        assert {"token_refreshed", "token_refresh_failed"} <= events, events
        assert ("/v1/models", 401) in x.statuses
        assert (CODEX, 401) in x.statuses
        assert x.statuses.count(("/metrics", 200)) == 2
        assert ("/api/accounts", 200) in x.statuses
        # The 401 whose refreshed token is refused again, then the refresh
        # refused for good: the client is never handed the upstream's 401.
        codes = [(r["status_code"], r["error_code"]) for r in rows]
        assert codes == [
            (200, None),
            (400, "invalid_value"),
            (400, "invalid_value"),
            (502, "upstream_unavailable"),
            (503, "no_accounts"),
            (503, "no_accounts"),
        ]
        failed = [line for line in lines if line["event"] == "token_refresh_failed"]
        assert failed[0]["code"] == "invalid_grant"
        # The account that saw a refresh refused for good needs a new login.
        assert '"reauth_required"' in cli_output

    def test_standard_library_log_lines_are_redacted(self, tmp_path: Path) -> None:
        """aiohttp's and asyncio's loggers, warnings and uncaught exceptions
        go through the same redaction as codex-lb's own lines, the secrets
        codex-lb knows by value included."""
        script = f"""
import asyncio, logging, warnings
from codex_lb.config import LogFormat, LogLevel
from codex_lb.logs import configure_logging, remember_secret
configure_logging(LogFormat.JSON, LogLevel.DEBUG)
for secret in ("{REFRESH}", "{ACCESS}", "{ID_TOKEN}"):
    remember_secret(secret)
try:
    raise ValueError("refresh with {REFRESH} failed")
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling %s", "{ACCESS}")
logging.getLogger("asyncio").error("Authorization: Bearer {CLIENT_KEY}")
warnings.warn("id token {ID_TOKEN}.")
raise RuntimeError("{ECHOED_REFRESH}")
"""
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )

        output = done.stdout + done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines()]
        assert MARK not in output
        assert [(line["level"], line["logger"]) for line in lines] == [
            ("error", "aiohttp.server"),
            ("error", "asyncio"),
            ("warning", "py.warnings"),
            ("critical", "codex_lb"),
        ]
        assert "ValueError" in lines[0]["exception"]
        assert "RuntimeError" in lines[3]["exception"]
        assert done.returncode == 1


class TestOwnerOnlyFiles:
    async def test_data_dir_key_and_database_are_owner_only(
        self, one_account: Processes
    ) -> None:
        """With a permissive umask the folder is 0700 and the key file,
        database and its WAL and shared-memory files are 0600."""
        old = os.umask(0o002)
        try:
            lb = one_account.start()
        finally:
            os.umask(old)
        async with (
            aiohttp.ClientSession() as session,
            session.post(lb.base + CODEX, json=CODEX_BODY) as answer,
        ):
            assert answer.status == 200
            await answer.read()
        names = ("encryption.key", "store.db", "store.db-wal", "store.db-shm")
        modes = {n: stat.S_IMODE((lb.data_dir / n).stat().st_mode) for n in names}
        folder = stat.S_IMODE(lb.data_dir.stat().st_mode)
        stop(lb.process)

        assert folder == 0o700
        assert modes == dict.fromkeys(names, 0o600)
