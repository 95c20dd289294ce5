"""Incremental Server-Sent Events framing shared by every protocol module.

Works on bytes so that chunk boundaries may fall anywhere, inside a line or inside a multi-byte
UTF-8 character; an event is decoded only once its blank line has arrived.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from translators.wire import dumps_text


class SSEEvent(NamedTuple):
    event: str | None
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Complete events in ``chunk`` plus what was buffered; an incomplete tail is kept."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            # A lone trailing \r may be half of \r\n: keep it until the next chunk decides.
            tail_cr = buffer.endswith(b"\r")
            buffer = buffer[:-1] if tail_cr else buffer
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if tail_cr:
                buffer += b"\r"
        *blocks, self._buffer = buffer.split(b"\n\n")
        return [event for block in blocks if (event := _parse_block(block)) is not None]

    def close(self) -> list[SSEEvent]:
        """Flush a final event whose terminating blank line never came."""
        rest, self._buffer = self._buffer.rstrip(b"\r"), b""
        event = _parse_block(rest.replace(b"\r\n", b"\n")) if rest.strip() else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    event: str | None = None
    data: list[str] = []
    for raw in block.split(b"\n"):
        if not raw or raw.startswith(b":"):
            continue
        line = raw.decode("utf-8", "replace")
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if not data and event is None:
        return None
    return SSEEvent(event, "\n".join(data))


def format_event(data: Any, event: str | None = None) -> bytes:
    """One SSE event; ``data`` that is not already a string is compact JSON."""
    if not isinstance(data, str):
        data = dumps_text(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()
