"""Chooses each LLM flow's backend and prepares the request the provider will get.

Same protocol on both sides and nothing to rewrite → the client's body goes upstream as it came
(only the model name changes when the selector named a backend). Otherwise the body is parsed to
the canonical request once and rendered for the target's protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mitmproxy import http

import translators
from addons import exchange
from addons.replies import error_response
from addons.settings import Settings
from translators.canonical import ChatRequest, ReasoningConfig
from translators.errors import ProxyError

# Client headers never forwarded: credentials (the proxy injects its own), hop-by-hop and
# framing headers, and anything the proxy itself uses.
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "accept-encoding",
        "proxy-connection",
    }
)


@dataclass
class Upstream:
    """Where and how the relay sends the request; credentials are added by the egress only."""

    url: str
    headers: dict[str, str]


class RouteRequests:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate":
            return
        router = self.settings.router
        if ex.surface == "proxy" and not (
            router.serves_family(ex.host_family or "") or router.is_explicit(ex.selector)
        ):
            # No backend of the addressed provider: the client's own credentials go through untouched.
            del flow.metadata[exchange.KEY]
            return
        try:
            ex.target = router.resolve(ex.selector, ex.host_family, ex.client_protocol)
            ex.passthrough = ex.target.protocol == ex.client_protocol and not ex.target.params
            body = self._passthrough_body(flow, ex) if ex.passthrough else self._translated_body(ex)
        except ProxyError as e:
            ex.error = e
            flow.response = error_response(ex.client_protocol, e)
            return
        if body is not None:
            flow.request.content = body
        sse = ex.gemini_sse if ex.passthrough else True
        dispatch(flow, ex, ex.target.url(ex.stream, sse=sse))

    @staticmethod
    def _passthrough_body(flow: http.HTTPFlow, ex: exchange.Exchange) -> bytes | None:
        return passthrough_body(ex)

    @staticmethod
    def _translated_body(ex: exchange.Exchange) -> bytes:
        client = translators.get(ex.client_protocol)
        request = client.parse_request(ex.body, model=ex.selector, stream=ex.stream)
        ex.request = request
        upstream_request = _apply_parameters(request, ex.target)
        return _dumps(translators.get(ex.target.protocol).render_request(upstream_request))



def passthrough_body(ex: exchange.Exchange) -> bytes | None:
    """None keeps the client's bytes; only a changed model name is written back (Gemini carries
    the model in the URL)."""
    if ex.client_protocol == "gemini" or ex.body.get("model") == ex.target.model:
        return None
    return _dumps({**ex.body, "model": ex.target.model})


def dispatch(flow: http.HTTPFlow, ex: exchange.Exchange, url: str) -> None:
    """Hand the flow to the egress: where it goes and with which headers (never a key here)."""
    target = ex.target
    headers = dict(target.family.extra_headers)
    if ex.passthrough:
        for name, value in flow.request.headers.items():
            if name.lower() not in DROPPED_HEADERS and not name.lower().startswith("x-llm-"):
                headers[name.lower()] = value
    else:
        headers["accept"] = "text/event-stream" if ex.stream else "application/json"
    headers["content-type"] = "application/json"
    ex.upstream_url = url
    ex.upstream = Upstream(url, headers)


def _apply_parameters(request: ChatRequest, target: Target) -> ChatRequest:
    update = {k: v for k, v in target.params.items() if k != "reasoning_effort"}
    if "reasoning_effort" in target.params:
        update["reasoning"] = ReasoningConfig(effort=target.params["reasoning_effort"])
    return request.model_copy(update={**update, "model": target.model})


def _dumps(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
