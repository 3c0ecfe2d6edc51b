"""Settings: one frozen tree read from ``CODEX_LB_*`` environment variables.

Every field has a default that serves one user on one machine. Values come from
the process environment, then from an optional ``.env`` file in the working
directory (the environment wins). A bad value is reported with its variable
name, the value given and what is allowed; all bad variables at once.
"""

from __future__ import annotations

import enum
import io
import ipaddress
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import cattrs
from dotenv import dotenv_values
from dotenv.parser import parse_stream

PREFIX = "CODEX_LB_"


class IdentityMode(enum.Enum):
    """What ``codex_lb_account_identity{display}`` shows."""

    EMAIL = "email"
    ACCOUNT_ID = "account_id"


class LogFormat(enum.Enum):
    CONSOLE = "console"
    JSON = "json"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class SettingsError(Exception):
    """One or more settings are invalid; ``problems`` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _check(predicate: Callable[[Any], bool], allowed: str) -> Any:
    """An attrs validator whose failure message says what is allowed."""

    def validate(_inst: Any, _attr: attrs.Attribute[Any], value: Any) -> None:
        if value is not None and not predicate(value):
            raise ValueError(allowed)

    validate.allowed = allowed  # type: ignore[attr-defined]
    return validate


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(spec: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated list; ValueError names a bad one."""
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False)
        for item in spec.split(",")
        if item.strip()
    )


def _is_network_list(value: str) -> bool:
    try:
        return bool(_networks(value))
    except ValueError:
        return False


def _seconds(high: float, allowed: str, zero: bool = False) -> Any:
    """A validator for a finite number of seconds up to ``high``: more than
    0, or also exactly 0 when ``zero`` (which then means off or none)."""

    def predicate(value: float) -> bool:
        low_ok = value >= 0 if zero else value > 0
        return math.isfinite(value) and low_ok and value <= high

    return _check(predicate, allowed)


# Settings whose values a message never shows, even when they are wrong.
_SECRET_SETTINGS = frozenset({"metrics_token", "admin_token"})

# What a client can send after "Bearer " in a header, byte for byte.
_TOKEN_ALLOWED = "visible ASCII characters (no spaces), at most 4096"


def _is_token(value: str) -> bool:
    return 0 < len(value) <= 4096 and all("!" <= c <= "~" for c in value)


def _count(low: int, high: int, allowed: str) -> Any:
    """A validator for an integer from ``low`` to ``high``."""
    return _check(lambda v: low <= v <= high, allowed)


DAY = 24 * 3600.0
GiB = 1024**3


