"""The one carrier of LLM state on a flow.

Each addon reads and writes its own part; nothing else passes state between addons. The live
object is kept beside the flow (``get``/``put``) rather than inside it, because mitmproxy
serialises ``flow.metadata`` when flows are saved (``-w``, mitmweb's save) and only plain data
survives that: ``flow.metadata["llm"]`` holds a plain summary of the exchange instead.
"""

from __future__ import annotations

import itertools
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

import translators
from addons.stages import EventStage
from addons.upstream import Upstream
from backends.access import ProxyKey
from backends.routing import Target
from backends.sessions import Session
from policies.gate import Decision
from translators import wire
from translators.canonical import (
    ChatRequest,
    ChatResponse,
    Event,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    Usage,
)
from translators.errors import ProxyError

KEY = "llm"
# Where each client protocol names its end user (the canonical ``ChatRequest.user``), in order.
USER_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "openai-chat": (("safety_identifier",), ("user",)),
    "openai-responses": (("safety_identifier",), ("user",)),
    "anthropic": (("metadata", "user_id"),),
}


# Leg ids: a random prefix per process and a counter, unique without a system call per attempt.
LEG_PREFIX = uuid.uuid4().hex[:10]
LEG_NUMBERS = itertools.count(1)


@dataclass
class Attempt:
    instance: str
    model: str
    url: str
    status: int | None = None
    error: str | None = None
    # The proxy's own id of this upstream leg (B2BUA: one per attempt, never the client's ids).
    leg: str = field(default_factory=lambda: f"{LEG_PREFIX}{next(LEG_NUMBERS):06x}")


@dataclass
class CallRecord:
    """One tool call of the answer as the client received it."""

    id: str
    name: str
    arguments: list[str] = field(default_factory=list)  # the argument pieces as they streamed


@dataclass
class Output:
    """What the model said, as the client received it: text, reasoning and tool calls by index
    (for estimates, usage and policies; never flattened into one list)."""

    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, CallRecord] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.text or self.reasoning or self.tool_calls)

    def add(self, event: Event) -> None:
        match event:
            case TextDelta():
                self.text.append(event.text)
            case ReasoningDelta():
                self.reasoning.append(event.text)
            case ToolCallStart():
                self.tool_calls[event.index] = CallRecord(event.id, event.name)
            case ToolCallDelta() if event.index in self.tool_calls:
                self.tool_calls[event.index].arguments.append(event.arguments)

    def generated_text(self) -> str:
        """Everything the model generated, as one text (for a local output-token estimate)."""
        calls = [c.name + "".join(c.arguments) for c in self.tool_calls.values()]
        return "".join(self.reasoning) + "".join(self.text) + "".join(calls)


