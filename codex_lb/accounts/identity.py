"""Reading who an account is from its tokens and from Codex ``auth.json`` files."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from jwt.utils import base64url_decode

from codex_lb.constants import AUTH_CLAIM, PROFILE_CLAIM
from codex_lb.store import NewAccount, TokenSet

# A Codex auth.json is a few KB; anything this large is some other file.
MAX_AUTH_FILE_BYTES: Final = 1024 * 1024


class AuthFileError(ValueError):
    """An ``auth.json`` that codex-lb cannot take; the message says why."""


def token_claims(token: str | None) -> dict[str, Any]:
    """The claims of a JWT, unverified; {} for an opaque or malformed token.

    Access tokens may be opaque strings: then nothing is known of them.
    """
    if not isinstance(token, str) or token.count(".") != 2:
        return {}
    # Only the payload is read: the signature is not ours to check (and some
    # issuers, the emulator among them, sign with nothing decodable).
    try:
        claims = json.loads(base64url_decode(token.split(".")[1]))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token: str | None) -> float | None:
    return claim_time(token_claims(token).get("exp"))


def claim_time(value: Any) -> float | None:
    """A time claim (``exp``, ``iat``) as epoch seconds, else None.

    JSON lets a claim be ``true``, ``NaN``, ``1e999`` or an integer of
    hundreds of digits; none of those is a time.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def identity_from_tokens(
    id_token: str | None, access_token: str | None = None
) -> tuple[str | None, str | None, str | None]:
    """(email, ChatGPT account id, plan) from the id token, else the access token."""
    email = account = plan = None
    for claims in (token_claims(id_token), token_claims(access_token)):
        auth = _object(claims.get(AUTH_CLAIM))
        profile = _object(claims.get(PROFILE_CLAIM))
        email = (
            email or claim_text(claims.get("email")) or claim_text(profile.get("email"))
        )
        account = account or claim_text(auth.get("chatgpt_account_id"))
        plan = plan or claim_text(auth.get("chatgpt_plan_type"))
    return email, account, plan


# The longest identity claim taken (an email may have 254 characters).
MAX_CLAIM_CHARS: Final = 256


def claim_text(value: Any) -> str | None:
    """``value`` if it is a usable identity text, else None.

    A claim of another type (a number, a list), an empty one, one with
    control characters or one longer than any real id is left out rather
    than stored: it would become an account named by garbage.
    """
    if (
        isinstance(value, str)
        and 0 < len(value) <= MAX_CLAIM_CHARS
        and value.isprintable()
        and value.strip() == value
    ):
        return value
    return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def account_from_auth_file(path: Path, now: float | None = None) -> NewAccount:
    """Read one Codex ``auth.json`` into an account ready to store.

    Reads at most MAX_AUTH_FILE_BYTES: a path such as ``/dev/zero`` or a
    large file named by mistake is refused instead of read forever.
    """
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_AUTH_FILE_BYTES + 1)
        if len(raw) > MAX_AUTH_FILE_BYTES:
            raise AuthFileError(
                f"{path}: larger than {MAX_AUTH_FILE_BYTES} bytes: not an auth.json"
            )
        document = json.loads(raw.decode())
    except OSError as exc:
        raise AuthFileError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise AuthFileError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise AuthFileError(
            f"{path}: not JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    return account_from_auth_document(document, str(path), now)


def account_from_auth_document(
    document: Any, source: str, now: float | None = None
) -> NewAccount:
    """An account from a parsed ``auth.json``; ``source`` names it in errors."""
    tokens = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(tokens, dict):
        raise AuthFileError(
            f"{source}: no 'tokens' object: is this a ChatGPT login of the Codex CLI?"
        )
    access, refresh = tokens.get("access_token"), tokens.get("refresh_token")
    id_token = tokens.get("id_token")
    if not isinstance(access, str) or not isinstance(refresh, str):
        raise AuthFileError(f"{source}: 'tokens' lacks access_token or refresh_token")

    email, account_id, plan = identity_from_tokens(id_token, access)
    account_id = claim_text(tokens.get("account_id")) or account_id
    if not account_id:
        raise AuthFileError(f"{source}: no ChatGPT account id in tokens or id token")

    refreshed_at = _written_at(document.get("last_refresh"), id_token, access)
    if refreshed_at is None:
        refreshed_at = now if now is not None else time.time()

    return NewAccount(
        email=email or account_id,
        chatgpt_account_id=account_id,
        plan=(plan or "unknown").lower(),
        tokens=TokenSet(
            access_token=access,
            refresh_token=refresh,
            id_token=id_token if isinstance(id_token, str) else None,
            refreshed_at=refreshed_at,
            access_expires_at=token_expiry(access),
        ),
    )


def _written_at(
    last_refresh: Any, id_token: str | None, access_token: str
) -> float | None:
    """When a file's tokens were issued: its ``last_refresh``, else the
    tokens' ``iat`` claim. The store compares it with its own tokens' last
    refresh, to keep newer ones."""
    if isinstance(last_refresh, str):
        try:
            moment = datetime.fromisoformat(last_refresh.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
    issued = [
        iat
        for claims in (token_claims(id_token), token_claims(access_token))
        if (iat := claim_time(claims.get("iat"))) is not None
    ]
    return max(issued) if issued else None
