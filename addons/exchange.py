"""The one carrier of LLM state on a flow.

Each addon reads and writes its own part; nothing else passes state between addons. The live
object is kept beside the flow (``get``/``put``) rather than inside it, because mitmproxy
serialises ``flow.metadata`` when flows are saved (``-w``, mitmweb's save) and only plain data
survives that: ``flow.metadata["llm"]`` holds a plain summary of the exchange instead.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from backends.routing import Target
from translators.canonical import ChatRequest, Usage
from translators.errors import ProxyError

KEY = "llm"


@dataclass
class Attempt:
    instance: str
    model: str
    url: str
    status: int | None = None
    error: str | None = None


@dataclass(repr=False)
class Exchange:
    client_protocol: str  # translators NAME the client speaks
    surface: str  # "front_door" | "anthropic_port" | "proxy"
    body: Any  # the client's decoded JSON body
    stream: bool
    selector: str  # the model the client asked for, as sent
    operation: str = "generate"  # or "count_tokens"
    # The request as the client sent it (the router may replace the flow's body and the egress
    # its URL and headers); kept by reference, not copied.
    client_url: str = ""
    client_headers: dict[str, str] = field(default_factory=dict)
    client_content: bytes = b""
    gemini_sse: bool = True  # Gemini clients without ?alt=sse get a streamed JSON array
    host_family: str | None = None  # family of the host an intercepted client addressed
    request: ChatRequest | None = None  # canonical request, parsed only when translating
    target: Target | None = None
    passthrough: bool = False  # same protocol, nothing to rewrite: bytes go through untouched
    upstream_url: str = ""
    upstream: Any = None  # addons.router.Upstream of the current target, consumed by the egress
    candidates: list[Target] = field(default_factory=list)  # targets in failover order
    defaults: dict[str, Any] = field(default_factory=dict)  # parameter defaults from route rules
    attempts: list[Attempt] = field(default_factory=list)
    usage: Usage | None = None  # as the provider reported it (None: not reported)
    # The provider's answer before translation (non-streamed bodies only).
    upstream_status: int | None = None
    upstream_content: bytes | None = None
    # What the model said, in pieces (text, tool arguments, reasoning), for estimates and policies.
    output_parts: list[str] = field(default_factory=list)
    first_token: float | None = None  # when the first content event arrived
    error: ProxyError | None = None
    started: float = field(default_factory=time.time)
    first_byte: float | None = None
    ended: float | None = None

    @property
    def backend_protocol(self) -> str:
        return self.target.protocol if self.target else self.client_protocol

    def __repr__(self) -> str:
        target = f"{self.target.instance}:{self.target.model}" if self.target else "unrouted"
        return f"Exchange({self.client_protocol} → {target}, stream={self.stream})"

    def summary(self) -> dict[str, Any]:
        """Plain data for ``flow.metadata`` (saved with the flow; never a key or a body)."""
        return {
            "client_protocol": self.client_protocol,
            "surface": self.surface,
            "operation": self.operation,
            "selector": self.selector,
            "stream": self.stream,
            "backend": self.target.instance if self.target else None,
            "model": self.target.model if self.target else None,
            "backend_protocol": self.backend_protocol,
            "passthrough": self.passthrough,
            "upstream_url": self.upstream_url,
            "attempts": [vars(a).copy() for a in self.attempts],
            "usage": self.usage.model_dump(exclude_none=True) if self.usage else None,
            "error": self.error.to_dict() if self.error else None,
        }


_LIVE: weakref.WeakKeyDictionary[http.HTTPFlow, Exchange] = weakref.WeakKeyDictionary()


def get(flow: http.HTTPFlow) -> Exchange | None:
    return _LIVE.get(flow)


def put(flow: http.HTTPFlow, ex: Exchange) -> None:
    _LIVE[flow] = ex
    publish(flow)


def publish(flow: http.HTTPFlow) -> None:
    """Refresh the plain summary in ``flow.metadata`` (after routing, at the end)."""
    if (ex := _LIVE.get(flow)) is not None:
        flow.metadata[KEY] = ex.summary()


def drop(flow: http.HTTPFlow) -> None:
    _LIVE.pop(flow, None)
    flow.metadata.pop(KEY, None)
