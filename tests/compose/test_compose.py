"""The compose stack: both files merged by a real Compose binary, the
Dockerfile, and the Prometheus config checked by promtool."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compose.helpers import (
    COMPOSE_DIR,
    COMPOSE_FILES,
    ROOT,
    compose_binary,
    load_script,
    tool,
)

TOKEN = "test-metrics-token"


def compose(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Compose on the two files as the seed's commands do."""
    # An empty env file keeps a developer's compose/.env out of the test.
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(
        [str(compose_binary()), "--env-file", str(env_file), *files, *args],
        cwd=COMPOSE_DIR,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def merged(tmp_path: Path) -> dict[str, Any]:
    result = compose(
        tmp_path, "config", "--format", "json", env={"CODEX_LB_METRICS_TOKEN": TOKEN}
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


class TestComposeFiles:
    def test_merged_files_are_valid(self, tmp_path: Path) -> None:
        """`config -q` on both files passes with the metrics token set."""
        result = compose(tmp_path, "config", "-q", env={"CODEX_LB_METRICS_TOKEN": "x"})

        assert (result.returncode, result.stderr) == (0, "")

    def test_missing_metrics_token_is_refused(self, tmp_path: Path) -> None:
        """Without CODEX_LB_METRICS_TOKEN Compose stops and names the variable."""
        result = compose(tmp_path, "config", "-q")

        assert result.returncode != 0
        assert "CODEX_LB_METRICS_TOKEN" in result.stderr

    def test_three_services(self, merged: dict[str, Any]) -> None:
        """codex-lb, Prometheus and Grafana make up the merged stack."""
        assert sorted(merged["services"]) == ["codex-lb", "grafana", "prometheus"]

    def test_every_port_is_published_on_loopback_only(
        self, merged: dict[str, Any]
    ) -> None:
        """Each service publishes one port, bound to 127.0.0.1."""
        published = {
            name: [(p["host_ip"], p["published"], p["target"]) for p in s["ports"]]
            for name, s in merged["services"].items()
        }

        assert published == {
            "codex-lb": [("127.0.0.1", "2455", 2455)],
            "prometheus": [("127.0.0.1", "9090", 9090)],
            "grafana": [("127.0.0.1", "3000", 3000)],
        }

    def test_codex_lb_builds_from_the_compose_dockerfile(
        self, merged: dict[str, Any]
    ) -> None:
        """The image comes from compose/Dockerfile with the repository as context."""
        build = merged["services"]["codex-lb"]["build"]

        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == "compose/Dockerfile"

    def test_codex_lb_listens_on_all_interfaces_with_the_token(
        self, merged: dict[str, Any]
    ) -> None:
        """Inside the container codex-lb binds 0.0.0.0 and requires the token."""
        env = merged["services"]["codex-lb"]["environment"]

        assert env["CODEX_LB_HOST"] == "0.0.0.0"
        assert env["CODEX_LB_METRICS_TOKEN"] == TOKEN
        assert env["CODEX_LB_DATA_DIR"] == "/data"

    def test_data_lives_in_named_volumes(self, merged: dict[str, Any]) -> None:
        """Each service keeps its data in a named volume, not a host folder."""
        volumes = {
            name: {
                v["target"]: v["source"]
                for v in service["volumes"]
                if v["type"] == "volume"
            }
            for name, service in merged["services"].items()
        }

        assert volumes == {
            "codex-lb": {"/data": "codex-lb-data"},
            "prometheus": {"/prometheus": "prometheus-data"},
            "grafana": {"/var/lib/grafana": "grafana-data"},
        }
        assert sorted(merged["volumes"]) == [
            "codex-lb-data",
            "grafana-data",
            "prometheus-data",
        ]

    def test_config_and_provisioning_are_mounted_read_only(
        self, merged: dict[str, Any]
    ) -> None:
        """Every file mounted from the repository is read-only and exists."""
        binds = [
            (name, v)
            for name, service in merged["services"].items()
            for v in service["volumes"]
            if v["type"] == "bind"
        ]
        mounted = {(name, v["target"]): Path(v["source"]) for name, v in binds}

        assert all(v.get("read_only") for _, v in binds)
        assert mounted == {
            ("prometheus", "/etc/prometheus/prometheus.yml"): COMPOSE_DIR
            / "prometheus.yml",
            ("prometheus", "/etc/prometheus/rules"): COMPOSE_DIR / "alerts",
            ("grafana", "/etc/grafana/provisioning"): ROOT / "grafana" / "provisioning",
            ("grafana", "/etc/grafana/dashboards/codex-lb"): ROOT
            / "grafana"
            / "dashboards",
        }
        assert all(path.exists() for path in mounted.values())

    def test_prometheus_gets_the_token_as_its_credentials_file(
        self, merged: dict[str, Any]
    ) -> None:
        """The secret made from CODEX_LB_METRICS_TOKEN lands where the scrape
        config reads it."""
        secret = merged["secrets"]["metrics_token"]
        (mount,) = merged["services"]["prometheus"]["secrets"]
        config = (COMPOSE_DIR / "prometheus.yml").read_text()

        assert secret["environment"] == "CODEX_LB_METRICS_TOKEN"
        assert mount == {
            "source": "metrics_token",
            "target": "/run/secrets/metrics_token",
        }
        assert "credentials_file: /run/secrets/metrics_token" in config

    def test_grafana_finds_prometheus_by_service_name(
        self, merged: dict[str, Any]
    ) -> None:
        """The provisioned data source URL names the prometheus service."""
        env = merged["services"]["grafana"]["environment"]

        assert env["PROMETHEUS_URL"] == "http://prometheus:9090"


class TestDockerfile:
    def test_image_installs_the_package_and_serves(self) -> None:
        """python:3.11-slim, `pip install .`, `python -m codex_lb`."""
        text = (COMPOSE_DIR / "Dockerfile").read_text()

        assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
        assert re.search(r"^RUN pip install \.", text, re.M)
        assert 'CMD ["python", "-m", "codex_lb"]' in text
        assert "CODEX_LB_HOST=0.0.0.0" in text

    def test_every_copied_path_exists_and_is_in_the_context(self) -> None:
        """What the Dockerfile copies exists and its ignore file lets it in."""
        text = (COMPOSE_DIR / "Dockerfile").read_text()
        ignore = (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().split()
        copied = [
            source
            for line in re.findall(r"^COPY (.+)$", text, re.M)
            for source in line.split()[:-1]
        ]

        assert copied, "the Dockerfile copies nothing"
        for source in copied:
            assert (ROOT / source).exists(), source
            assert f"!{source}" in ignore or f"!{source}/" in ignore, source


class TestPrometheusConfig:
    def test_compose_config_syntax(self) -> None:
        """The compose Prometheus config passes `promtool check config`."""
        config = COMPOSE_DIR / "prometheus.yml"

        result = subprocess.run(
            [tool("promtool"), "check", "config", "--syntax-only", str(config)],
            capture_output=True,
            text=True,
        )

        assert result.returncode == 0, result.stdout + result.stderr

    def test_local_copy_passes_the_full_check(self, tmp_path: Path) -> None:
        """With the token file and rules on disk, promtool checks everything."""
        demo = load_script("demo")
        token = tmp_path / "token"
        token.write_text("t")
        config = tmp_path / "prometheus.yml"
        config.write_text(demo.local_prometheus_config("127.0.0.1:2455", token))

        result = subprocess.run(
            [tool("promtool"), "check", "config", str(config)],
            capture_output=True,
            text=True,
        )

        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS: 5 rules found" in result.stdout

    def test_local_copy_refuses_a_changed_compose_file(self, tmp_path: Path) -> None:
        """A compose config without the expected target fails loudly."""
        demo = load_script("demo")
        text = (COMPOSE_DIR / "prometheus.yml").read_text()

        with pytest.raises(demo.DemoError, match="codex-lb:2455"):
            demo.local_prometheus_config(
                "127.0.0.1:1", tmp_path, source=text.replace("codex-lb:2455", "x:1")
            )
