"""Settings come from CODEX_LB_* variables; bad ones are all reported."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from codex_lb.config import IdentityMode, Settings, SettingsError, load_settings


class TestLoadSettings:
    def test_defaults_need_nothing(self) -> None:
        """With no variables set, the SPEC's defaults apply."""
        settings = load_settings({}, env_file=None)

        assert (settings.host, settings.port) == ("127.0.0.1", 2455)
        assert settings.data_path == Path("~/.codex-lb").expanduser()
        assert settings.upstream_base_url == "https://chatgpt.com/backend-api"
        assert settings.usage_refresh_interval_seconds == 60
        assert settings.max_attempts == 3
        assert settings.stream_idle_timeout_seconds == 300
        assert settings.metrics_account_identity_mode is IdentityMode.EMAIL

    def test_every_bad_variable_is_named_with_value_and_rule(self) -> None:
        """Each bad variable gets one line: name, value, what is allowed."""
        with pytest.raises(SettingsError) as caught:
            load_settings(
                {
                    "CODEX_LB_PORT": "http",
                    "CODEX_LB_MAX_ATTEMPTS": "0",
                    "CODEX_LB_METRICS_ACCOUNT_IDENTITY_MODE": "name",
                    "CODEX_LB_UPSTREAM_BASE_URL": "chatgpt.com",
                    "CODEX_LB_TRUSTED_PROXIES": "nginx, 10.0.0.0/8",
                },
                env_file=None,
            )

        assert sorted(caught.value.problems) == [
            "CODEX_LB_MAX_ATTEMPTS='0': must be an integer from 1 to 20",
            "CODEX_LB_METRICS_ACCOUNT_IDENTITY_MODE='name': must be one of "
            "'email', 'account_id'",
            "CODEX_LB_PORT='http': must be an integer from 1 to 65535",
            "CODEX_LB_TRUSTED_PROXIES='nginx, 10.0.0.0/8': must be a "
            "comma-separated list of IP addresses or networks (such as "
            "127.0.0.1 or 10.0.0.0/8)",
            "CODEX_LB_UPSTREAM_BASE_URL='chatgpt.com': must be an http:// or "
            "https:// URL",
        ]

    @pytest.mark.parametrize("name", ["ADMIN", "METRICS"])
    @pytest.mark.parametrize(
        "value", ["two words", "été-secret", "tab\there", "x" * 4097]
    )
    def test_a_token_a_client_cannot_send_is_refused_unshown(
        self, name: str, value: str
    ) -> None:
        """A token must fit a Bearer header; a wrong one is not echoed."""
        with pytest.raises(SettingsError) as caught:
            load_settings({f"CODEX_LB_{name}_TOKEN": value}, env_file=None)

        assert caught.value.problems == [
            f"CODEX_LB_{name}_TOKEN=<{len(value)} characters, not shown>: must "
            "be visible ASCII characters (no spaces), at most 4096"
        ]

    @pytest.mark.parametrize("value", ["", "   ", "\t"])
    def test_a_blank_token_is_no_token(self, value: str) -> None:
        """Blank is unset, as for every variable: non-loopback callers are
        then refused, never let in by an empty comparison."""
        settings = load_settings({"CODEX_LB_ADMIN_TOKEN": value}, env_file=None)

        assert settings.admin_token is None

    def test_a_token_keeps_every_visible_character(self) -> None:
        token = "A-z_0.9~!#$%&'*+/=?^`|{}" + "x" * 100
        settings = load_settings({"CODEX_LB_METRICS_TOKEN": token}, env_file=None)

        assert settings.metrics_token == token

    @pytest.mark.parametrize(
        "value", ["10.0.0.300", "127.0.0.1/33", ",", "::1, fe80::/10x", "localhost"]
    )
    def test_trusted_proxies_must_be_addresses_or_networks(self, value: str) -> None:
        """Anything but IP addresses and networks is refused when read."""
        with pytest.raises(SettingsError) as caught:
            load_settings({"CODEX_LB_TRUSTED_PROXIES": value}, env_file=None)

        [line] = caught.value.problems
        assert line.startswith(f"CODEX_LB_TRUSTED_PROXIES={value!r}: must be ")

    def test_trusted_proxies_are_read_as_networks(self) -> None:
        """Addresses become one-host networks; host bits are allowed."""
        settings = load_settings(
            {"CODEX_LB_TRUSTED_PROXIES": " 127.0.0.1 , 10.1.2.3/8,::1 "},
            env_file=None,
        )

        assert [str(n) for n in settings.trusted_networks] == [
            "127.0.0.1/32",
            "10.0.0.0/8",
            "::1/128",
        ]

    def test_env_file_is_read_and_environment_wins(self, tmp_path: Path) -> None:
        """A .env file fills in; the real environment overrides it."""
        env_file = tmp_path / ".env"
        env_file.write_text("CODEX_LB_PORT=3000\nCODEX_LB_MAX_ATTEMPTS=5\n")

        settings = load_settings({"CODEX_LB_PORT": "4000"}, env_file=env_file)

        assert (settings.port, settings.max_attempts) == (4000, 5)

    @pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e309", "Infinity"])
    def test_every_number_must_be_finite(self, value: str) -> None:
        """No numeric setting takes an infinite or not-a-number value; each
        bad variable gets its own line."""
        numeric = [
            f"CODEX_LB_{field.name.upper()}"
            for field in attrs.fields(Settings)
            if field.type in (int, float)
        ]

        with pytest.raises(SettingsError) as caught:
            load_settings(dict.fromkeys(numeric, value), env_file=None)

        named = [line.split("=", 1)[0] for line in caught.value.problems]
        assert sorted(named) == sorted(numeric)
        assert "CODEX_LB_CONNECT_TIMEOUT_SECONDS" in named
        for line in caught.value.problems:
            assert f"={value!r}: must be " in line

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("CODEX_LB_CONNECT_TIMEOUT_SECONDS", "601"),
            ("CODEX_LB_STREAM_IDLE_TIMEOUT_SECONDS", "86401"),
            ("CODEX_LB_SHUTDOWN_GRACE_SECONDS", "-1"),
            ("CODEX_LB_SHUTDOWN_GRACE_SECONDS", "3601"),
            ("CODEX_LB_REQUEST_LOG_FLUSH_SECONDS", "0"),
            ("CODEX_LB_TOKEN_REFRESH_AGE_SECONDS", "31536001"),
            ("CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS", "-5"),
            ("CODEX_LB_BODY_READ_TIMEOUT_SECONDS", "0"),
            ("CODEX_LB_MAX_REQUEST_BYTES", "4294967297"),
            ("CODEX_LB_REQUEST_LOG_BUFFER_SIZE", "10000001"),
        ],
    )
    def test_numbers_outside_their_range_are_refused(
        self, variable: str, value: str
    ) -> None:
        """A value past a setting's sane range stops start-up, naming it."""
        with pytest.raises(SettingsError) as caught:
            load_settings({variable: value}, env_file=None)

        [line] = caught.value.problems
        assert line.startswith(f"{variable}={value!r}: must be ")

    def test_zero_still_turns_polling_off(self) -> None:
        """The documented 0 (off) stays allowed where it means something."""
        settings = load_settings(
            {
                "CODEX_LB_USAGE_REFRESH_INTERVAL_SECONDS": "0",
                "CODEX_LB_SHUTDOWN_GRACE_SECONDS": "0",
            },
            env_file=None,
        )

        assert settings.usage_refresh_interval_seconds == 0
        assert settings.shutdown_grace_seconds == 0

    def test_a_bad_env_file_line_names_the_file_and_line(self, tmp_path: Path) -> None:
        """A line python-dotenv cannot read stops start-up, naming where it is."""
        env_file = tmp_path / ".env"
        env_file.write_text('CODEX_LB_PORT=3000\nthis is not a setting\nA="open\n')

        with pytest.raises(SettingsError) as caught:
            load_settings({}, env_file=env_file)

        assert caught.value.problems == [
            f"{env_file}:2: not a NAME=value line: 'this is not a setting'",
            f"{env_file}:3: not a NAME=value line: 'A=\"open'",
        ]