@dataclass(repr=False)
class Exchange:
    client_protocol: str  # translators NAME the client speaks
    surface: str  # "front_door" | "anthropic_port" | "proxy"
    body: Any  # the client's decoded JSON body
    stream: bool
    selector: str  # the model the client asked for, as sent
    operation: str = "generate"  # or "count_tokens"
    # The request as the client sent it (the upstream stage may replace the flow's body and the
    # egress its URL and headers); kept by reference, not copied.
    client_url: str = ""
    client_headers: dict[str, str] = field(default_factory=dict)
    client_content: bytes = b""
    gemini_sse: bool = True  # Gemini clients without ?alt=sse get a streamed JSON array
    host_family: str | None = None  # family of the host an intercepted client addressed
    key: ProxyKey | None = None  # the proxy key that authenticated the request (addons/access.py)
    session: Session | None = None  # the conversation this request continues (addons/sessions.py)
    # The canonical request: parsed on first use (``canonical``) and cached; a request stage that
    # changes it sets ``rewritten``, which takes the flow off the byte-for-byte fast path.
    request: ChatRequest | None = None
    rewritten: bool = False
    end_user: str | None = None  # kept when the decoded body is let go (``release_body``)
    target: Target | None = None  # the current (finally: the answering) target
    upstream: Upstream | None = None  # the current target's request, consumed by the egress
    candidates: list[Target] = field(default_factory=list)  # targets in failover order
    defaults: dict[str, Any] = field(default_factory=dict)  # parameter defaults from route rules
    # Between the answer's decoder and the client's encoder, in order (docs/architecture.md).
    event_stages: list[EventStage] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)  # policy verdicts other than allow
    # Calls the proxy made for this flow beside the answer itself (the verifier's): recorded in
    # usage and capture, never answered to the client.
    side_calls: list[Exchange] = field(default_factory=list)
    # Set by the verifier when this turn is checked: the egress relay hands it a stream's outcome
    # before relaying it, and sends on the outcome it returns (addons/verifier.py).
    review: Callable[[Any], Awaitable[Any]] | None = None
    usage: Usage | None = None  # as the provider reported it (None: not reported)
    # The provider's answer before translation (non-streamed bodies only).
    upstream_status: int | None = None
    upstream_content: bytes | None = None
    # The provider's whole answer, parsed (``answer``), with the bytes it was parsed from.
    parsed_answer: tuple[bytes, ChatResponse] | None = None
    output: Output = field(default_factory=Output)
    first_token: float | None = None  # when the first content event arrived
    error: ProxyError | None = None  # set through ``fail`` only
    started: float = field(default_factory=time.time)
    first_byte: float | None = None
    ended: float | None = None
    # The client was sent the protocol's final event ([DONE], message_stop, …): hanging up after
    # it is how SDKs end a stream, not an abort (addons/translate.py).
    delivered: bool = False
    cut: bool = False  # a stage ended the answer early: the relay closes the provider's response

    @property
    def backend_protocol(self) -> str:
        return self.target.protocol if self.target else self.client_protocol

    @property
    def passthrough(self) -> bool:
        """Same protocol, nothing to rewrite: the client's bytes go upstream untouched."""
        return self.upstream.passthrough if self.upstream else False

    @property
    def upstream_url(self) -> str:
        return self.upstream.url if self.upstream else ""

    def canonical(self) -> ChatRequest:
        """The client's request in canonical form, parsed once (raises ProxyError)."""
        if self.request is None:
            body = self.body if self.body is not None else wire.loads(self.client_content)
            if self.operation == "count_tokens":
                body = generation_body(self.client_protocol, body)
            module = translators.get(self.client_protocol)
            self.request = module.parse_request(body, model=self.selector, stream=self.stream)
        return self.request

    def answer(self, content: bytes) -> ChatResponse:
        """The provider's whole answer ``content``, parsed once for every reader (the policies'
        checks and the translation); raises ValueError or ProxyError when it is unreadable."""
        cached = self.parsed_answer
        if cached is None or cached[0] is not content:
            parsed = translators.get(self.backend_protocol).parse_response(wire.loads(content))
            self.parsed_answer = cached = (content, parsed)
        return cached[1]

    def release_body(self) -> None:
        """Let the decoded body go while the answer streams: an agent's conversation decodes to
        several times its JSON size, held by every open stream for nothing. What is still read
        later is kept (the end user) or decoded again from the client's bytes (``canonical``);
        a compressed body, whose bytes cannot be decoded as they are, is kept."""
        if self.body is not None and "content-encoding" not in {k.lower() for k in self.client_headers}:
            self.end_user = self.client_user()
            self.body = None

    def client_user(self) -> str | None:
        """The end user the request names, read from the decoded body: identifying a client must
        not cost a parse of an agent's whole conversation."""
        if self.request is not None:
            return self.request.user
        if self.body is None:
            return self.end_user
        for path in USER_FIELDS.get(self.client_protocol, ()):
            value: Any = self.body
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value:
                return value
        return None

    def rewrite(self, request: ChatRequest) -> None:
        """A request stage's result; an unchanged request (the same object) keeps the fast path."""
        if request is not self.canonical():
            self.request, self.rewritten = request, True

    def commit(self, upstream: Upstream) -> None:
        """Make ``upstream`` the current target (the egress calls this again on failover)."""
        self.target, self.upstream = upstream.target, upstream

    def fail(self, error: ProxyError) -> ProxyError:
        """Record why the exchange failed (the last failure wins) and hand the error back."""
        self.error = error
        return error

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
            "decisions": [vars(d).copy() for d in self.decisions],
        }


def generation_body(protocol: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body of a count call as a generation body (count bodies lack generation fields)."""
    if protocol == "anthropic":
        return {**body, "max_tokens": 1}
    if protocol == "gemini" and isinstance(body.get("generateContentRequest"), dict):
        return body["generateContentRequest"]
    return body


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


def header_dict(headers: http.Headers) -> dict[str, str]:
    """``dict(headers.items())`` in one pass over the fields (mitmproxy looks each name up by
    scanning every field, lowercasing each): names as first written, repeated ones folded with
    ", " as mitmproxy folds them."""
    folded: dict[str, str] = {}
    written: dict[str, str] = {}  # lowercased name -> the name as first written
    for raw_name, raw_value in headers.fields:
        name = raw_name.decode("utf-8", "surrogateescape")
        value = raw_value.decode("utf-8", "surrogateescape")
        key = written.setdefault(name.lower(), name)
        folded[key] = f"{folded[key]}, {value}" if key in folded else value
    return folded
