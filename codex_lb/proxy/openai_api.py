"""The OpenAI-compatible routes: ``/v1/responses``, ``/v1/chat/completions``
and ``/v1/models``.

The upstream streams Responses and nothing else, so every request goes up as
a streamed Responses request (``store`` false) and comes back as the client
asked: relayed byte for byte, assembled into one object, or translated to
Chat Completions. Failover, accounting and the request log are the relay's,
the same as for the Codex routes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog
from aiohttp import web

from codex_lb.clientkeys import API_KEY_ID
from codex_lb.errors import ClientError, client_error_response, error_response
from codex_lb.proxy.assemble import ResponsesAnswer
from codex_lb.proxy.body import require_model
from codex_lb.proxy.chat import DEFAULT_INSTRUCTIONS, ParameterError, chat_to_responses
from codex_lb.proxy.chat_stream import ChatAnswer, ChatStream
from codex_lb.proxy.outcome import ProxyRequest, StreamTranslator
from codex_lb.proxy.pricing import PriceTable
from codex_lb.proxy.routes import RELAY_KEY, _read_json, _session_key

log = structlog.get_logger("codex_lb.proxy")

PRICES_KEY = web.AppKey("prices", PriceTable)

# What happens to /v1/responses parameters the Codex backend cannot take;
# the rest is the upstream's own dialect and passes unchanged.
RESPONSES_DROPPED: Final = frozenset(
    {
        "max_output_tokens",
        "temperature",
        "top_p",
        "store",
        "metadata",
        "user",
        "safety_identifier",
        "service_tier",
        "truncation",
        "max_tool_calls",
        "stream_options",
        "prompt_cache_retention",
    }
)
RESPONSES_REFUSED: Final = {
    "previous_response_id": "the Codex backend keeps no responses (store is "
    "false): send the whole conversation in 'input'",
    "conversation": "the Codex backend keeps no conversations: send the whole "
    "conversation in 'input'",
    "background": "background responses are not available through the Codex backend",
    "prompt": "stored prompt templates are not available through the Codex backend",
    "top_logprobs": "the Codex backend gives no log probabilities",
}

# The Codex CLI version named when asking the upstream for its catalog: the
# catalog lists the models a client of that version may use.
CATALOG_CLIENT_VERSION: Final = "0.171.0"

# Client headers never forwarded from /v1 routes: the body is re-encoded,
# and OpenAI platform headers mean nothing to the ChatGPT backend.
_NOT_FORWARDED = frozenset(
    {"content-encoding", "openai-organization", "openai-project"}
)


def _forwarded(request: web.Request) -> Mapping[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}


def responses_upstream_body(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The upstream body of a /v1/responses request, and the names dropped."""
    # What decides codex-lb's own answer is checked here; the rest is the
    # upstream's dialect, which the upstream checks.
    for name in ("stream", "store"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool):
            raise ParameterError(name, f"'{name}' must be true or false")
    if not isinstance(body.get("input"), (str, list)):
        raise ParameterError(
            "input", "'input' is required: a string or a list of input items"
        )
    for name, reason in RESPONSES_REFUSED.items():
        value = body.get(name)
        if value is not None and value is not False and value != 0:
            raise ParameterError(name, f"'{name}': {reason}")
    dropped = sorted(name for name in body if name in RESPONSES_DROPPED)
    upstream = {k: v for k, v in body.items() if k not in RESPONSES_DROPPED}
    for name in RESPONSES_REFUSED:
        upstream.pop(name, None)

    # A string input becomes one user message: the list form is what the
    # Codex backend is known to take. Instructions are required there.
    if isinstance(upstream.get("input"), str):
        upstream["input"] = [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": upstream["input"]}],
            }
        ]
    instructions = upstream.get("instructions")
    if not isinstance(instructions, str) or not instructions.strip():
        upstream["instructions"] = DEFAULT_INSTRUCTIONS
    upstream["stream"] = True
    upstream["store"] = False
    return upstream, dropped


