"""The benchmark harness still runs end to end, with tiny numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class TestSmokeRun:
    @pytest.mark.timeout(90)
    def test_measures_every_phase_and_leaves_nothing_behind(
        self, tmp_path: Path
    ) -> None:
        """A smoke run prints the table, writes its figures and cleans up."""
        scratch = tmp_path / "tmp"
        scratch.mkdir()
        figures = tmp_path / "figures.json"

        done = subprocess.run(
            [sys.executable, "-m", "bench", "--smoke", "--json", str(figures)],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(scratch)},
            capture_output=True,
            text=True,
            timeout=80,
        )

        assert done.returncode == 0, done.stderr[-3000:]
        assert "targets met:" in done.stdout
        out = json.loads(figures.read_text())
        assert set(out["ttfb_ms"]) == {"direct", "codex-lb", "reference"}
        assert set(out["ttfb_added_ms"]) == {"codex-lb", "reference"}
        assert set(out["ttfc_ms"]) == {"direct", "codex-lb", "reference"}
        assert set(out["ttfc_added_ms"]) == {"codex-lb", "reference"}
        # The first content event never comes before the first byte.
        for target, figures in out["ttfc_ms"].items():
            assert figures["p50"] >= out["ttfb_ms"][target]["p50"], target
        assert set(out["throughput"]) == {"4", "8"}
        # 20 text deltas, plus created, in_progress, item and part added,
        # text, part and item done, and completed.
        assert out["events_per_answer"] == 20 + 8
        assert out["memory"]["codex-lb"]["completed"] == 20
        assert out["memory"]["reference"]["completed"] == 20
        assert out["metrics"]["accounts"] == 12
        assert out["request_log_rows_per_second"] > 0
        # Both targets' event-loop lag, scraped in every server phase.
        for phase in ("throughput", "long", "slow"):
            for target in ("codex-lb", "reference"):
                lags = out["lag"][phase][target]
                assert lags and all(0 <= lag < 5 for lag in lags), (phase, target)
        assert list(scratch.iterdir()) == []
