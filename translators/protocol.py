"""The surface every protocol module (openai_chat, openai_responses, anthropic, gemini) offers.

A module is used as a value of type ``ProtocolModule``; these Protocols exist for type checkers
and as the contract the tests hold each module to.

Contract details shared by all modules:

- ``parse_request`` raises ``ProxyError("invalid_request", …)`` whose message names the offending
  key path (``messages[2].content[0].type: unknown part type 'foo'``) for a body of the wrong shape.
  It accepts what the official SDKs really send (docs/wire.md), ignores unknown keys, and never
  raises anything but ProxyError.
- ``render_request`` produces the body for that protocol's provider, dropping what the target
  cannot express rather than sending something it rejects; it never mutates its input.
- ``StreamDecoder.feed`` takes raw upstream bytes cut anywhere (inside SSE lines, inside UTF-8
  characters) and returns the canonical events completed by them; ``close()`` is called once at
  end of body and emits the rest, ending with exactly one ``End`` (or a ``StreamError`` when the
  stream broke off before its terminal marker without a stop reason). An in-band provider error
  becomes ``StreamError``. All state lives on the instance.
- ``StreamEncoder.encode`` takes canonical events and returns the client-protocol bytes for them
  (``b""`` when an event produces nothing yet — e.g. held until usage arrives); ``close()`` returns
  whatever must still be sent at end of stream (closing blocks, the terminal event) if ``End`` or
  ``StreamError`` never came. After ``End`` / ``StreamError`` it emits nothing more.
- ``render_error`` gives ``(status, body)`` in the protocol's error envelope; ``parse_error`` reads a
  provider error body (any bytes, possibly not JSON) of that protocol into a ProxyError keeping the
  status and the provider's message.
"""

from __future__ import annotations

from typing import Any, Protocol

from translators.canonical import ChatRequest, ChatResponse, Event
from translators.errors import ProxyError


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[Event]: ...
    def close(self) -> list[Event]: ...


class StreamEncoder(Protocol):
    def encode(self, events: list[Event]) -> bytes: ...
    def close(self) -> bytes: ...


class ProtocolModule(Protocol):
    NAME: str
    STREAM_CONTENT_TYPE: str

    def parse_request(
        self, body: Any, *, model: str | None = None, stream: bool | None = None
    ) -> ChatRequest: ...
    def render_request(self, request: ChatRequest) -> dict[str, Any]: ...
    def parse_response(self, body: Any) -> ChatResponse: ...
    def render_response(self, response: ChatResponse, request: ChatRequest) -> dict[str, Any]: ...
    def StreamDecoder(self) -> StreamDecoder: ...
    def StreamEncoder(self, request: ChatRequest) -> StreamEncoder: ...
    def parse_error(self, status: int, body: bytes) -> ProxyError: ...
    def render_error(self, error: ProxyError) -> tuple[int, bytes]: ...
