"""The driving loops every protocol's ``StreamDecoder`` and ``StreamEncoder`` share.

The contract (``translators.protocol``) is the same for all of them: nothing is decoded or encoded
after the terminal event, ``close()`` ends a stream that never got one, and a decoder's stream ends
in exactly one ``End`` or ``StreamError``. These bases hold that contract once; a protocol module
supplies only what one SSE event or one canonical event means to it.
"""

from __future__ import annotations

from translators.canonical import End, Event, StreamError
from translators.errors import ProxyError
from translators.sse import SSEEvent, SSEParser
from translators.wire import broken_off


class SSEDecoder:
    """Feeds SSE events to ``_on_event`` until the stream finished. ``close`` ends a stream whose
    terminal event never came: with ``_end`` when the provider already gave a stop reason
    (``_stopped``), else as broken off."""

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._stopped = False
        self._finished = False

    def feed(self, chunk: bytes) -> list[Event]:
        return self._decode(self._sse.feed(chunk))

    def close(self) -> list[Event]:
        events = self._decode(self._sse.close())
        if not self._finished:
            if self._stopped:
                self._end(events)
            else:
                self._fail(events, None)
        return events

    def _decode(self, frames: list[SSEEvent]) -> list[Event]:
        events: list[Event] = []
        for frame in frames:
            if self._finished:
                break
            self._on_event(frame, events)
        return events

    def _on_event(self, frame: SSEEvent, events: list[Event]) -> None:
        raise NotImplementedError

    def _end(self, events: list[Event]) -> None:
        events.append(End())
        self._finished = True

    def _fail(self, events: list[Event], error: ProxyError | None) -> None:
        """End with ``error``, or (None) as broken off."""
        events.append(StreamError(error=error.to_dict()) if error else broken_off())
        self._finished = True


class Encoder:
    """Feeds canonical events to ``_on_event`` until the stream finished; ``close`` calls
    ``_finish`` for a stream that got no End (or StreamError)."""

    def __init__(self) -> None:
        self._finished = False

    def encode(self, events: list[Event]) -> bytes:
        out: list[bytes] = []
        for event in events:
            if self._finished:
                break
            self._on_event(event, out)
        return b"".join(out)

    def close(self) -> bytes:
        out: list[bytes] = []
        if not self._finished:
            self._finish(out)
        return b"".join(out)

    def _on_event(self, event: Event, out: list[bytes]) -> None:
        raise NotImplementedError

    def _finish(self, out: list[bytes]) -> None:
        raise NotImplementedError
