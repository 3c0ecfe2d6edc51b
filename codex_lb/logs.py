"""Structured logging: stable event names with fields, secrets never written.

Every log line passes through one redaction step. It blanks fields whose
name says they hold a secret, any value that looks like a token (JWTs,
client keys, refresh tokens, bearer credentials) whatever field it is in,
and any of the secrets codex-lb knows by value (:func:`remember_secret`:
the admin and metrics tokens, client keys as they are presented, account
tokens as they are loaded or refreshed), since a token may be an opaque
string with no telltale prefix.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import Any, TextIO, cast

import orjson
import structlog
import structlog.stdlib
from aiohttp.http_exceptions import HttpProcessingError

from codex_lb.config import LogFormat, LogLevel

# Field names that hold secrets: "refresh_token", "authorization", ... but not
# counts such as "input_tokens".
_SECRET_FIELDS = re.compile(
    r"(^|_)(token|secret|password|authorization|api_key|key|cookie|code_verifier)$",
    re.I,
)
_SECRET_VALUES = re.compile(
    r"(eyJ[\w-]*\.[\w-]*\.[\w-]*"  # JWTs
    r"|sk-[\w-]{4,}"  # client and OpenAI keys
    r"|\brt[-_][\w.-]{3,}"  # refresh tokens
    r"|\bat[-_][\w.-]{3,}"  # opaque access tokens
    r"|(?i:bearer)\s+[\w.~+/=-]+)"
)
REDACTED = "[redacted]"


# Every secret pattern above starts with one of these (bearer aside, checked
# case-blind): a string holding none of them has nothing to redact, and these
# substring tests cost a fraction of the regular expression. Every request
# logs a line, so this is on the hot path.
_MARKERS = ("eyJ", "sk-", "rt-", "rt_", "at-", "at_")
_MAX_FIELD_VERDICTS = 4096
_field_verdicts: dict[str, bool] = {}


class KnownSecrets:
    """Secrets held by value, found in text without a regular expression each.

    Most tokens are one run of URL-safe characters (JWTs, client keys,
    base64url): a text is cut into such runs by one scan, and each run long
    enough is looked up in a set, so the cost does not grow with the number
    of secrets. A secret with other characters in it (an operator's admin
    token may have any) is searched for as a substring. Secrets shorter than
    :data:`MIN_LENGTH` are not redacted by value: they would blank ordinary
    words. The newest :data:`MAX_SECRETS` are kept.
    """

    MIN_LENGTH = 8
    MAX_SECRETS = 50_000
    _RUN = re.compile(r"[A-Za-z0-9._~-]{8,}")
    _ONE_RUN = re.compile(r"[A-Za-z0-9._~-]+")

    def __init__(self) -> None:
        self._runs: dict[str, None] = {}
        self._others: dict[str, None] = {}
        # Read by logging threads while the event loop adds: they iterate
        # over this snapshot, never over the dict being changed.
        self._others_now: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs) + len(self._others)

    def add(self, secret: str | None) -> bool:
        """Remember ``secret``; True if it was not known before."""
        if not secret:
            return False
        secret = secret.strip()
        # Base64 padding ends a run: the secret is found without it.
        core = secret.rstrip("=")
        if len(core) < self.MIN_LENGTH:
            return False
        with self._lock:
            if self._ONE_RUN.fullmatch(core):
                return _keep_newest(self._runs, core, self.MAX_SECRETS)
            new = _keep_newest(self._others, secret, self.MAX_SECRETS)
            self._others_now = tuple(self._others)
            return new

    def redact(self, text: str) -> str:
        if len(text) < self.MIN_LENGTH:
            return text
        if self._runs:
            text = self._RUN.sub(self._blank_run, text)
        for secret in self._others_now:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def _blank_run(self, match: re.Match[str]) -> str:
        run = match.group()
        if run in self._runs:
            return REDACTED
        # A secret at the end of a sentence takes the full stop into its run.
        bare = run.rstrip(".")
        if bare != run and bare in self._runs:
            return REDACTED + run[len(bare) :]
        return run


def _keep_newest(kept: dict[str, None], secret: str, limit: int) -> bool:
    """Put ``secret`` last in ``kept``; True if it was not there before."""
    new = kept.pop(secret, 0) is not None
    kept[secret] = None
    while len(kept) > limit:
        del kept[next(iter(kept))]
    return new


_known = KnownSecrets()

# Short texts repeat from line to line (event names, models, statuses,
# account ids): each is redacted once and the result kept until a new secret
# is remembered. Longer texts (messages, bodies) are redacted every time.
_SHORT_TEXT = 128
_MAX_SHORT_TEXTS = 4096
_short_texts: dict[str, str] = {}


def remember_secret(secret: str | None) -> None:
    """Redact ``secret`` by value from now on, wherever it shows up."""
    if _known.add(secret):
        _short_texts.clear()


def redact_text(text: str) -> str:
    if len(text) <= _SHORT_TEXT:
        done = _short_texts.get(text)
        if done is None:
            done = _redact_now(text)
            if len(_short_texts) >= _MAX_SHORT_TEXTS:
                _short_texts.clear()
            _short_texts[text] = done
        return done
    return _redact_now(text)


def _redact_now(text: str) -> str:
    if _may_hold_secret(text):
        text = _SECRET_VALUES.sub(REDACTED, text)
    return _known.redact(text)


def redact_bytes(body: bytes) -> bytes:
    """``redact_text`` for a body of any encoding (undecodable bytes kept)."""
    text = body.decode("utf-8", "surrogateescape")
    redacted = redact_text(text)
    if redacted == text:
        return body
    return redacted.encode("utf-8", "surrogateescape")


def _may_hold_secret(text: str) -> bool:
    for marker in _MARKERS:
        if marker in text:
            return True
    return "bearer" in text.lower()


def _is_secret_field(name: str) -> bool:
    # Field names repeat from line to line: decide each once.
    verdict = _field_verdicts.get(name)
    if verdict is None:
        verdict = _SECRET_FIELDS.search(name) is not None
        if len(_field_verdicts) < _MAX_FIELD_VERDICTS:
            _field_verdicts[name] = verdict
    return verdict


def _redact(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 4:
        return value
    if isinstance(value, dict):
        return {
            k: REDACTED if _is_secret_field(str(k)) else _redact(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: the one place secrets are kept out of logs."""
    for key, value in list(event.items()):
        if _is_secret_field(key):
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_text(value)
        elif value is not None and not isinstance(value, (int, float)):
            event[key] = _redact(value)
    return event


