"""Rebuild a ChatResponse from canonical stream events, incrementally."""

from __future__ import annotations

from translators.canonical import (
    ChatResponse,
    End,
    Event,
    MessageStart,
    Part,
    Reasoning,
    ReasoningDelta,
    Stop,
    StreamError,
    Text,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageUpdate,
)


class Assembler:
    """Accumulates events into parts; consecutive deltas of one kind join into one part."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.parts: list[Part] = []
        self.calls: dict[int, ToolCall] = {}
        self.arguments: dict[int, list[str]] = {}
        self.usage = Usage()
        self.stop: Stop | None = None
        self.error: dict | None = None

    def add(self, event: Event) -> None:
        match event:
            case MessageStart():
                self.id, self.model = event.id, event.model
                if event.usage:
                    self.usage = self.usage.merged(event.usage)
            case TextDelta():
                last = self.parts[-1] if self.parts else None
                if isinstance(last, Text):
                    last.text += event.text
                else:
                    self.parts.append(Text(text=event.text))
            case ReasoningDelta():
                last = self.parts[-1] if self.parts else None
                if isinstance(last, Reasoning) and last.signature is None and not last.redacted:
                    last.text += event.text
                    last.signature = event.signature
                    last.origin = last.origin or event.origin
                else:
                    self.parts.append(
                        Reasoning(
                            text=event.text,
                            signature=event.signature,
                            redacted=event.redacted,
                            origin=event.origin,
                        )
                    )
            case ToolCallStart():
                call = ToolCall(
                    id=event.id, name=event.name, arguments="", thought_signature=event.thought_signature
                )
                self.calls[event.index] = call
                self.arguments[event.index] = []
                self.parts.append(call)
            case ToolCallDelta():
                self.arguments.setdefault(event.index, []).append(event.arguments)
            case ToolCallEnd():
                self._finish_call(event.index)
            case UsageUpdate():
                self.usage = self.usage.merged(event.usage)
            case Stop():
                self.stop = event
            case StreamError():
                self.error = event.error
            case End():
                pass

    def _finish_call(self, index: int) -> None:
        call = self.calls.get(index)
        if call is not None and index in self.arguments:
            call.arguments = "".join(self.arguments.pop(index)) or "{}"

    def response(self) -> ChatResponse:
        for index in list(self.arguments):
            self._finish_call(index)
        parts = [p for p in self.parts if not (isinstance(p, Text) and not p.text)]
        return ChatResponse(
            id=self.id,
            model=self.model,
            content=parts,
            stop_reason=self.stop.reason if self.stop else None,
            stop_sequence=self.stop.stop_sequence if self.stop else None,
            usage=self.usage,
        )


def response_from_events(events: list[Event]) -> ChatResponse:
    """Assemble a full response from a decoded stream; used to check that a stream and a
    non-streamed answer agree (docs/snags.md #2), and by views and captures."""
    assembler = Assembler()
    for event in events:
        assembler.add(event)
    return assembler.response()
