"""Chooses each LLM flow's backends, in failover order.

Only the choice happens here: request stages (policies) then see the chosen model before anything
is rendered, and the egress prepares each target's request (``addons.upstream``) as it tries it.
"""

from __future__ import annotations

from mitmproxy import http

from addons import exchange
from addons.replies import error_response
from addons.settings import Settings
from backends.routing import Route
from translators.errors import ProxyError

ROUTE_HEADER = "x-llm-route"


def choose(flow: http.HTTPFlow, ex: exchange.Exchange, settings: Settings, protocol: str) -> Route | None:
    """The flow's route for a client speaking ``protocol`` (raises ProxyError), or None when it is
    not the proxy's to route: in HTTPS-proxy mode with no backend of the addressed provider the
    exchange is dropped and the client's own credentials go through untouched."""
    router = settings.router
    override = flow.request.headers.get(ROUTE_HEADER)
    if (
        ex.surface == "proxy"
        and not override
        and not (router.serves_family(ex.host_family or "") or router.is_explicit(ex.selector))
    ):
        exchange.drop(flow)
        return None
    return router.route(
        ex.selector,
        host_family=ex.host_family,
        client_protocol=protocol,
        surface=ex.surface,
        override=override,
    )


class RouteRequests:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate":
            return
        try:
            route = choose(flow, ex, self.settings, ex.client_protocol)
        except ProxyError as e:
            flow.response = error_response(ex.client_protocol, ex.fail(e))
            return
        if route is not None:
            ex.defaults, ex.candidates = route.defaults, route.targets
            ex.target = route.targets[0]
