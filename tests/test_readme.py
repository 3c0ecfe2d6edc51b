"""The README, the front door, stays true to the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from codex_lb.config import PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The text of the README's `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match is not None, f"no '## {title}' section"
    return match.group(1)


def code_in(text: str) -> list[str]:
    """Fenced code blocks and inline code spans of markdown `text`."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))
    for phony in re.findall(r"^\.PHONY:(.*)$", text, re.M):
        targets |= set(phony.split())
    return targets


class TestSettingsTable:
    def test_lists_every_setting_config_reads(self) -> None:
        """Each CODEX_LB_* variable config.py reads is in the settings table,
        and the table names no variable config.py does not read."""
        read = {PREFIX + field.name.upper() for field in attrs.fields(Settings)}
        rows = [
            line.split("|")[1]
            for line in section("Settings").splitlines()
            if line.startswith("| `CODEX_LB_")
        ]
        listed = {name for row in rows for name in re.findall(r"CODEX_LB_\w+", row)}

        assert sorted(read - listed) == [], "missing from the README's table"
        assert sorted(listed - read) == [], "in the README but not in config.py"


class TestCommands:
    def test_every_make_target_it_names_exists(self) -> None:
        """Each `make TARGET` the README shows is a target of the Makefile."""
        named = {
            target
            for code in code_in(README)
            for target in re.findall(r"(?:^|[\s(])make ([a-z][\w.-]*)", code, re.M)
        }

        assert {"run", "test", "demo", "dashboards", "compose-check"} <= named
        assert sorted(named - makefile_targets()) == []

    def test_the_two_commands_come_first(self) -> None:
        """The first section is the two commands, `make run` and `make test`."""
        first = re.findall(r"^## (.+)$", README, re.M)[0]

        assert first == "The two commands"
        assert "make run" in section(first) and "make test" in section(first)

    def test_it_shows_the_seed_compose_commands(self) -> None:
        """Both compose routes of the seed: the plugin and the standalone."""
        files = "-f docker-compose.yml -f docker-compose.observability.yml up -d"

        assert f"docker compose {files}" in README
        assert f"docker-compose {files}" in README


class TestLinks:
    def test_linked_docs_exist(self) -> None:
        """Every relative link points at a file in the repository."""
        links = re.findall(r"\]\(([^)#:]+)\)", README)

        assert links
        assert [link for link in links if not (ROOT / link).is_file()] == []
