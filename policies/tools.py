"""Tool access control: which tools a model may be offered and may call, per model and client.

Protects against a model using tools the user does not want it to have — say web fetching or MCP
servers for a model of some provider — however the client offers them. Requests lose the denied
tools before they reach the provider (``ToolAccess.filter_request``), and a call of a denied tool
that arrives anyway (from a model that invents tool names, or a history that still mentions the
tool) is blocked (``ToolAccess.judge``).

Rules are an ordered list; the FIRST rule whose ``match`` fits the request decides, later rules are
not consulted. Within that rule a ``deny`` glob wins over ``allow``; when ``allow`` is given, tools
matching none of its globs are denied too. No fitting rule: everything is allowed. Globs are
``fnmatch`` patterns, case-sensitive: ``model`` against ``backend:model``, ``client`` against the
client's identity, tool globs against tool names as the client declared them (also where the
translation gave a tool a provider-safe name). Example::

    tools:
      - match: {model: "gemini:*"}
        deny: ["WebFetch", "mcp__*"]
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field

from policies.base import ALLOW, Call, Context, Verdict
from translators.canonical import ChatRequest, ToolChoice


class ToolMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = "*"  # glob over the resolved backend:model
    client: str = "*"  # glob over the client's identity


class ToolRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: ToolMatch = Field(default_factory=ToolMatch)
    allow: list[str] | None = None  # tool-name globs; when given, only these tools are allowed
    deny: list[str] = Field(default_factory=list)  # tool-name globs, denied even when allowed

    def fits(self, context: Context) -> bool:
        return fnmatchcase(context.model, self.match.model) and fnmatchcase(context.client, self.match.client)

    def denial(self, tool: str) -> str | None:
        """The glob (or allow list) that denies ``tool`` under this rule, None when it is allowed."""
        for glob in self.deny:
            if fnmatchcase(tool, glob):
                return glob
        if self.allow is not None and not any(fnmatchcase(tool, glob) for glob in self.allow):
            return "allow [" + ", ".join(self.allow) + "]"
        return None


class ToolAccess:
    """Tool access control as a reactor, and the request filter that goes with it."""

    name = "tools"

    def __init__(self, rules: Iterable[ToolRule]) -> None:
        self.rules = tuple(rules)

    def rule_for(self, context: Context) -> ToolRule | None:
        """The first rule whose match fits, or None."""
        return next((rule for rule in self.rules if rule.fits(context)), None)

    def allowed(self, tool: str, context: Context) -> Verdict:
        """ALLOW, or a block naming the glob that denies ``tool`` for this model and client."""
        rule = self.rule_for(context)
        denial = rule.denial(tool) if rule is not None else None
        if denial is None:
            return ALLOW
        reason = f"tool {tool} is not allowed for {_who(context)}"
        return Verdict("block", policy=self.name, rule=denial, reason=reason)

    def watches(self, tool: str) -> bool:
        """Could some rule deny ``tool``, for some model and client?"""
        return any(rule.denial(tool) is not None for rule in self.rules)

    def judge(self, call: Call, context: Context) -> Verdict:
        verdict = self.allowed(call.name, context)
        if verdict.action == "allow":
            return verdict
        reason = f"called {call.name} anyway, which is not allowed for {_who(context)}"
        return Verdict("block", policy=self.name, rule=verdict.rule, reason=reason)

    def filter_request(self, request: ChatRequest, context: Context) -> tuple[ChatRequest, list[str]]:
        """The request without the denied tools, and the removed names. ``tool_choice`` naming a
        removed tool becomes ``auto`` (``none`` when no tool remains), as does ``required`` with no
        tool left. The input is never mutated; unchanged fields are shared with the copy."""
        rule = self.rule_for(context)
        if rule is None or not request.tools:
            return request, []
        denied = {
            tool.name for tool in request.tools if rule.denial(context.client_name(tool.name)) is not None
        }
        if not denied:
            return request, []
        kept = [tool for tool in request.tools if tool.name not in denied]
        removed = [context.client_name(tool.name) for tool in request.tools if tool.name in denied]
        choice = request.tool_choice
        forced_away = choice is not None and choice.mode == "tool" and choice.name in denied
        if forced_away or (choice is not None and choice.mode == "required" and not kept):
            choice = ToolChoice(mode="auto" if kept else "none")
        return request.model_copy(update={"tools": kept, "tool_choice": choice}), removed


def _who(context: Context) -> str:
    who = context.model or "this model"
    return f"{who} (client {context.client})" if context.client else who
