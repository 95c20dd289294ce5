"""Recognises LLM API calls, decodes their bodies and opens the flow's Exchange.

The listener and the request's host and path decide the client protocol. At the front door every
path is ours (unknown ones get a native 404); in HTTPS-proxy mode only the generation endpoints of
known provider hosts are taken, and everything else passes through untouched.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import unquote

from mitmproxy import http

from addons import access, exchange, listeners, models
from addons.replies import error_response
from addons.settings import Settings
from backends.families import GENERATE, family_for_host
from backends.presets import PRESETS
from translators import wire
from translators.errors import ProxyError

# google-genai calls /v1 by default, other Gemini clients /v1beta.
GEMINI_PATH = re.compile(
    r"^/v1(?:beta)?/models/(?P<model>.+):(?P<method>generateContent|streamGenerateContent|countTokens)$"
)
GEMINI_METHODS = {
    "generateContent": "generate",
    "streamGenerateContent": "generate",
    "countTokens": "count_tokens",
}


@dataclass(frozen=True)
class Endpoint:
    protocol: str
    kind: str  # "generate" | "count_tokens" | "models" | "websocket" | "compact" | "input_tokens"
    family: str | None = None  # the family a provider host's path belongs to, if not the host's


# (method, path) -> endpoint, per surface. Gemini paths carry the model and match GEMINI_PATH.
FRONT_DOOR: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): Endpoint("openai-chat", "generate"),
    ("POST", "/v1/responses"): Endpoint("openai-responses", "generate"),
    ("GET", "/v1/responses"): Endpoint("openai-responses", "websocket"),
    ("POST", "/v1/responses/compact"): Endpoint("openai-responses", "compact"),
    ("POST", "/v1/responses/input_tokens"): Endpoint("openai-responses", "input_tokens"),
    ("POST", "/v1/messages"): Endpoint("anthropic", "generate"),
    ("POST", "/anthropic/v1/messages"): Endpoint("anthropic", "generate"),
    ("POST", "/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    ("POST", "/anthropic/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    ("GET", "/v1/models"): Endpoint("openai-chat", "models"),
    ("GET", "/anthropic/v1/models"): Endpoint("anthropic", "models"),
    ("GET", "/v1beta/models"): Endpoint("gemini", "models"),
}
ANTHROPIC_PORT: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/messages"): Endpoint("anthropic", "generate"),
    ("POST", "/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    ("GET", "/v1/models"): Endpoint("anthropic", "models"),
}


def preset_hosts() -> dict[str, dict[tuple[str, str], Endpoint]]:
    """Each preset's generation endpoint under each of its ``https`` base URLs, marked with the
    preset (``api.deepseek.com`` serves two: Chat at the root, Messages under ``/anthropic``)."""
    hosts: dict[str, dict[tuple[str, str], Endpoint]] = {}
    for preset in PRESETS:
        for host, base in preset.intercepted:
            path = GENERATE[preset.protocol].format(base=base)
            hosts.setdefault(host, {})[("POST", path)] = Endpoint(preset.protocol, "generate", preset.name)
    return hosts


# Intercepted provider hosts: host -> (method, path) -> endpoint. Anything else on them passes.
PROVIDER_HOSTS: dict[str, dict[tuple[str, str], Endpoint]] = {
    "api.openai.com": {
        ("POST", "/v1/chat/completions"): Endpoint("openai-chat", "generate"),
        ("POST", "/v1/responses"): Endpoint("openai-responses", "generate"),
        ("GET", "/v1/responses"): Endpoint("openai-responses", "websocket"),
        ("POST", "/v1/responses/compact"): Endpoint("openai-responses", "compact"),
        ("POST", "/v1/responses/input_tokens"): Endpoint("openai-responses", "input_tokens"),
    },
    "api.anthropic.com": {
        ("POST", "/v1/messages"): Endpoint("anthropic", "generate"),
        ("POST", "/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    },
    "openrouter.ai": {("POST", "/api/v1/chat/completions"): Endpoint("openai-chat", "generate")},
    "generativelanguage.googleapis.com": {},
    **preset_hosts(),
}


def protocol_for_path(path: str) -> str:
    """The protocol whose error envelope suits an unknown front-door path."""
    if path.startswith("/anthropic/"):
        return "anthropic"
    if path.startswith("/v1beta/"):
        return "gemini"
    return "openai-chat"


def client_url(flow: http.HTTPFlow, where: str) -> str:
    """The URL the client called: a reverse listener rewrites the request to its (unused) target."""
    if where == "proxy":
        return flow.request.pretty_url
    host, port = flow.client_conn.sockname[:2]
    return f"http://{host}:{port}{flow.request.path}"


class FrontDoor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        where = listeners.surface(flow)
        path, _, query = flow.request.path.partition("?")
        method = flow.request.method
        host_family = None
        if where == "proxy":
            table = PROVIDER_HOSTS.get(flow.request.pretty_host)
            if table is None:
                return  # not an LLM host: tunnel untouched (docs/snags.md #24)
            host_family = family_for_host(flow.request.pretty_host).name
        else:
            table = ANTHROPIC_PORT if where == "anthropic_port" else FRONT_DOOR
        endpoint = table.get((method, path))
        if endpoint is not None and endpoint.family:
            host_family = endpoint.family
        gemini_model = None
        if endpoint is None and method == "POST" and (m := GEMINI_PATH.match(path)):
            if where != "anthropic_port" and host_family in (None, "gemini"):
                endpoint = Endpoint("gemini", GEMINI_METHODS[m["method"]])
                gemini_model = (unquote(m["model"]), m["method"] == "streamGenerateContent")
        if endpoint is None:
            if where != "proxy":
                protocol = "anthropic" if where == "anthropic_port" else protocol_for_path(path)
                message = f"{method} {path} is not an endpoint of this proxy"
                flow.response = error_response(protocol, ProxyError("not_found", message))
            return
        if endpoint.kind == "models":
            # google-genai lists at /v1/models too (its default API version): tell it by its headers.
            google = any(h in flow.request.headers for h in ("x-goog-api-key", "x-goog-api-client"))
            flow.metadata[models.KEY] = "gemini" if google else endpoint.protocol  # the catalog answers
            return
        if endpoint.kind == "websocket":
            # Codex tries a WebSocket first; a plain refusal makes it fall back to HTTPS at once.
            error = ProxyError(
                "invalid_request", "WebSocket transport is not supported; use HTTPS", status=426
            )
            flow.response = error_response(endpoint.protocol, error)
            return
        try:
            ex = self._open(flow, endpoint.protocol, where, host_family, gemini_model)
            ex.operation = endpoint.kind
            exchange.put(flow, ex)
        except ProxyError as e:
            flow.response = error_response(endpoint.protocol, e)

    def _open(
        self,
        flow: http.HTTPFlow,
        protocol: str,
        where: str,
        host_family: str | None,
        gemini_model: tuple[str, bool] | None,
    ) -> exchange.Exchange:
        started = time.time()
        content = flow.request.raw_content or b""
        limit = self.settings.config.max_request_bytes
        if len(content) > limit:
            raise ProxyError(
                "too_large", f"request body of {len(content)} bytes exceeds the limit of {limit} bytes"
            )
        try:
            body = wire.loads(flow.request.get_content(strict=False) or b"")
        except (ValueError, UnicodeDecodeError) as e:
            raise ProxyError("invalid_request", f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ProxyError("invalid_request", "request body must be a JSON object")
        if gemini_model is not None:
            selector, stream = gemini_model
            selector = selector.removeprefix("models/")
            gemini_sse = flow.request.query.get("alt") == "sse"
        else:
            selector, stream, gemini_sse = body.get("model"), body.get("stream") is True, True
            if not isinstance(selector, str) or not selector:
                raise ProxyError("invalid_request", "model: a model name is required", param="model")
        return exchange.Exchange(
            client_protocol=protocol,
            surface=where,
            body=body,
            stream=stream,
            selector=selector,
            gemini_sse=gemini_sse,
            host_family=host_family,
            started=started,
            client_url=client_url(flow, where),
            client_headers=exchange.header_dict(flow.request.headers),
            client_content=content,
            key=access.key_of(flow),
        )
