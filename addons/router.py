"""Chooses each LLM flow's backends, in failover order.

Only the choice happens here: request stages (policies) then see the chosen model before anything
is rendered, and the egress prepares each target's request (``addons.upstream``) as it tries it.
"""

from __future__ import annotations

from mitmproxy import http

from addons import exchange
from addons.replies import error_response
from addons.settings import Settings
from translators.errors import ProxyError

ROUTE_HEADER = "x-llm-route"


class RouteRequests:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate":
            return
        router = self.settings.router
        override = flow.request.headers.get(ROUTE_HEADER)
        if (
            ex.surface == "proxy"
            and not override
            and not (router.serves_family(ex.host_family or "") or router.is_explicit(ex.selector))
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
        except ProxyError as e:
            flow.response = error_response(ex.client_protocol, ex.fail(e))
            return
        ex.defaults, ex.candidates = route.defaults, route.targets
        ex.target = route.targets[0]
