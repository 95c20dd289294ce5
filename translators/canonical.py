"""The canonical representation every protocol module parses into and renders from.

One model for requests, responses and stream events, so that N protocols need N parsers and N
renderers, never N×N converters. Semantics are normalised here, once:

- ``Usage.input_tokens`` counts *all* prompt tokens, cached ones included (OpenAI's convention);
  ``output_tokens`` includes reasoning tokens. ``None`` means unknown, never zero.
- Tool-call ``arguments`` are JSON text, as OpenAI sends them; protocols that want an object parse
  it with ``translators.wire.parse_arguments``.
- System prompts live in ``ChatRequest.system``; parsers hoist system/developer messages there.
- Tool results are ``ToolResult`` parts inside a ``user`` message (Anthropic's shape); protocols
  that want one message per result split them when rendering.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- content parts --------------------------------------------------------------------------------


class Text(_Model):
    type: Literal["text"] = "text"
    text: str
    # Anthropic prompt-cache marker, kept on same-family routes (docs/snags.md #18).
    cache_control: dict[str, Any] | None = None


class Image(_Model):
    """An image, either inline (``data`` base64 without a ``data:`` prefix) or by ``url``."""

    type: Literal["image"] = "image"
    media_type: str | None = None
    data: str | None = None
    url: str | None = None
    detail: str | None = None


class ToolCall(_Model):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: str = "{}"
    # Gemini's thoughtSignature for this call, echoed on the next turn (docs/snags.md #14).
    thought_signature: str | None = None


class ToolResult(_Model):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    # Known when the client protocol carries it (Gemini); renderers that need it look it up
    # in the conversation's earlier ToolCall with the same id.
    name: str | None = None
    content: list[Text | Image] = Field(default_factory=list)
    is_error: bool = False


class Reasoning(_Model):
    """Thinking / reasoning content.

    ``signature`` is byte-exact and bound to the protocol that produced it (``origin``): a renderer
    for another protocol drops the signature (and signature-only blocks) instead of sending it on.
    ``redacted`` marks Anthropic ``redacted_thinking`` (its ``data`` travels in ``signature``).
    """

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    origin: str | None = None


# The parts of a message are told apart by ``type``. A callable discriminator, not
# ``Field(discriminator="type")``: with a field name, pydantic-core first asks whether each part is a
# ``collections.abc.Mapping``, an ABC check in Python for every part the parsers build (about 7% of
# the proxy's CPU on a 2 MB translated request; docs/architecture.md "Performance").
def _part_type(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


Part = Annotated[
    Annotated[Text, Tag("text")]
    | Annotated[Image, Tag("image")]
    | Annotated[ToolCall, Tag("tool_call")]
    | Annotated[ToolResult, Tag("tool_result")]
    | Annotated[Reasoning, Tag("reasoning")],
    Discriminator(_part_type),
]


class Message(_Model):
    role: Literal["user", "assistant"]
    content: list[Part]


# -- request --------------------------------------------------------------------------------------


class ToolOrigin(_Model):
    """The client's own declaration of a tool the proxy reshaped for providers
    (``translators/toolnames.py``): ``function`` (a name a provider refuses, or a function inside a
    ``namespace``) or ``custom`` (a freeform tool taking one string, rendered as a function with
    one ``input`` parameter). Answers map calls back through it, so the client sees its own shape."""

    kind: Literal["function", "custom"] = "function"
    name: str
    namespace: str | None = None


class Tool(_Model):
    # The name providers see; ``origin`` holds the client's when the two differ.
    name: str
    description: str | None = None
    # JSON Schema of the arguments object; {"type": "object", "properties": {}} when absent.
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    origin: ToolOrigin | None = None


class ToolChoice(_Model):
    """``auto``: may call; ``none``: must not; ``required``: must call some tool; ``tool``: must
    call ``name``."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


class ReasoningConfig(_Model):
    """``effort`` is the OpenAI/Gemini-3 knob, ``budget_tokens`` the Anthropic/Gemini-2.5 one;
    renderers convert between them with ``translators.mapping``."""

    effort: str | None = None
    budget_tokens: int | None = None
    enabled: bool = True
    include_thoughts: bool | None = None


class ResponseFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    json_schema: dict[str, Any] | None = None
    strict: bool | None = None


class ChatRequest(_Model):
    model: str
    system: list[Text] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    tools: list[Tool] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    reasoning: ReasoningConfig | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    # Did the client ask for usage in the stream (OpenAI stream_options.include_usage)? Encoders
    # for protocols that always carry usage ignore it.
    stream_usage: bool = False
    user: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # What the parser removed because no translated route can run it (hosted tools), one line
    # each; the client sees them in the ``x-llm-warning`` response header.
    warnings: list[str] = Field(default_factory=list)


# -- response -------------------------------------------------------------------------------------

StopReason = Literal[
    "end_turn",  # natural end
    "max_tokens",  # output limit
    "stop_sequence",  # a stop sequence matched (ChatResponse.stop_sequence says which, if known)
    "tool_use",  # the model called tools
    "refusal",  # content filter / refusal / safety
    "pause_turn",  # Anthropic server-tool loop paused
    "context_window",  # context window exhausted
    "error",  # the provider ended the turn with an error-like reason (malformed call, ...)
]


class Usage(_Model):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None

    def merged(self, newer: Usage) -> Usage:
        """Overwrite with every count ``newer`` knows (streams repeat running totals: never add)."""
        known = newer.model_dump(exclude_none=True)
        return self.model_copy(update=known) if known else self


class ChatResponse(_Model):
    id: str
    model: str
    content: list[Part] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage = Field(default_factory=Usage)


# -- stream events --------------------------------------------------------------------------------
# Decoders turn a provider's stream into these, in order; encoders turn them into a client's stream.
# Content arrives as deltas; tool calls are keyed by ``index`` (0, 1, … in order of appearance within
# the response). Every stream a decoder produces has this grammar:
#   MessageStart (TextDelta | ReasoningDelta | ToolCallStart ToolCallDelta* ToolCallEnd | UsageUpdate)*
#   [Stop] [UsageUpdate*] End
# or ends early with StreamError (which is final). Decoders emit End exactly once, at the
# provider's terminal marker or at close().


class MessageStart(_Model):
    type: Literal["message_start"] = "message_start"
    id: str
    model: str
    usage: Usage | None = None


class TextDelta(_Model):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ReasoningDelta(_Model):
    """Reasoning text and/or its signature (signatures usually arrive last, text empty)."""

    type: Literal["reasoning_delta"] = "reasoning_delta"
    text: str = ""
    signature: str | None = None
    redacted: bool = False
    origin: str | None = None


class ToolCallStart(_Model):
    type: Literal["tool_call_start"] = "tool_call_start"
    index: int
    id: str
    name: str
    thought_signature: str | None = None


class ToolCallDelta(_Model):
    type: Literal["tool_call_delta"] = "tool_call_delta"
    index: int
    arguments: str


class ToolCallEnd(_Model):
    type: Literal["tool_call_end"] = "tool_call_end"
    index: int


class UsageUpdate(_Model):
    """Running totals: merge with ``Usage.merged``, never add."""

    type: Literal["usage"] = "usage"
    usage: Usage


class Stop(_Model):
    type: Literal["stop"] = "stop"
    reason: StopReason
    stop_sequence: str | None = None


class End(_Model):
    type: Literal["end"] = "end"


class StreamError(_Model):
    type: Literal["error"] = "error"
    error: dict[str, Any]  # ProxyError.to_dict()


Event = (
    MessageStart
    | TextDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | ToolCallEnd
    | UsageUpdate
    | Stop
    | End
    | StreamError
)
