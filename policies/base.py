"""What every policy shares: the verdict vocabulary and what a policy may know of a request.

A policy is a small class that protects against one thing. The addon that runs policies
(``addons/policies.py``) knows nothing of their insides: it hands each tool call, complete with its
arguments, to every reactor that watches it, and applies the first verdict that is not ``allow``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

# The closed vocabulary of decisions about one tool call:
# - allow:   the call goes to the client unchanged;
# - rewrite: the call goes to the client with ``Verdict.arguments`` as its new JSON arguments;
# - block:   the call is removed from the answer and replaced by an ``[llm-proxy] blocked`` note.
Action = Literal["allow", "rewrite", "block"]


@dataclass(frozen=True)
class Verdict:
    action: Action
    policy: str = ""  # the policy's config name (``dangerous_commands``, ``sandbox``, ``tools``)
    rule: str = ""  # which rule decided (a rule name, a glob, a root)
    reason: str = ""  # one sentence for the model and the user: what the call would have done
    arguments: str | None = None  # the new JSON arguments, for ``rewrite`` only


ALLOW = Verdict("allow")


@dataclass(frozen=True)
class Call:
    """A tool call as the model made it, arguments complete (JSON text, possibly invalid)."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class Context:
    """What a policy may know of the request a call answers."""

    model: str = ""  # the resolved ``backend:model``
    client: str = ""  # the client's identity (proxy key name, credential hash or address)
    cwd: str | None = None  # the agent's working directory, where the request reveals it
    tools: tuple[str, ...] = field(default_factory=tuple)  # names of the tools the request offers
    # Provider-safe name -> the client's, for tools the translation renamed (translators/toolnames.py):
    # policies judge, and their notes name, the tools as the client declared them.
    renamed: dict[str, str] = field(default_factory=dict)

    def client_name(self, tool: str) -> str:
        return self.renamed.get(tool, tool)


class Reactor(Protocol):
    """A policy that judges tool calls."""

    name: str

    def watches(self, tool: str) -> bool:
        """Does this reactor judge calls of ``tool``? (A request that offers no watched tool can
        keep the fast path.)"""
        ...

    def judge(self, call: Call, context: Context) -> Verdict: ...
