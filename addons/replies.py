"""Responses the suite answers itself: errors in the client's protocol, local JSON endpoints."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from mitmproxy import http

import translators
from addons.stages import answer_events
from translators import wire
from translators.canonical import ChatResponse, Text, Usage
from translators.errors import ProxyError

if TYPE_CHECKING:
    from addons.exchange import Exchange


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> http.Response:
    body = wire.dumps(payload)
    return http.Response.make(status, body, {"content-type": "application/json", **(headers or {})})


def error_response(protocol: str, error: ProxyError) -> http.Response:
    """The error in ``protocol``'s own envelope plus the same canonical detail on every surface:
    ``llm_error: {code, retryable}`` beside the envelope (SDKs ignore unknown top-level keys) and
    in headers (the openai and anthropic SDKs obey ``x-should-retry`` before their status rules)."""
    status, body = translators.get(protocol).render_error(error)
    envelope = wire.loads(body)
    if isinstance(envelope, dict):
        envelope["llm_error"] = {"code": error.code, "retryable": error.retryable}
        body = wire.dumps(envelope)
    headers = {
        "content-type": "application/json",
        "x-llm-error-code": error.code,
        "x-should-retry": "true" if error.retryable else "false",
    }
    if error.retry_after is not None:
        headers["retry-after"] = str(max(0, round(error.retry_after)))
    return http.Response.make(status, body, headers)


def proxy_answer(ex: Exchange, text: str) -> http.Response:
    """The proxy's own assistant answer (a command's reply, a stopped tool loop) in the client's
    protocol, whole or streamed as the client asked, with a normal stop reason and zero usage: to
    the client it is an ordinary turn of the model. Rendered by the client protocol's own
    translator, so it reads exactly like a relayed answer."""
    answer = ChatResponse(
        id=f"llmproxy-{uuid.uuid4().hex[:24]}",
        model=ex.selector or "llm-proxy",
        content=[Text(text=text)],
        stop_reason="end_turn",
        usage=Usage(input_tokens=0, output_tokens=0),
    )
    module = translators.get(ex.client_protocol)
    request = ex.canonical()
    headers = {"x-llm-answered-by": "proxy"}
    if not ex.stream:
        return json_response(200, module.render_response(answer, request), headers)
    gemini = ex.client_protocol == "gemini"
    encoder = module.StreamEncoder(request, **({"sse": ex.gemini_sse} if gemini else {}))
    body = encoder.encode(answer_events(answer)) + encoder.close()
    sse = ex.gemini_sse or not gemini
    headers["content-type"] = module.STREAM_CONTENT_TYPE if sse else "application/json"
    return http.Response.make(200, body, {**headers, "cache-control": "no-cache"})