_second: tuple[int, str] = (0, "")


def add_timestamp(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: ``timestamp``, ISO 8601 in UTC to the microsecond
    (``2026-01-02T03:04:05.123456Z``), as structlog's TimeStamper writes it.

    The date and time of day are formatted once per second: every request
    logs a line, and this costs a third of TimeStamper's time.
    """
    global _second
    now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    event["timestamp"] = f"{_second[1]}.{int((now - whole) * 1e6):06d}Z"
    return event


def render_json(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
    """A structlog renderer: the event as one line of JSON.

    orjson writes it in a tenth of the standard library's time; what orjson
    refuses (a lone surrogate, an integer past 64 bits) the standard library
    writes. Anything that is not JSON is written as its ``repr``.
    """
    try:
        return orjson.dumps(
            event, default=repr, option=orjson.OPT_NON_STR_KEYS
        ).decode()
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(event, default=repr)


class LogOutput:
    """Where log lines go: a stream whose failure never reaches the caller.

    A log line is written from everywhere, signal handlers included; when
    the reader of the server's output goes away (a pipe to ``grep`` stopped
    with Ctrl-C, a log shipper restarting) every write fails with
    ``BrokenPipeError``. Raised from a signal handler, that kept SIGTERM
    from stopping the server. Lines that cannot be written are counted in
    ``lost`` and dropped; the stream is tried again for every line, so
    output that comes back (a full disk freed) is used again.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.lost = 0

    def write(self, text: str) -> int:
        try:
            return int(self._stream.write(text))
        except (OSError, ValueError):  # ValueError: the stream is closed
            self.lost += 1
            return 0

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        try:
            return bool(self._stream.isatty())
        except (OSError, ValueError):
            return False