async def v1_responses(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses``: streamed as relayed, or assembled into one object."""
    try:
        _, body = await _read_json(request)
        model = require_model(body)
        upstream, dropped = responses_upstream_body(body)
    except ClientError as exc:  # ParameterError included
        return client_error_response(exc)
    stream = body.get("stream") is True
    if dropped:
        log.info("parameters_dropped", api="responses", parameters=dropped)

    return await _relay(
        request,
        "responses",
        upstream,
        model,
        body,
        None if stream else ResponsesAnswer,
    )


async def v1_chat_completions(request: web.Request) -> web.StreamResponse:
    """``POST /v1/chat/completions``: translated to Responses and back."""
    try:
        _, body = await _read_json(request)
        plan = chat_to_responses(body)
    except ClientError as exc:  # ParameterError included
        return client_error_response(exc)
    if plan.dropped:
        log.info("parameters_dropped", api="chat", parameters=list(plan.dropped))

    translator: Callable[[], StreamTranslator]
    if plan.stream:

        def translator() -> StreamTranslator:
            return ChatStream(plan.model, plan.include_usage)

    else:

        def translator() -> StreamTranslator:
            return ChatAnswer(plan.model)

    return await _relay(request, "chat", plan.body, plan.model, body, translator)


async def _relay(
    request: web.Request,
    api: str,
    upstream: dict[str, Any],
    model: str,
    body: dict[str, Any],
    translator: Callable[[], StreamTranslator] | None,
) -> web.StreamResponse:
    proxied = ProxyRequest(
        api=api,
        upstream_path="/codex/responses",
        body=json.dumps(upstream).encode(),
        content_encoding=None,
        client_headers=_forwarded(request),
        model=model,
        stream=True,
        session_key=_session_key(request, body),
        api_key_id=request.get(API_KEY_ID),
        translator=translator,
    )
    return await request.app[RELAY_KEY].serve(request, proxied)


async def _model_names(request: web.Request) -> list[str]:
    """The upstream catalog's models (when an account can fetch it), then
    the price table's exact names."""
    proxied = ProxyRequest(
        api="models",
        upstream_path="/codex/models",
        body=b"",
        content_encoding=None,
        client_headers={},
        model=None,
        stream=False,
        method="GET",
        query=f"client_version={CATALOG_CLIENT_VERSION}",
    )
    names: list[str] = []
    response = await request.app[RELAY_KEY].fetch(request, proxied)
    catalog: Any = None
    if response.status == 200 and isinstance(response.body, bytes):
        try:
            catalog = json.loads(response.body)
        except ValueError:
            catalog = None
    entries = catalog.get("models") if isinstance(catalog, dict) else None
    if isinstance(entries, list):
        for entry in entries:
            slug = entry.get("slug") if isinstance(entry, dict) else None
            if isinstance(slug, str) and entry.get("visibility") != "hide":
                names.append(slug)
    else:
        log.warning("model_catalog_unavailable", status=response.status)

    prices = request.app[PRICES_KEY]
    names += [name for name in prices.names if not name.endswith("*")]
    return list(dict.fromkeys(names))


def _model_json(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "openai"}


async def v1_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the models the pool can serve, OpenAI's list shape."""
    names = await _model_names(request)
    return web.json_response(
        {"object": "list", "data": [_model_json(name) for name in names]}
    )


async def v1_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{model}``: one model, or 404 ``model_not_found``."""
    name = request.match_info["model"]
    if name not in await _model_names(request):
        return error_response(
            404,
            "model_not_found",
            f"the model {name!r} is not served by this pool",
            "invalid_request_error",
            param="model",
        )
    return web.json_response(_model_json(name))


def add_openai_routes(app: web.Application) -> None:
    app.router.add_post("/v1/responses", v1_responses)
    app.router.add_post("/v1/chat/completions", v1_chat_completions)
    app.router.add_get("/v1/models", v1_models)
    app.router.add_get("/v1/models/{model}", v1_model)
