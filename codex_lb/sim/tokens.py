"""Unsigned JWTs and the book of every token the emulator has handed out.

Access and id tokens are JWTs with `alg: none` and the literal signature
`sim`: codex-lb and the Codex CLI only read their claims (expiry, email, the
ChatGPT account), they never verify a signature. Refresh tokens are opaque
`rt-...` strings and are single use, as upstream.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any, Final, Literal

import attrs

from codex_lb.constants import AUTH_CLAIM, PROFILE_CLAIM

from .state import SimAccount

# What ChatGPT gives an access token today (ten days); configurable per
# emulator so a fast clock makes refreshes happen during a demo.
DEFAULT_ACCESS_TOKEN_TTL: Final = 10 * 24 * 3600

AccessProblem = Literal["token_expired", "token_revoked", "invalid_token"]
RefreshProblem = Literal["invalid_grant", "refresh_token_reused"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_jwt(claims: dict[str, Any]) -> str:
    """Encode claims as an unsigned JWT."""
    header = {"alg": "none", "typ": "JWT"}
    parts = [json.dumps(header), json.dumps(claims, separators=(",", ":"))]
    return ".".join(_b64(p.encode()) for p in parts) + ".sim"


def decode_jwt(token: str) -> dict[str, Any]:
    """Read the claims of a JWT without checking anything."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


@attrs.frozen
class TokenSet:
    """What a successful login or refresh returns."""

    access_token: str
    refresh_token: str
    id_token: str
    expires_in: int

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }


@attrs.define
class AccessGrant:
    email: str
    expires_at: float
    revoked: bool = False


@attrs.define
class RefreshGrant:
    email: str
    used: bool = False


@attrs.define
class TokenBook:
    """Every access and refresh token issued, with its owner and state."""

    access_ttl: int = DEFAULT_ACCESS_TOKEN_TTL
    access: dict[str, AccessGrant] = attrs.Factory(dict)
    refresh: dict[str, RefreshGrant] = attrs.Factory(dict)

    def issue(self, account: SimAccount, now: float) -> TokenSet:
        """Mint a fresh set for `account` and make it the account's current one."""
        auth = {
            "chatgpt_account_id": account.chatgpt_account_id,
            "chatgpt_plan_type": account.plan,
            "chatgpt_user_id": account.user_id,
            "user_id": account.user_id,
        }
        expires_at = int(now) + self.access_ttl
        common = {
            "iat": int(now),
            "exp": expires_at,
            "email": account.email,
            "sub": account.user_id,
            AUTH_CLAIM: auth,
        }

        # A random jti keeps two sets minted in the same second distinct.
        access = encode_jwt(
            {**common, "jti": secrets.token_hex(8), "aud": ["codex-lb-sim"]}
        )
        profile = {"email": account.email, "email_verified": True}
        id_token = encode_jwt({**common, PROFILE_CLAIM: profile})
        refresh = "rt-" + secrets.token_urlsafe(24)

        self.access[access] = AccessGrant(account.email, expires_at)
        self.refresh[refresh] = RefreshGrant(account.email)
        account.access_token = access
        account.refresh_token = refresh
        account.id_token = id_token
        return TokenSet(access, refresh, id_token, self.access_ttl)

    def check_access(
        self, token: str, now: float
    ) -> tuple[str | None, AccessProblem | None]:
        """Return (email, None) for a usable token, else (None, problem)."""
        grant = self.access.get(token)
        if grant is None:
            return None, "invalid_token"
        if grant.revoked:
            return None, "token_revoked"
        if now >= grant.expires_at:
            return None, "token_expired"
        return grant.email, None

    def redeem_refresh(self, token: str) -> tuple[str | None, RefreshProblem | None]:
        """Spend a refresh token: (email, None) the first time, then reused."""
        grant = self.refresh.get(token)
        if grant is None:
            return None, "invalid_grant"
        if grant.used:
            return None, "refresh_token_reused"
        grant.used = True
        return grant.email, None

    def revoke_access(self, token: str) -> None:
        self.access[token].revoked = True

    def expire_access(self, token: str, now: float) -> None:
        self.access[token].expires_at = now
