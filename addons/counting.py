"""Token counting endpoints: Anthropic ``/v1/messages/count_tokens`` and Gemini ``:countTokens``.

Forwarded to the provider when the target speaks the client's protocol and can count; otherwise
answered locally with an estimate (docs/snags.md #21: a non-Anthropic target must not turn Claude
Code's count calls into 404s), labelled as such in ``x-llm-token-count``.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from addons import exchange
from addons.replies import error_response, json_response
from addons.settings import Settings
from addons.upstream import prepare
from translators import tokens
from translators.errors import ProxyError


def count_body(protocol: str, count: int) -> dict[str, Any]:
    if protocol == "gemini":
        return {"totalTokens": count}
    return {"input_tokens": count}


class CountTokens:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "count_tokens":
            return
        try:
            target = self.settings.router.resolve(ex.selector, ex.host_family, ex.client_protocol)
            ex.target, ex.candidates = target, [target]
            url = target.family.count_tokens_url(target.backend.base_url, target.model)
            # A request a stage rewrote (the sessions' command text removed) is estimated here:
            # forwarding sends the client's own bytes.
            if url and target.protocol == ex.client_protocol and not ex.rewritten:
                upstream = prepare(ex, target)
                upstream.url = url
                ex.commit(upstream)
                if upstream.body is not None:
                    flow.request.content = upstream.body
                return
            count = tokens.count_request(ex.canonical())
        except ProxyError as e:
            flow.response = error_response(ex.client_protocol, ex.fail(e))
            return
        method = f"tiktoken {tokens.ENCODING}" if tokens.is_exact() else "characters/4"
        flow.response = json_response(
            200, count_body(ex.client_protocol, count), {"x-llm-token-count": f"estimated; {method}"}
        )
