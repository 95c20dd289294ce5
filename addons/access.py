"""Who is calling: proxy keys, the admin endpoints, and a slow-down for guessing.

The proxy injects real provider keys, so whoever reaches it spends the owner's money. With proxy
keys configured (``access.keys``; multi-user mode requires them) every request must present one
where its own protocol carries an API key (``CREDENTIAL_HEADERS``, ``?key=``); in HTTPS-proxy
mode the client's ``Authorization`` is its own provider credential, so the key comes as
``Proxy-Authorization`` on the CONNECT (or on a plain proxied request) and is remembered for the
client connection. The key is removed from the request before any other addon sees it, so it
cannot reach a provider, a capture or the Exchange's client headers; it is never logged.

The key is kept beside the flow (like the Exchange), never in ``flow.metadata``, which mitmproxy
serialises with saved flows.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from mitmproxy import connection, ctx, http
from mitmproxy.proxy import mode_specs

from addons import frontdoor, listeners
from addons.replies import error_response
from addons.settings import Settings
from backends.access import AccessConfig, ProxyKey
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

_KEYS: weakref.WeakKeyDictionary[http.HTTPFlow, ProxyKey] = weakref.WeakKeyDictionary()

# Where each client protocol carries its API key at the front door, with the value's prefix.
CREDENTIAL_HEADERS: dict[str, str] = {
    "authorization": "Bearer ",  # OpenAI SDKs, Gemini CLI's OpenAI route, curl
    "x-api-key": "",  # Anthropic SDK and Claude Code
    "x-goog-api-key": "",  # google-genai and Gemini CLI
}
QUERY_KEY = "key"  # Gemini's ?key=
# Admin operations: path prefix -> may a non-admin key call it (it then sees its own usage only).
ADMIN_PATHS: dict[str, bool] = {
    "/v1/diagnostics": False,
    "/metrics": False,
    "/v1/usage": True,
}
# The error envelope of an intercepted provider host.
HOST_PROTOCOLS = {"api.anthropic.com": "anthropic", "generativelanguage.googleapis.com": "gemini"}


def key_of(flow: http.HTTPFlow) -> ProxyKey | None:
    """The proxy key that authenticated this flow; None in single-user mode without keys."""
    return _KEYS.get(flow)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name


def find_key(config: AccessConfig, secret: str, name: str | None = None) -> ProxyKey | None:
    """The key whose secret this is, compared in constant time against every key."""
    found = None
    for key in config.keys:
        if hmac.compare_digest(key.key.encode(), secret.encode()):
            found = key
    if found is not None and name and name != found.name:
        return None
    return found


def proxy_credential(value: str) -> tuple[str | None, str] | None:
    """(name, secret) from ``Proxy-Authorization``: Basic ``name:key`` or Bearer ``key``."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() == "bearer" and token:
        return None, token.strip()
    if scheme.lower() == "basic":
        try:
            user, _, secret = base64.b64decode(token, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user or None, secret
    return None


@dataclass
class Strikes:
    failures: deque[float] = field(default_factory=deque)
    blocks: int = 0
    until: float = 0.0


class Slowdown:
    """Protects the keys from guessing: ``threshold`` failures from one address within ``window``
    seconds refuse that address for ``first`` seconds, doubling with each block up to ``longest``.
    A success clears the address."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        threshold: int = 5,
        window: float = 900,
        first: float = 30,
        longest: float = 3600,
    ) -> None:
        self.clock, self.threshold, self.window = clock, threshold, window
        self.first, self.longest = first, longest
        self._by_address: dict[str, Strikes] = {}

    def refused_for(self, address: str) -> float:
        """Seconds this address must still wait (0: it may try)."""
        strikes = self._by_address.get(address)
        return max(0.0, strikes.until - self.clock()) if strikes else 0.0

    def failed(self, address: str) -> None:
        now = self.clock()
        strikes = self._by_address.setdefault(address, Strikes())
        strikes.failures.append(now)
        while strikes.failures and strikes.failures[0] < now - self.window:
            strikes.failures.popleft()
        if len(strikes.failures) >= self.threshold:
            strikes.until = now + min(self.longest, self.first * 2**strikes.blocks)
            strikes.blocks += 1
            strikes.failures.clear()

    def succeeded(self, address: str) -> None:
        self._by_address.pop(address, None)


def client_protocol(flow: http.HTTPFlow, where: str) -> str:
    """The protocol whose error envelope the client understands."""
    path = flow.request.path.partition("?")[0]
    if where == "anthropic_port":
        return "anthropic"
    if where == "proxy":
        return HOST_PROTOCOLS.get(flow.request.pretty_host, "openai-chat")
    if endpoint := frontdoor.FRONT_DOOR.get((flow.request.method, path)):
        return endpoint.protocol
    if frontdoor.GEMINI_PATH.match(path):
        return "gemini"
    return frontdoor.protocol_for_path(path)


class Access:
    """Authenticates every request when keys are configured, keeps the admin endpoints to admins
    (to loopback clients without keys), and refuses to start an unprotected non-loopback listener."""

    def __init__(self, settings: Settings, slowdown: Slowdown | None = None) -> None:
        self.settings = settings
        self.slowdown = slowdown or Slowdown()
        self._connections: weakref.WeakKeyDictionary[connection.Client, ProxyKey] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def config(self) -> AccessConfig:
        return self.settings.config.access

    def running(self) -> None:
        if self.config.keys:
            return
        for spec in ctx.options.mode:
            mode = mode_specs.ProxyMode.parse(spec)
            host = mode.listen_host(ctx.options.listen_host)
            if not is_loopback(host):
                port = mode.listen_port(ctx.options.listen_port)
                # An error at start-up stops mitmdump with this line (mitmproxy's errorcheck).
                logger.error(
                    f"LLM access: the listener {spec} binds {host or '*'}:{port} beyond loopback, "
                    "and no proxy keys are configured: anyone who reaches it spends your provider "
                    "keys. Add access.keys to the configuration, or listen on 127.0.0.1."
                )
                return

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if not self.config.keys or flow.response:
            return
        key = self._proxy_key(flow)
        if key is not None:
            self._connections[flow.client_conn] = key

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        where = listeners.surface(flow)
        if where == "proxy":
            key = self._connections.get(flow.client_conn)
            if key is None and self.config.keys:
                key = self._proxy_key(flow)  # a plain-HTTP proxied request
                if key is None:
                    return
        else:
            key = self._front_door_key(flow, where)
            if key is None and self.config.keys:
                return
            self._admin_gate(flow, where, key)
        if key is not None:
            _KEYS[flow] = key

    def _front_door_key(self, flow: http.HTTPFlow, where: str) -> ProxyKey | None:
        if not self.config.keys:
            return None  # nothing to check: the client's placeholder is dropped by the egress
        secrets = []
        for header, prefix in CREDENTIAL_HEADERS.items():
            for value in flow.request.headers.get_all(header):
                secrets.append(value[len(prefix) :] if value.startswith(prefix) else value)
            flow.request.headers.pop(header, None)
        if QUERY_KEY in flow.request.query:
            secrets.extend(flow.request.query.get_all(QUERY_KEY))
            del flow.request.query[QUERY_KEY]
        return self._check(flow, client_protocol(flow, where), secrets[0] if secrets else None)

    def _proxy_key(self, flow: http.HTTPFlow) -> ProxyKey | None:
        value = flow.request.headers.pop("proxy-authorization", "")
        credential = proxy_credential(value) if value else None
        name, secret = credential if credential else (None, None)
        return self._check(flow, client_protocol(flow, "proxy"), secret, name, proxy=True)

    def _check(
        self,
        flow: http.HTTPFlow,
        protocol: str,
        secret: str | None,
        name: str | None = None,
        proxy: bool = False,
    ) -> ProxyKey | None:
        """The key for ``secret``, or None with the refusal set as the flow's response."""
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        if wait := self.slowdown.refused_for(address):
            message = f"too many failed proxy key attempts from {address}; retry in {round(wait)} s"
            error = ProxyError("unauthenticated", message, status=429, retry_after=wait)
            flow.response = error_response(protocol, error)
            return None
        key = find_key(self.config, secret, name) if secret else None
        if key is not None:
            self.slowdown.succeeded(address)
            return key
        self.slowdown.failed(address)
        where = "Proxy-Authorization" if proxy else "the API key"
        message = f"a valid proxy key is required in {where}" if secret is None else "invalid proxy key"
        flow.response = error_response(protocol, ProxyError("unauthenticated", message))
        if proxy:
            flow.response.status_code = 407  # what HTTP proxy clients answer with credentials
            flow.response.headers["proxy-authenticate"] = 'Basic realm="llm-proxy"'
        path = flow.request.path.partition("?")[0]
        logger.info(f"LLM access: refused {flow.request.method} {path} from {address}: {message}")
        return None

    def _admin_gate(self, flow: http.HTTPFlow, where: str, key: ProxyKey | None) -> None:
        path = flow.request.path.partition("?")[0]
        for prefix, open_to_keys in ADMIN_PATHS.items():
            if path == prefix or path.startswith(prefix + "/"):
                break
        else:
            return
        if key is None:
            peer = flow.client_conn.peername[0] if flow.client_conn.peername else ""
            allowed = is_loopback(peer)
            reason = f"{path} is answered to loopback clients only"
        else:
            allowed = key.admin or open_to_keys
            reason = f"{path} needs an admin key; {key.name} is not one"
        if not allowed:
            error = ProxyError("forbidden", reason)
            flow.response = error_response(client_protocol(flow, where), error)