@attrs.frozen
class Settings:
    """The whole configuration of one codex-lb process."""

    host: str = "127.0.0.1"
    port: int = attrs.field(
        default=2455,
        validator=_check(lambda v: 1 <= v <= 65535, "an integer from 1 to 65535"),
    )
    data_dir: Path = Path("~/.codex-lb")
    upstream_base_url: str = attrs.field(
        default="https://chatgpt.com/backend-api",
        validator=_check(_is_http_url, "an http:// or https:// URL"),
    )
    auth_base_url: str = attrs.field(
        default="https://auth.openai.com",
        validator=_check(_is_http_url, "an http:// or https:// URL"),
    )
    usage_refresh_interval_seconds: float = attrs.field(
        default=60.0,
        validator=_seconds(DAY, "0 (off) or at most 86400 seconds", zero=True),
    )
    usage_refresh_concurrency: int = attrs.field(
        default=8, validator=_check(lambda v: 1 <= v <= 64, "an integer from 1 to 64")
    )
    usage_refresh_timeout_seconds: float = attrs.field(
        default=15.0,
        validator=_seconds(600, "more than 0 and at most 600 seconds"),
    )
    max_attempts: int = attrs.field(
        default=3, validator=_check(lambda v: 1 <= v <= 20, "an integer from 1 to 20")
    )
    stream_idle_timeout_seconds: float = attrs.field(
        default=300.0,
        validator=_seconds(DAY, "more than 0 and at most 86400 seconds"),
    )
    connect_timeout_seconds: float = attrs.field(
        default=15.0,
        validator=_seconds(600, "more than 0 and at most 600 seconds"),
    )
    body_read_timeout_seconds: float = attrs.field(
        default=60.0,
        validator=_seconds(3600, "more than 0 and at most 3600 seconds"),
    )
    metrics_account_identity_mode: IdentityMode = IdentityMode.EMAIL
    metrics_token: str | None = attrs.field(
        default=None, validator=_check(_is_token, _TOKEN_ALLOWED)
    )
    admin_token: str | None = attrs.field(
        default=None, validator=_check(_is_token, _TOKEN_ALLOWED)
    )
    collectors: str | None = None
    pricing_file: Path | None = None
    log_format: LogFormat | None = None
    log_level: LogLevel = LogLevel.INFO
    max_request_bytes: int = attrs.field(
        default=64 * 1024 * 1024,
        validator=_count(1, 4 * GiB, "a number of bytes from 1 to 4294967296"),
    )
    max_event_bytes: int = attrs.field(
        default=256 * 1024 * 1024,
        validator=_count(
            1024 * 1024, 4 * GiB, "a number of bytes from 1048576 to 4294967296"
        ),
    )
    request_log_flush_seconds: float = attrs.field(
        default=1.0,
        validator=_seconds(3600, "more than 0 and at most 3600 seconds"),
    )
    request_log_buffer_size: int = attrs.field(
        default=10_000,
        validator=_count(1, 10_000_000, "a number of rows from 1 to 10000000"),
    )
    token_refresh_age_seconds: float = attrs.field(
        default=8 * DAY,
        validator=_seconds(
            365 * DAY, "more than 0 and at most 31536000 seconds (a year)"
        ),
    )
    prefer_earliest_reset: bool = False
    trusted_proxies: str | None = attrs.field(
        default=None,
        validator=_check(
            _is_network_list,
            "a comma-separated list of IP addresses or networks "
            "(such as 127.0.0.1 or 10.0.0.0/8)",
        ),
    )
    grafana_url: str | None = None
    shutdown_grace_seconds: float = attrs.field(
        default=30.0,
        validator=_seconds(3600, "0 to 3600 seconds", zero=True),
    )

    @property
    def data_path(self) -> Path:
        return self.data_dir.expanduser()

    @property
    def trusted_networks(self) -> tuple[IPNetwork, ...]:
        """The proxies whose ``X-Forwarded-For`` is believed."""
        return _networks(self.trusted_proxies or "")

    @property
    def collector_specs(self) -> tuple[str, ...]:
        if not self.collectors:
            return ()
        return tuple(s.strip() for s in self.collectors.split(",") if s.strip())


attrs.resolve_types(Settings)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()

    def to_bool(value: Any, _type: type) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError("true or false")

    def to_int(value: Any, _type: type) -> int:
        return int(str(value).strip())

    def to_float(value: Any, _type: type) -> float:
        return float(str(value).strip())

    converter.register_structure_hook(bool, to_bool)
    converter.register_structure_hook(int, to_int)
    converter.register_structure_hook(float, to_float)
    converter.register_structure_hook(Path, lambda v, _t: Path(str(v)))
    return converter


_converter = _make_converter()


def _allowed(field: attrs.Attribute[Any]) -> str:
    """Words for what a field accepts, used in error lines."""
    allowed = getattr(field.validator, "allowed", None)
    if allowed:
        return str(allowed)
    inner = field.type
    for candidate in getattr(inner, "__args__", None) or (inner,):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return "one of " + ", ".join(repr(m.value) for m in candidate)
        if candidate is bool:
            return "true or false"
        if candidate is int:
            return "an integer"
        if candidate is float:
            return "a number"
    return "a valid value"


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Read settings from ``environ`` (default: the process) and ``env_file``.

    Raises SettingsError naming every bad variable.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update(_read_env_file(env_file))
    values.update(os.environ if environ is None else environ)

    kwargs: dict[str, Any] = {}
    problems: list[str] = []
    for field in attrs.fields(Settings):
        name = PREFIX + field.name.upper()
        raw = values.get(name)
        if raw is None or raw.strip() == "":
            continue
        try:
            value = _converter.structure(raw.strip(), field.type)  # type: ignore[arg-type]
            if field.validator is not None:
                field.validator(None, field, value)
        except Exception:
            shown = (
                f"<{len(raw)} characters, not shown>"
                if field.name in _SECRET_SETTINGS
                else repr(raw)
            )
            problems.append(f"{name}={shown}: must be {_allowed(field)}")
            continue
        kwargs[field.name] = value

    if problems:
        raise SettingsError(problems)
    return Settings(**kwargs)


def _read_env_file(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file; SettingsError names each bad line.

    python-dotenv would only warn about a line it cannot read and go on
    without it, so a typo could silently leave a setting at its default.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError([f"{path}: cannot read: {exc}"]) from exc

    bad = [
        f"{path.resolve()}:{binding.original.line}: not a NAME=value line: "
        f"{binding.original.string.strip()[:80]!r}"
        for binding in parse_stream(io.StringIO(text))
        if binding.error
    ]
    if bad:
        raise SettingsError(bad)
    return {k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v}
