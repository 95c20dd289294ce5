"""Fake upstream LLM providers: real HTTP servers on 127.0.0.1, each speaking its protocols strictly.

Why strict: a fake that accepts anything hides translation bugs. Each fake rejects, in its own error
envelope and status, the request shapes the real provider rejects (docs/wire.md §1, §3, §4), and
cuts its streams into awkward pieces (7-byte writes, UTF-8 characters split) so that decoders meet
every boundary. Behaviour is chosen from the request alone, so tests can drive it through the proxy:

- tools defined (and not switched off) and no tool result in the last user turn
  -> one tool call ``get_weather`` with ``{"city": "Paris"}``;
- a tool result in the last user turn -> text ``"Tool said: <result text>"``;
- otherwise -> ``"Hello from <openai|anthropic|gemini>!"`` (model ``degrees``: ``DEGREES_TEXT``).

Model ``agent-shell`` drives a real coding agent instead: when the request declares the agent's
shell tool (``AGENT_SHELL_TOOLS``), it calls that tool with ``AGENT_COMMAND``, never get_weather.
Model ``agent-danger`` calls it with ``AGENT_DANGER_COMMAND`` (``git reset --hard``) instead, and model
``agent-write`` calls Claude Code's ``Write`` tool on the path a test puts in ``AGENT_WRITE.path``.

FakeOpenAI serves Chat Completions and the Responses API (stateless: no ``previous_response_id``,
no ``store: true``), with the same behaviour, usage and failure models on both.

The requested model name selects failures: see ``FakeProvider.respond``. A model made by
``scripted_model(text, calls, pause, steered)`` (``scripted-<base64url JSON>``, through any route)
makes the fake answer exactly that: text, then any tool calls with the given names and arguments,
streamed in small deltas with an optional pause between the text and the calls (``Script``).

One module per provider (``openai``, ``anthropic``, ``gemini``) on the shared machinery of
``common``; this package holds ``Fakes``, the three together, and re-exports what tests use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Self

from .anthropic import FakeAnthropic
from .common import (
    AGENT_COMMAND,
    AGENT_DANGER_COMMAND,
    AGENT_DANGER_MODEL,
    AGENT_DANGER_TOOLS,
    AGENT_MODEL,
    AGENT_OUTPUT,
    AGENT_SHELL_TOOLS,
    AGENT_WRITE,
    AGENT_WRITE_CONTENT,
    AGENT_WRITE_MODEL,
    ANTHROPIC_KEY,
    DEGREES_MODEL,
    DEGREES_TEXT,
    FAILURE_TEXT,
    GEMINI_KEY,
    MIDSTREAM_MODELS,
    OPENAI_KEY,
    SCRIPT_PIECE,
    SLOW_PREFIX,
    STEERING_MARK,
    STREAM_FAILED,
    TOOL_ARGS,
    TOOL_NAME,
    Answer,
    FakeProvider,
    RecordedRequest,
    Script,
    Stream,
    awkward_pieces,
    scripted_model,
    text_pieces,
)
from .gemini import GEMINI_SIGNATURE, FakeGemini
from .openai import FakeOpenAI

__all__ = [
    "AGENT_COMMAND",
    "AGENT_DANGER_COMMAND",
    "AGENT_DANGER_MODEL",
    "AGENT_DANGER_TOOLS",
    "AGENT_MODEL",
    "AGENT_OUTPUT",
    "AGENT_SHELL_TOOLS",
    "AGENT_WRITE",
    "AGENT_WRITE_CONTENT",
    "AGENT_WRITE_MODEL",
    "ANTHROPIC_KEY",
    "DEGREES_MODEL",
    "DEGREES_TEXT",
    "FAILURE_TEXT",
    "GEMINI_KEY",
    "GEMINI_SIGNATURE",
    "MIDSTREAM_MODELS",
    "OPENAI_KEY",
    "SCRIPT_PIECE",
    "SLOW_PREFIX",
    "STEERING_MARK",
    "STREAM_FAILED",
    "TOOL_ARGS",
    "TOOL_NAME",
    "Answer",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakeProvider",
    "Fakes",
    "RecordedRequest",
    "Script",
    "Stream",
    "awkward_pieces",
    "scripted_model",
    "text_pieces",
]


@dataclass
class Fakes:
    """The three fakes together, with the keys the proxy's test configuration uses."""

    openai: FakeOpenAI = field(default_factory=lambda: FakeOpenAI(OPENAI_KEY))
    anthropic: FakeAnthropic = field(default_factory=lambda: FakeAnthropic(ANTHROPIC_KEY))
    gemini: FakeGemini = field(default_factory=lambda: FakeGemini(GEMINI_KEY))

    @property
    def all(self) -> tuple[FakeProvider, ...]:
        return (self.openai, self.anthropic, self.gemini)

    def start(self) -> Self:
        for fake in self.all:
            fake.start()
        return self

    def stop(self) -> None:
        for fake in self.all:
            fake.stop()

    def reset(self) -> None:
        for fake in self.all:
            fake.reset()

    def llm_yaml(self, default_backend: str = "openai") -> str:
        """The proxy configuration routing to these fakes; append top-level keys to extend it."""
        backends = {
            "openai": (f"{self.openai.base_url}/v1", OPENAI_KEY),
            "anthropic": (self.anthropic.base_url, ANTHROPIC_KEY),
            "gemini": (self.gemini.base_url, GEMINI_KEY),
        }
        lines = [
            f'  {name}: {{type: {name}, base_url: "{url}", api_keys: ["{key}"]}}\n'
            for name, (url, key) in backends.items()
        ]
        return "backends:\n" + "".join(lines) + f"default_backend: {default_backend}\n"