def configure_logging(log_format: LogFormat | None, level: LogLevel) -> None:
    """Console lines on a terminal, JSON otherwise; all at ``level`` and up.

    Lines from the standard library's loggers (aiohttp's server errors,
    asyncio's unretrieved task errors, warnings) and uncaught exceptions are
    rendered by the same chain, so they pass the same redaction step.
    """
    output = LogOutput(sys.stderr)
    if log_format is None:
        log_format = LogFormat.CONSOLE if output.isatty() else LogFormat.JSON
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=output.isatty())
        if log_format is LogFormat.CONSOLE
        else render_json
    )
    numeric = getattr(logging, level.value.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            redact_secrets,
            # After redaction: codex-lb's own clock holds no secret, and a
            # text new on every line would only cost redaction its time.
            add_timestamp,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # It has the two methods WriteLogger calls.
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, output)),
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(renderer, numeric, output)


class BadHttpRequests(logging.Filter):
    """aiohttp's refusals of unparsable requests as one warning line each.

    A header line over 8190 bytes, more than 128 headers or a request line
    that is not HTTP is refused by aiohttp's parser with a 400 before any
    handler of codex-lb runs, and aiohttp logs each at error level with a
    traceback: a remote client could fill the log with them. They become
    ``bad_http_request`` warnings with the status, the peer and the
    parser's reason (cut short: it quotes the offending bytes).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) else None
            record.msg, record.args, record.exc_info = "bad_http_request", (), None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.status = exc.code
            record.peer = peer
            record.reason = str(exc.message)[:120]
        return True


def _route_stdlib_logging(renderer: Any, numeric: int, output: LogOutput) -> None:
    """Standard-library records through ``redact_secrets`` and ``renderer``."""
    handler = logging.StreamHandler(output)
    handler.addFilter(BadHttpRequests())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.ExtraAdder(allow=("status", "peer", "reason")),
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # aiohttp's and asyncio's loggers are chatty below warnings.
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def _log_uncaught(
    kind: type[BaseException],
    value: BaseException,
    traceback: TracebackType | None,
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, traceback)
        return
    logging.getLogger("codex_lb").critical(
        "uncaught_exception", exc_info=(kind, value, traceback)
    )


class FailureStreak:
    """Logs failed writes without flooding the log.

    A store that cannot be written (a full disk) fails write after write,
    and a nearly full one fails some and takes others: a line per write
    would flood the log, and a log on the same disk would fill it further.
    ``failed`` logs ``<subject>_failed`` at most once per ``interval``
    seconds, with the count of failed writes so far; the first success
    after such a line logs ``<subject>_recovered``.
    """

    def __init__(
        self,
        logger: Any,
        subject: str,
        level: str = "error",
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        **fields: Any,
    ) -> None:
        self._log = logger
        self._subject = subject
        self._level = level
        self._interval = interval
        self._clock = clock
        self._fields = fields
        self._last_line: float | None = None
        self._unreported = False
        self.failures = 0

    def failed(self, **fields: Any) -> None:
        self.failures += 1
        now = self._clock()
        if self._last_line is not None and now - self._last_line < self._interval:
            return
        self._last_line = now
        self._unreported = True
        method = getattr(self._log, self._level)
        method(
            f"{self._subject}_failed",
            **self._fields,
            **fields,
            failed_writes=self.failures,
        )

    def succeeded(self) -> None:
        if self._unreported:
            self._unreported = False
            self._log.info(
                f"{self._subject}_recovered",
                **self._fields,
                failed_writes=self.failures,
            )
