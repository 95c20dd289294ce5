"""Last in the request chain: a front-door flow that nothing answered or dispatched gets a clean
native error instead of mitmproxy's HTML 502 from the unused reverse target.

It only fires when an addon failed (mitmproxy logs the exception and carries on), so users see
"the proxy failed" in their SDK's terms rather than a hang or an HTML page.
"""

from __future__ import annotations

from mitmproxy import http

from addons import exchange, listeners
from addons.egress import RELAY_HEADER
from addons.frontdoor import protocol_for_path
from addons.replies import error_response
from translators.errors import ProxyError


class Fallback:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or RELAY_HEADER in flow.request.headers:
            return
        ex = exchange.get(flow)
        if ex is None and listeners.surface(flow) == "proxy":
            return  # ordinary intercepted traffic
        if ex:
            protocol = ex.client_protocol
        elif listeners.surface(flow) == "anthropic_port":
            protocol = "anthropic"
        else:
            protocol = protocol_for_path(flow.request.path)
        error = ProxyError("internal", "the proxy failed to handle this request; see the proxy log")
        flow.response = error_response(protocol, error)
