"""The JSON API's actions: account actions, ``auth.json`` import, logins.

Actions go through the pool, so they reach routing at once. Each refuses a
request a browser sent from another site (``same_site_only``, applied where
the routes are added).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from codex_lb.accounts import StateConflict
from codex_lb.accounts.identity import (
    MAX_AUTH_FILE_BYTES,
    AuthFileError,
    account_from_auth_document,
)
from codex_lb.errors import body_read_deadline
from codex_lb.web.api_common import (
    LOGINS_KEY,
    POOL_KEY,
    WEB_STORE_KEY,
    account_answer,
    account_or_404,
    bad_request,
    conflict,
    error_body,
    json_body,
    not_found,
)
from codex_lb.web.logins import LoginError, LoginFinished, TooManyLogins

log = structlog.get_logger("codex_lb.web")


# Accounts


async def pause_account(request: web.Request) -> web.Response:
    """Take the account out of routing; a bench it is under stays beneath."""
    account = account_or_404(request)
    try:
        await request.app[POOL_KEY].pause(account)
    except StateConflict as exc:
        raise conflict(exc.code, f"cannot pause {account.id}: {exc}") from exc
    log.info("account_action", action="pause", account_id=account.id)
    return await account_answer(request, account)


async def resume_account(request: web.Request) -> web.Response:
    """End the operator's pause; 409 for an account that is not paused."""
    account = account_or_404(request)
    try:
        await request.app[POOL_KEY].resume(account)
    except StateConflict as exc:
        raise conflict(exc.code, f"cannot resume {account.id}: {exc}") from exc
    log.info("account_action", action="resume", account_id=account.id)
    return await account_answer(request, account)


async def pin_account(request: web.Request) -> web.Response:
    return await _pin(request, True)


async def unpin_account(request: web.Request) -> web.Response:
    return await _pin(request, False)


async def _pin(request: web.Request, pinned: bool) -> web.Response:
    account = account_or_404(request)
    await request.app[POOL_KEY].set_pinned(account, pinned)
    action = "pin" if pinned else "unpin"
    log.info("account_action", action=action, account_id=account.id)
    return await account_answer(request, account)


async def remove_account(request: web.Request) -> web.Response:
    account = account_or_404(request)
    if not await request.app[POOL_KEY].remove(account):
        raise not_found("account_not_found", f"account {account.id} is already removed")
    log.info("account_action", action="remove", account_id=account.id)
    return web.json_response({"removed": account.id})


async def import_auth_json(request: web.Request) -> web.Response:
    """Add (or refresh the tokens of) accounts from uploaded ``auth.json`` files.

    Takes a multipart form (every file part is one ``auth.json``) or one
    ``auth.json`` document as the JSON body. A known account whose stored
    tokens were refreshed after the file was written keeps them
    (``tokens_kept``): they are the live ones.
    """
    documents = await _uploaded_documents(request)
    if not documents:
        raise bad_request("no auth.json in the request (send a file or a JSON body)")

    # Every file is checked before any is stored: one bad file adds nothing.
    pool = request.app[POOL_KEY]
    try:
        accounts = [
            account_from_auth_document(doc, name, pool.now()) for name, doc in documents
        ]
    except AuthFileError as exc:
        raise bad_request(str(exc), code="invalid_auth_file") from exc

    store = request.app[WEB_STORE_KEY]
    imported = []
    for new in accounts:
        saved = await store.save_account(new, now=pool.now())
        imported.append(
            {
                "id": saved.id,
                "email": new.email,
                "plan": new.plan,
                "new": saved.created,
                "tokens_kept": saved.tokens_kept,
            }
        )
    await pool.sync(force=True)
    log.info(
        "accounts_imported",
        count=len(imported),
        tokens_kept=sum(1 for a in imported if a["tokens_kept"]),
    )
    return web.json_response({"imported": imported})


async def _uploaded_documents(request: web.Request) -> list[tuple[str, Any]]:
    """(name, parsed JSON) of each uploaded ``auth.json``."""
    if not request.content_type.startswith("multipart/"):
        return [("request body", await json_body(request, default=None))]

    documents = []
    try:
        reader = await request.multipart()
        async with body_read_deadline(request):
            parts = [
                (part.filename or "auth.json", await part.read(decode=False))
                async for part in _file_parts(reader)
            ]
    except ValueError as exc:  # no boundary, a malformed part
        raise bad_request(f"the upload is not a readable form: {exc}") from exc
    for name, raw in parts:
        if len(raw) > MAX_AUTH_FILE_BYTES:
            raise bad_request(
                f"{name}: larger than {MAX_AUTH_FILE_BYTES} bytes: not an auth.json",
                code="invalid_auth_file",
            )
        try:
            documents.append((name, json.loads(raw)))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise bad_request(
                f"{name}: not JSON: {exc}", code="invalid_auth_file"
            ) from exc
    return documents


async def _file_parts(
    reader: aiohttp.MultipartReader,
) -> AsyncIterator[aiohttp.BodyPartReader]:
    """The parts of an upload that are files."""
    while (part := await reader.next()) is not None:
        if isinstance(part, aiohttp.BodyPartReader) and part.filename is not None:
            yield part


# Logins


async def start_reauth(request: web.Request) -> web.Response:
    account = account_or_404(request)
    return await _start_login(request, account.id)


async def start_login(request: web.Request) -> web.Response:
    return await _start_login(request, None)


async def login_progress(request: web.Request) -> web.Response:
    flow = request.app[LOGINS_KEY].get(request.match_info["flow_id"])
    if flow is None:
        raise _login_not_found(request)
    return web.json_response(flow.as_json())


async def cancel_login(request: web.Request) -> web.Response:
    """Give up a login still waiting; a browser login frees its port."""
    flow_id = request.match_info["flow_id"]
    try:
        flow = await request.app[LOGINS_KEY].cancel(flow_id)
    except LoginFinished as exc:
        raise conflict("login_finished", str(exc)) from exc
    if flow is None:
        raise _login_not_found(request)
    log.info("login_cancel_asked", flow=flow_id)
    return web.json_response(flow.as_json())


async def _start_login(request: web.Request, account_id: str | None) -> web.Response:
    body = await json_body(request, default={})
    mode = body.get("mode", "device") if isinstance(body, dict) else None
    if not isinstance(mode, str):
        raise bad_request(f"mode={mode!r} must be 'device' or 'browser'")
    try:
        flow = await request.app[LOGINS_KEY].start(mode, account_id)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    except TooManyLogins as exc:
        raise conflict("too_many_logins", str(exc)) from exc
    except LoginError as exc:
        raise web.HTTPBadGateway(
            text=json.dumps(error_body("login_failed", str(exc))),
            content_type="application/json",
        ) from exc
    return web.json_response(flow.as_json(), status=202)


def _login_not_found(request: web.Request) -> web.HTTPException:
    flow_id = request.match_info["flow_id"]
    return not_found("login_not_found", f"no login {flow_id!r} (finished long ago?)")
