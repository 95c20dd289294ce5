"""Runs the configured policies (``policies/``) at the two seams every route has.

- The request stage: after routing (tool rules match the chosen ``backend:model``), before the
  request is rendered. Request rewriting and tool access change the canonical request there.
- The event stages: a tool-call gate when the request offers a tool some reactor watches, and the
  answer rewriter when answer rules exist, appended to the exchange's ``event_stages``.

Whether a policy applies is decided from the client's decoded body (the names of the tools it
offers), so a request no policy applies to is never parsed and keeps the byte-for-byte fast path.
This addon knows nothing of what a policy checks; it only wires them and records their decisions.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from mitmproxy import http

from addons import exchange
from addons.settings import Settings
from addons.usage import canonical_request, client_identity
from policies.base import Context, Reactor
from policies.config import PoliciesConfig
from policies.dangerous_commands import DangerousCommands
from policies.gate import Decision, ToolCallGate
from policies.rewrite import Rewriter, RewriteStage
from policies.sandbox import Sandbox
from policies.tools import ToolAccess
from policies.workdir import working_directory
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

RECENT = 50  # decisions kept for /v1/diagnostics


def _function_names(tools: list) -> list[str]:
    """Chat: ``{"type": "function", "function": {"name": …}}``."""
    return [t["function"].get("name", "") for t in tools if isinstance(t.get("function"), dict)]


def _flat_names(tools: list) -> list[str]:
    """Responses and Anthropic: ``{"name": …}``."""
    return [t.get("name", "") for t in tools]


def _gemini_names(tools: list) -> list[str]:
    """Gemini: ``{"functionDeclarations": [{"name": …}]}`` (also snake_case)."""
    names = []
    for tool in tools:
        declarations = tool.get("functionDeclarations") or tool.get("function_declarations") or []
        names += [d.get("name", "") for d in declarations if isinstance(d, dict)]
    return names


# How each client protocol lists the tools it offers, read from the decoded body without parsing.
TOOL_NAMES: dict[str, Callable[[list], list[str]]] = {
    "openai-chat": _function_names,
    "openai-responses": _flat_names,
    "anthropic": _flat_names,
    "gemini": _gemini_names,
}


def offered_tools(ex: exchange.Exchange) -> tuple[str, ...]:
    tools = ex.body.get("tools") if isinstance(ex.body, dict) else None
    if not isinstance(tools, list):
        return ()
    names = TOOL_NAMES[ex.client_protocol]([t for t in tools if isinstance(t, dict)])
    return tuple(n for n in names if isinstance(n, str) and n)


class Suite:
    """The policies built from one configuration."""

    def __init__(self, config: PoliciesConfig) -> None:
        self.config = config
        self.access = ToolAccess(config.tools) if config.tools else None
        reactors: list[Reactor] = [DangerousCommands(config.dangerous_commands)]
        if config.sandbox.enabled:
            reactors.append(Sandbox(config.sandbox))
        if self.access is not None:
            reactors.append(self.access)
        self.reactors = reactors
        self.rewriter = Rewriter(config.rewrite)


class Policies:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.suite = Suite(PoliciesConfig())
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.actions: Counter[tuple[str, str]] = Counter()

    def configure(self, updated: set[str]) -> None:
        if "llm_config" in updated:
            self.suite = Suite(self.settings.config.policies)

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation != "generate" or ex.target is None:
            return
        try:
            self._apply(flow, ex)
        except ProxyError as e:
            # The canonical model cannot carry this request. A translated route fails on it when
            # rendered (with this error); a same-protocol one still passes untouched, unchecked.
            if ex.target.protocol == ex.client_protocol:
                logger.warning(f"LLM policies cannot check this request and let it pass: {e.message}")
            ex.request, ex.rewritten, ex.event_stages = None, False, []

    def _apply(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        suite = self.suite
        if suite.rewriter.active_for_requests:
            ex.rewrite(suite.rewriter.rewrite_request(ex.canonical()))
        offered = offered_tools(ex)
        watching = [r for r in suite.reactors if any(map(r.watches, offered))]
        if watching:
            context = self._context(flow, ex, offered, cwd=any(isinstance(r, Sandbox) for r in watching))
            if suite.access is not None and suite.access in watching:
                request, removed = suite.access.filter_request(ex.canonical(), context)
                if removed:
                    ex.rewrite(request)
                    logger.info(f"LLM policy tools: removed {', '.join(removed)} from the request")
            ex.event_stages.append(ToolCallGate(watching, context, lambda d: self.record(flow, d)))
        if suite.rewriter.active_for_answers:
            ex.event_stages.append(RewriteStage(suite.rewriter))

    def _context(self, flow: http.HTTPFlow, ex: exchange.Exchange, offered: tuple[str, ...], cwd: bool) -> Context:
        assert ex.target is not None
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        return Context(
            model=f"{ex.target.instance}:{ex.target.model}",
            client=client_identity(ex.client_headers, partial(canonical_request, ex), address),
            cwd=working_directory(ex.canonical()) if cwd else None,
            tools=offered,
        )

    def record(self, flow: http.HTTPFlow, decision: Decision) -> None:
        """Every decision that was not ``allow``: metrics, capture, the flow, diagnostics."""
        ex = exchange.get(flow)
        if ex is not None:
            ex.decisions.append(decision)
        self.actions[(decision.policy, decision.action)] += 1
        self.recent.append({"flow": flow.id, **asdict(decision)})
        flow.marked = ":no_entry:"
        note = f"{decision.policy} {decision.action} {decision.tool}: {decision.rule}"
        flow.comment = f"{flow.comment}\n{note}" if flow.comment else note
        logger.info(f"LLM policy {note} ({decision.reason})")

    def diagnostics(self) -> list[dict[str, Any]]:
        return list(self.recent)
