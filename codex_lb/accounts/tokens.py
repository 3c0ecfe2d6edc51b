"""Token refresh: one flight at a time per account, its outcome shared.

ChatGPT refresh tokens are single use: two refreshes of one account racing
would burn the token and log the account out. So each account has at most
one refresh in flight, a task of its own, and every caller that needs one
meanwhile awaits that same task and takes its outcome, success or failure,
instead of calling the token endpoint again. The task is never cancelled by
a caller that stops waiting (a client hanging up): a refresh cut off after
the endpoint rotated the token would lose it.

When a refresh is due only because the access token is old or near its
expiry, the token still works: the refresh runs in the background and the
request goes on at once. After a refresh fails for now (timeout, 5xx, an
answer that is not JSON), the account's next refresh waits a short back-off,
so a token endpoint that hangs costs each request nothing while it lasts.
"""

from __future__ import annotations

import asyncio

import aiohttp
import attrs
import structlog

from codex_lb.accounts.account import Account
from codex_lb.accounts.identity import identity_from_tokens, token_expiry
from codex_lb.accounts.oauth_exchange import error_code, json_object
from codex_lb.accounts.pool import AccountPool
from codex_lb.constants import CODEX_OAUTH_CLIENT_ID, PERMANENT_REFRESH_CODES
from codex_lb.store import TokenSet

log = structlog.get_logger("codex_lb.accounts")

# Refresh an access token this long before its expiry.
EXPIRY_MARGIN_SECONDS = 300.0
# A token with less than this left is not worth a request that would race
# its expiry: the request waits for the refresh instead.
MIN_USABLE_SECONDS = 30.0
# A token endpoint slower than this fails the refresh (for now, not for good).
REFRESH_TIMEOUT = aiohttp.ClientTimeout(total=30.0)
# After a refresh failed for now, the account's next one waits this long.
RETRY_AFTER_FAILURE_SECONDS = 10.0
# At shutdown, refreshes in flight get this long to finish (and store the
# rotated token) before they are cut off.
SHUTDOWN_WAIT_SECONDS = 10.0


class RefreshError(Exception):
    """A refresh that failed; ``permanent`` when only a new login can help."""

    def __init__(self, code: str, permanent: bool) -> None:
        super().__init__(code)
        self.code = code
        self.permanent = permanent


@attrs.frozen
class _Failure:
    """A refresh of ``tokens`` that failed for now at ``at``."""

    error: RefreshError
    tokens: TokenSet
    at: float


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
        self._flights: dict[str, asyncio.Task[TokenSet]] = {}
        self._failures: dict[str, _Failure] = {}

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
        """The account's tokens, refreshed first if they no longer work.

        A token that still works for a while is returned at once while its
        due refresh runs in the background. A refresh that fails for now
        while the token still works is shrugged off: the token is used.
        Raises RefreshError otherwise.
        """
        if not self.needs_refresh(account):
            return account.tokens
        stale = account.tokens
        if self._still_usable(stale):
            if self._backing_off(account, stale) is None:
                self._flight(account, stale)
            return stale
        try:
            return await self.refresh(account, stale)
        except RefreshError as exc:
            if exc.permanent or self.is_expired(account):
                raise
            return account.tokens

    async def refresh(self, account: Account, stale: TokenSet) -> TokenSet:
        """Replace ``stale`` tokens; a no-op if they were replaced already.

        Joins the refresh in flight, if any. Raises RefreshError (the one of
        a refresh that failed for now moments ago, during its back-off); a
        permanent one also marks the account ``reauth_required``.
        """
        if _replaced(account.tokens, stale):
            return account.tokens
        failure = self._backing_off(account, stale)
        if failure is not None:
            raise failure.error
        return await asyncio.shield(self._flight(account, stale))

    async def wait_idle(self, account: Account) -> None:
        """Wait for the account's refresh in flight, if any, to end."""
        flight = self._flights.get(account.id)
        if flight is not None:
            await asyncio.wait([flight])

    async def close(self) -> None:
        """Let refreshes in flight finish (so no rotated token is lost), for
        a while; then cut off what is left."""
        flights = list(self._flights.values())
        if not flights:
            return
        _done, pending = await asyncio.wait(flights, timeout=SHUTDOWN_WAIT_SECONDS)
        for flight in pending:
            flight.cancel()
        await asyncio.wait(flights)

    # Internals

    def _still_usable(self, tokens: TokenSet) -> bool:
        expires = tokens.access_expires_at
        return expires is None or expires - MIN_USABLE_SECONDS > self._pool.now()

    def _backing_off(self, account: Account, stale: TokenSet) -> _Failure | None:
        failure = self._failures.get(account.id)
        if (
            failure is not None
            and not _replaced(failure.tokens, stale)
            and self._pool.now() - failure.at < RETRY_AFTER_FAILURE_SECONDS
        ):
            return failure
        return None

    def _flight(self, account: Account, stale: TokenSet) -> asyncio.Task[TokenSet]:
        """The account's refresh in flight, started now if there is none."""
        flight = self._flights.get(account.id)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(
                self._fly(account, stale), name=f"token-refresh-{account.id}"
            )
            self._flights[account.id] = flight
            flight.add_done_callback(lambda done: self._landed(account.id, done))
        return flight

    def _landed(self, account_id: str, flight: asyncio.Task[TokenSet]) -> None:
        if self._flights.get(account_id) is flight:
            del self._flights[account_id]
        # Nobody may be waiting (a background refresh): the outcome is
        # logged in _fly, so only mark the exception as seen.
        if not flight.cancelled():
            flight.exception()

    async def _fly(self, account: Account, stale: TokenSet) -> TokenSet:
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
                self._failures.pop(account.id, None)
                await self._pool.require_reauth(account, exc.code)
            else:
                self._failures[account.id] = _Failure(exc, stale, self._pool.now())
            raise
        self._failures.pop(account.id, None)
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
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RefreshError(f"transport: {type(exc).__name__}", False) from exc

        # The body may be an HTML error page, even bytes that are not UTF-8.
        payload = json_object(raw)
        if status != 200:
            code = error_code(payload) or f"http_{status}"
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


def _replaced(current: TokenSet, stale: TokenSet) -> bool:
    """True when ``current`` is a later set than ``stale``.

    The access token and the refresh time tell, not the refresh token: an
    endpoint that does not rotate refresh tokens returns the same one.
    """
    return (
        current.access_token != stale.access_token
        or current.refreshed_at != stale.refreshed_at
    )
