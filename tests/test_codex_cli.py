"""The real Codex CLI (npm ``@openai/codex``) through codex-lb to the emulator.

``make test`` installs the CLI into ``.tools/codex`` and names it in
``CODEX_LB_TEST_CODEX``; without that variable these tests are skipped.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from codex_lb.store import QuotaReading
from tests.conftest import LB

CODEX = os.environ.get("CODEX_LB_TEST_CODEX")

pytestmark = [
    pytest.mark.codex_cli,
    pytest.mark.skipif(
        not CODEX, reason="set CODEX_LB_TEST_CODEX to the codex binary (make test)"
    ),
    pytest.mark.timeout(180),
]


def write_config(home: Path, base_url: str, model: str | None) -> Path:
    """``CODEX_HOME/config.toml`` naming codex-lb as a custom provider, the
    way a user sets it up (SPEC section 3); no ``model`` line when None."""
    home.mkdir(exist_ok=True)
    config = home / "config.toml"
    model_line = f'model = "{model}"\n' if model else ""
    config.write_text(
        model_line
        + f"""model_provider = "codex-lb"

[model_providers.codex-lb]
name = "codex-lb"
base_url = "{base_url}"
wire_api = "responses"
env_key = "CODEX_LB_API_KEY"
"""
    )
    return config


async def codex_exec(
    lb: LB, home: Path, prompt: str, model: str | None = "gpt-5.1-codex"
) -> tuple[int, str, str]:
    """Run ``codex exec`` against codex-lb; (exit status, stdout, stderr).

    Nothing but ``config.toml`` in ``CODEX_HOME`` points the CLI at codex-lb.
    """
    assert CODEX is not None and Path(CODEX).exists(), f"no Codex CLI at {CODEX}"
    write_config(home, str(lb.client.make_url("/backend-api/codex")), model)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CODEX_HOME": str(home),
        "CODEX_LB_API_KEY": "unused-on-loopback",
        "RUST_LOG": "warn",
    }
    process = await asyncio.create_subprocess_exec(
        CODEX,
        "exec",
        "--skip-git-repo-check",
        prompt,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=home,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=150)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def first_choice(lb: LB, email: str) -> None:
    """Make ``email``'s account the pool's first choice."""
    for account in lb.pool.accounts:
        used = 0.0 if account.email == email else 50.0
        await lb.pool.apply_reading(
            account,
            QuotaReading(lb.emulator.clock.now(), "poll", secondary_used_percent=used),
        )


class TestCodexCLI:
    async def test_turn_fails_over_from_a_full_account(
        self, lb: LB, tmp_path: Path
    ) -> None:
        """The CLI gets its answer from b@ after a@'s 5 h window was full."""
        lb.emulator.set_usage("a@example.com", primary=100.0)
        await first_choice(lb, "a@example.com")

        status, stdout, stderr = await codex_exec(lb, tmp_path / "home", "say hi")

        assert status == 0, stderr
        assert "Hello from b@example.com. You said: say hi" in stdout
        # The CLI used the model and provider its config.toml names.
        sent = [r for r in lb.emulator.requests if r.path.endswith("/responses")]
        assert [r.body["model"] for r in sent] == ["gpt-5.1-codex"] * 2
        (row,) = await lb.request_logs()
        assert (row.status, row.attempts, row.account_id) == (
            "success",
            2,
            lb.ids["b@example.com"],
        )
        assert [(r.account_id, r.error_class) for r in lb.recorder.of("retry")] == [
            (lb.ids["a@example.com"], "rate_limit")
        ]

    async def test_tool_call_round_trip(self, lb: LB, tmp_path: Path) -> None:
        """The emulator asks for a shell command; the CLI runs it and replies."""
        status, stdout, stderr = await codex_exec(
            lb, tmp_path / "home", "SIM_SHELL: echo tool-works-42"
        )

        assert status == 0, stderr
        assert "Tool said:" in stdout and "tool-works-42" in stdout
        rows = await lb.request_logs()
        assert [r.status for r in rows] == ["success", "success"]
        second: Any = [
            r.body for r in lb.emulator.requests if r.path.endswith("/responses")
        ][1]
        outputs = [
            i for i in second["input"] if i.get("type") == "function_call_output"
        ]
        assert len(outputs) == 1 and "tool-works-42" in str(outputs[0]["output"])
        # Both turns of one CLI session stay on one account.
        assert rows[0].account_id == rows[1].account_id

    async def test_a_turn_on_the_clis_default_model_is_priced(
        self, lb: LB, tmp_path: Path
    ) -> None:
        """With no model in config.toml the CLI uses its default, which the
        emulator serves and the built-in price table prices."""
        status, stdout, stderr = await codex_exec(
            lb, tmp_path / "home", "say hi", model=None
        )

        assert status == 0, stderr
        assert "You said: say hi" in stdout
        sent = [r for r in lb.emulator.requests if r.path.endswith("/responses")]
        # The default model of the pinned CLI 0.171.0, read from its catalog.
        assert [r.body["model"] for r in sent] == ["gpt-6.2-sol"]
        (row,) = await lb.request_logs()
        assert row.status == "success" and row.model == "gpt-6.2-sol"
        assert row.input_tokens and row.output_tokens is not None
        cached = row.cached_input_tokens or 0
        # OpenAI's published gpt-6.2-sol rates: 2.00 / 0.10 / 10.00 per 1M.
        expected = (
            (row.input_tokens - cached) * 2.0 + cached * 0.1 + row.output_tokens * 10.0
        ) / 1_000_000
        assert row.cost_usd == pytest.approx(expected)
        assert row.cost_usd > 0
        assert lb.recorder.of("unpriced_success") == []
