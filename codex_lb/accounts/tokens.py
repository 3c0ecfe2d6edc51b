"""Token refresh: one at a time per account, never losing a rotated token.

ChatGPT refresh tokens are single use. Two refreshes of one account racing
would burn the token and log the account out, so each account has a lock; a
caller that waited on the lock finds the tokens already fresh and uses them.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import structlog

from codex_lb.accounts.identity import identity_from_tokens, token_expiry
from codex_lb.accounts.pool import Account, AccountPool
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID, PERMANENT_REFRESH_CODES
from codex_lb.store import TokenSet

log = structlog.get_logger("codex_lb.accounts")

# Refresh an access token this long before its expiry.
EXPIRY_MARGIN_SECONDS = 300.0
# A token endpoint slower than this fails the refresh (for now, not for good):
# requests wait on the account's lock meanwhile.
REFRESH_TIMEOUT = aiohttp.ClientTimeout(total=30.0)


class RefreshError(Exception):
    """A refresh that failed; ``permanent`` when only a new login can help."""

    def __init__(self, code: str, permanent: bool) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


class TokenRefresher:
    """Keeps accounts' access tokens valid through the OAuth token endpoint."""

    def __init__(
        self,
        pool: AccountPool,
        session: aiohttp.ClientSession,
        auth_base_url: str,
        refresh_age_seconds: float,
    ) -> None:
        self._pool = pool
        self._session = session
        self._token_url = auth_base_url.rstrip("/") + "/oauth/token"
        self._refresh_age = refresh_age_seconds

    def needs_refresh(self, account: Account) -> bool:
        """True when the access token is expired, near expiry, or old."""
        now = self._pool.now()
        tokens = account.tokens
        expires = tokens.access_expires_at
        if expires is not None and expires - EXPIRY_MARGIN_SECONDS <= now:
            return True
        return now - tokens.refreshed_at >= self._refresh_age

    def is_expired(self, account: Account) -> bool:
        """True when the access token's ``exp`` claim has passed."""
        expires = account.tokens.access_expires_at
        return expires is not None and expires <= self._pool.now()

    async def ensure_fresh(self, account: Account) -> TokenSet:
        """The account's tokens, refreshed first if they need it.

        A refresh that fails for now (not for good) while the access token
        still works is shrugged off: the token is used and the next request
        tries again. Raises RefreshError otherwise.
        """
        if not self.needs_refresh(account):
            return account.tokens
        try:
            return await self.refresh(account, stale=account.tokens)
        except RefreshError as exc:
            if exc.permanent or self.is_expired(account):
                raise
            return account.tokens

    async def refresh(self, account: Account, stale: TokenSet) -> TokenSet:
        """Replace ``stale`` tokens; a no-op if another caller already did.

        Raises RefreshError; a permanent one also marks the account
        ``reauth_required``.
        """
        async with account.refresh_lock:
            if account.tokens.refresh_token != stale.refresh_token:
                return account.tokens
            try:
                tokens = await self._exchange(account)
            except RefreshError as exc:
                log.warning(
                    "token_refresh_failed",
                    account_id=account.id,
                    code=exc.code,
                    permanent=exc.permanent,
                )
                if exc.permanent:
                    await self._pool.require_reauth(account, exc.code)
                raise
            await self._pool.store_tokens(account, tokens)
            log.info("token_refreshed", account_id=account.id)
            return tokens

    async def _exchange(self, account: Account) -> TokenSet:
        body = {
            "client_id": CODEX_OAUTH_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": account.tokens.refresh_token,
            "scope": "openid profile email",
        }
        try:
            async with self._session.post(
                self._token_url, json=body, timeout=REFRESH_TIMEOUT
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RefreshError(f"transport: {type(exc).__name__}", False) from exc

        payload = _json_object(text)
        if status != 200:
            code = _error_code(payload) or f"http_{status}"
            permanent = code in PERMANENT_REFRESH_CODES or (
                status in (400, 401)
                and code not in ("temporarily_unavailable",)
                and not code.startswith("http_5")
            )
            raise RefreshError(code, permanent)

        access = payload.get("access_token")
        if not isinstance(access, str) or not access:
            raise RefreshError("malformed_token_response", False)
        refresh = payload.get("refresh_token") or account.tokens.refresh_token
        id_token = payload.get("id_token") or account.tokens.id_token
        expires_in = payload.get("expires_in")
        now = self._pool.now()
        expires_at = token_expiry(access)
        if expires_at is None and isinstance(expires_in, (int, float)):
            expires_at = now + float(expires_in)

        email, _, plan = identity_from_tokens(id_token, access)
        if email:
            account.email = email
        if plan:
            account.plan = plan.lower()
        return TokenSet(
            access_token=access,
            refresh_token=str(refresh),
            id_token=id_token if isinstance(id_token, str) else None,
            refreshed_at=now,
            access_expires_at=expires_at,
        )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error_code(payload: dict[str, Any]) -> str | None:
    """The error code of an OAuth error body, in either shape seen upstream."""
    error = payload.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    return None
