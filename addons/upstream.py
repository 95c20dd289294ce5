"""Chooses each LLM flow's backends, in order, and prepares the request each would get.

Same protocol on both sides and nothing to rewrite → the client's body goes upstream as it came
(only the model name changes when it differs). Otherwise the body is parsed to the canonical
request once and rendered for the target's protocol. The first target is prepared here; the
egress relay prepares the others only if it has to fail over to them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from mitmproxy import http

import translators
from addons import exchange
from addons.replies import error_response
from addons.settings import Settings
from backends.routing import Target
from translators.canonical import ChatRequest, ReasoningConfig
from translators.errors import ProxyError

ROUTE_HEADER = "x-llm-route"
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
REQUEST_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "seed", "frequency_penalty", "presence_penalty")


@dataclass
class Upstream:
    """One target's request: where, which headers (credentials are added by the egress only),
    the body (None: the client's bytes unchanged) and whether it passes through untranslated."""

    target: Target
    url: str
    headers: dict[str, str]
    body: bytes | None
    passthrough: bool


class RouteRequests:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate":
            return
        router = self.settings.router
        override = flow.request.headers.get(ROUTE_HEADER)
        if ex.surface == "proxy" and not override and not (
            router.serves_family(ex.host_family or "") or router.is_explicit(ex.selector)
        ):
            # No backend of the addressed provider: the client's own credentials go through untouched.
            exchange.drop(flow)
            return
        try:
            route = router.route(
                ex.selector,
                host_family=ex.host_family,
                client_protocol=ex.client_protocol,
                surface=ex.surface,
                override=override,
            )
            ex.defaults, ex.candidates = route.defaults, route.targets
            upstream = prepare(ex, route.targets[0])
        except ProxyError as e:
            ex.error = e
            flow.response = error_response(ex.client_protocol, e)
            return
        if upstream.body is not None:
            flow.request.content = upstream.body
        commit(ex, upstream)
        exchange.publish(flow)


def commit(ex: exchange.Exchange, upstream: Upstream) -> None:
    """Make ``upstream`` the flow's current target (the egress calls this again on failover)."""
    ex.target, ex.passthrough, ex.upstream_url, ex.upstream = (
        upstream.target,
        upstream.passthrough,
        upstream.url,
        upstream,
    )


def prepare(ex: exchange.Exchange, target: Target) -> Upstream:
    passthrough = target.protocol == ex.client_protocol and not target.params and not ex.defaults
    if passthrough:
        body = None
        if ex.client_protocol != "gemini" and ex.body.get("model") != target.model:
            body = _dumps({**ex.body, "model": target.model})
    else:
        if ex.request is None:
            client = translators.get(ex.client_protocol)
            ex.request = client.parse_request(ex.body, model=ex.selector, stream=ex.stream)
        request = _with_parameters(ex.request, target, ex.defaults)
        body = _dumps(translators.get(target.protocol).render_request(request))
    url = target.url(ex.stream, sse=ex.gemini_sse if passthrough else True)
    return Upstream(target, url, upstream_headers(ex, target, passthrough), body, passthrough)


def upstream_headers(ex: exchange.Exchange, target: Target, passthrough: bool) -> dict[str, str]:
    headers = dict(target.family.extra_headers)
    if passthrough:
        for name, value in ex.client_headers.items():
            if name.lower() not in DROPPED_HEADERS and not name.lower().startswith("x-llm-"):
                headers[name.lower()] = value
    else:
        headers["accept"] = "text/event-stream" if ex.stream else "application/json"
    headers["content-type"] = "application/json"
    return headers


def _with_parameters(request: ChatRequest, target: Target, defaults: dict) -> ChatRequest:
    """Selector parameters override the request; route-rule parameters fill what it left unset."""
    update = {k: v for k, v in defaults.items() if k in REQUEST_FIELDS and getattr(request, k) is None}
    if "reasoning_effort" in defaults and request.reasoning is None:
        update["reasoning"] = ReasoningConfig(effort=str(defaults["reasoning_effort"]))
    update.update({k: v for k, v in target.params.items() if k != "reasoning_effort"})
    if "reasoning_effort" in target.params:
        update["reasoning"] = ReasoningConfig(effort=target.params["reasoning_effort"])
    return request.model_copy(update={**update, "model": target.model})


def _dumps(body: object) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
