"""Default listeners: the API front door, the HTTPS proxy and the Anthropic-rooted port.

mitmproxy binds its servers before scripts load, so listeners can only be changed from
``running()`` (docs/mitm.md §2); a user's own ``--mode`` flags always win. Two consequences of
that order, and what this module does about them (docs/mitm.md §2, "Start-up order"):

- The script loads, and is configured, after mitmproxy has read the listen addresses but before
  the sockets are bound. So the lazy connection strategy (which lets the router redirect a flow
  before anything dials the original host) is set at configure time: no connection is ever
  accepted under the default eager strategy.
- mitmproxy's default listener (``regular`` on ``*:8080``, or ``--listen-port``) is bound for a
  few milliseconds before ``running()`` replaces it, on every interface, and nothing a script
  does can stop that bind. Every connection that listener accepts is closed at once, so it never
  serves anything.
"""

from __future__ import annotations

import logging

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import mode_specs

logger = logging.getLogger(__name__)

FRONT_DOOR_PORT = 8000
PROXY_PORT = 8080
# Reverse listeners answer every request themselves or through the egress relay; the target is
# never dialled, so it only has to be a syntactically valid address.
UNUSED_TARGET = "http://127.0.0.1:9"


def suite_modes() -> list[str]:
    """The listeners the suite opens when the user gave no ``--mode``."""
    host = ctx.options.listen_host or "127.0.0.1"
    modes = [
        f"reverse:{UNUSED_TARGET}@{host}:{FRONT_DOOR_PORT}",
        f"regular@{host}:{ctx.options.listen_port or PROXY_PORT}",  # --listen-port moves the proxy
    ]
    if ctx.options.llm_anthropic_port:
        modes.append(f"reverse:{UNUSED_TARGET}@{host}:{ctx.options.llm_anthropic_port}")
    return modes


class Listeners:
    def __init__(self) -> None:
        # mitmproxy's own default modes, bound before the script loaded and replaced in running()
        self.transient: frozenset[str] = frozenset()

    def load(self, loader) -> None:
        loader.add_option(
            "llm_anthropic_port",
            int,
            8001,
            "Port of the listener that serves the Anthropic Messages API at its root "
            "(ANTHROPIC_BASE_URL=http://127.0.0.1:PORT). 0 turns it off.",
        )

    def configure(self, updated: set[str]) -> None:
        # The option belongs to mitmproxy's proxy server addon (absent where none runs: tests).
        if "connection_strategy" in ctx.options and ctx.options.connection_strategy != "lazy":
            ctx.options.update(connection_strategy="lazy")
        if "mode" in updated and not ctx.options.has_changed("mode"):
            self.transient = frozenset(ctx.options.mode)

    def running(self) -> None:
        if not ctx.options.has_changed("mode"):
            ctx.options.update(mode=suite_modes())

    def client_connected(self, client: connection.Client) -> None:
        if client.proxy_mode.full_spec in self.transient:
            client.error = "mitmproxy's default listener, replaced by the suite's own at start-up"


def surface(flow: http.HTTPFlow) -> str:
    """Which kind of listener received the flow: "front_door", "anthropic_port" or "proxy"."""
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        port = ctx.options.llm_anthropic_port
        if port and mode.custom_listen_port == port:
            return "anthropic_port"
        return "front_door"
    return "proxy"
