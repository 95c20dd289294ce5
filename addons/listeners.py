"""Default listeners: the API front door, the HTTPS proxy and the Anthropic-rooted port.

mitmproxy binds its servers before scripts load, so listeners can only be changed from
``running()`` (docs/mitm.md §2); a user's own ``--mode`` flags always win. The lazy connection
strategy lets the router redirect a flow before anything dials the original host.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http
from mitmproxy.proxy import mode_specs

logger = logging.getLogger(__name__)

FRONT_DOOR_PORT = 8000
PROXY_PORT = 8080
# Reverse listeners answer every request themselves or through the egress relay; the target is
# never dialled, so it only has to be a syntactically valid address.
UNUSED_TARGET = "http://127.0.0.1:9"


class Listeners:
    def load(self, loader) -> None:
        loader.add_option(
            "llm_anthropic_port",
            int,
            8001,
            "Port of the listener that serves the Anthropic Messages API at its root "
            "(ANTHROPIC_BASE_URL=http://127.0.0.1:PORT). 0 turns it off.",
        )

    def running(self) -> None:
        ctx.options.update(connection_strategy="lazy")
        if ctx.options.has_changed("mode"):
            return
        host = ctx.options.listen_host or "127.0.0.1"
        modes = [
            f"reverse:{UNUSED_TARGET}@{host}:{FRONT_DOOR_PORT}",
            f"regular@{host}:{ctx.options.listen_port or PROXY_PORT}",  # --listen-port moves the proxy
        ]
        if ctx.options.llm_anthropic_port:
            modes.append(f"reverse:{UNUSED_TARGET}@{host}:{ctx.options.llm_anthropic_port}")
        ctx.options.update(mode=modes)


def surface(flow: http.HTTPFlow) -> str:
    """Which kind of listener received the flow: "front_door", "anthropic_port" or "proxy"."""
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        port = ctx.options.llm_anthropic_port
        if port and mode.custom_listen_port == port:
            return "anthropic_port"
        return "front_door"
    return "proxy"
