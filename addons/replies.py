"""Responses the suite answers itself: errors in the client's protocol, local JSON endpoints."""

from __future__ import annotations

from typing import Any

from mitmproxy import http

import translators
from translators import wire
from translators.errors import ProxyError


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
