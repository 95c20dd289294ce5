"""Runs the configured policies (``policies/``) at the two seams every route has.

- The request stage: after routing (tool rules match the chosen ``backend:model``), before the
  request is rendered. Request rewriting and tool access change the canonical request there.
- The event stages: a tool-call gate when the request offers a tool some reactor watches, the
  answer rewriter when answer rules exist, the tool-loop stop on an answer the tool-loop guard
  steered, and loop detection (``loop_detection``, on unless the session says
  ``loop-detection=off``), appended to the exchange's ``event_stages`` in that order. Loop
  detection only observes until it ends an answer, so it keeps the fast path.

Whether a policy applies is decided from the client's decoded body (the names of the tools it
offers), so a request no policy applies to is never parsed and keeps the byte-for-byte fast path.
This addon knows nothing of what a policy checks; it only wires them and records their decisions.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from mitmproxy import http

from addons import exchange
from addons.egress import ERROR_HEADER
from addons.replies import proxy_answer
from addons.settings import Settings
from addons.stages import answer_events
from addons.upstream import prepare
from addons.usage import client_identity
from policies.base import Context, Reactor
from policies.config import PoliciesConfig
from policies.dangerous_commands import DangerousCommands
from policies.gate import Decision, ToolCallGate
from policies.guards import EMPTY_NOTE, ReasoningFloor
from policies.loops import LoopStage
from policies.rewrite import Rewriter, RewriteStage
from policies.sandbox import Sandbox
from policies.tool_loop import ToolLoopGuard, ToolLoopStop
from policies.tool_pairs import raw_pairs
from policies.tools import ToolAccess
from policies.workdir import working_directory
from translators.canonical import ChatResponse, Text, ToolCall
from translators.errors import ProxyError
from translators.toolnames import flat

logger = logging.getLogger(__name__)

RECENT = 50  # decisions kept for /v1/diagnostics
# Where each protocol's client puts its output limit (Gemini inside generationConfig).
LIMIT_KEYS = frozenset(
    {"max_tokens", "max_completion_tokens", "max_output_tokens", "generationConfig", "generation_config"}
)


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


STEERING = (
    "[llm-proxy] Your previous answer called the {tool} tool, which the proxy blocked ({rule}): {reason}. "
    "Do not call it again. Choose a safe alternative, "
    "or tell the user to run it themselves if it is intended."
)


# How a tool result shows in each protocol's raw body (counted before anything is parsed).
RESULT_MARKS: dict[str, tuple[bytes, ...]] = {
    "openai-chat": (b'"tool"',),
    "openai-responses": (b'"function_call_output"', b'"custom_tool_call_output"'),
    "anthropic": (b'"tool_result"',),
    "gemini": (b'"functionResponse"', b'"function_response"'),
}


def at_least(content: bytes, needles: tuple[bytes, ...], count: int) -> bool:
    """Do ``needles`` occur ``count`` times in ``content``? The search stops there: an agent's body
    carries its results early, and counting them all costs a scan of megabytes."""
    for needle in needles:
        start = content.find(needle)
        while start != -1:
            count -= 1
            if count <= 0:
                return True
            start = content.find(needle, start + len(needle))
    return count <= 0


EMPTY_BODY = 8 * 1024  # bytes: no empty answer's body is larger (ids, usage, an empty block)


class Policies:
    """Place it after RouteRequests (tool rules see the chosen backend:model) and before the
    egress (which renders the request the stages leave). ``fetch`` makes a whole answer's
    steering retry through the egress."""

    def __init__(
        self, settings: Settings, fetch: Callable[[exchange.Exchange], Awaitable[http.Response]]
    ) -> None:
        self.settings = settings
        self.fetch = fetch
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
        self._reasoning_floor(flow, ex)
        tool_loop = self._tool_loop(flow, ex)
        if flow.response is not None:
            return  # the tool-loop guard answered itself
        if suite.rewriter.active_for_requests:
            ex.rewrite(suite.rewriter.rewrite_request(ex.canonical()))
        offered = offered_tools(ex)
        watching = [r for r in suite.reactors if any(map(r.watches, offered))]
        if watching:
            ex.canonical()  # the gate re-encodes the answer, which needs the canonical request
            context = self._context(flow, ex, offered, cwd=any(isinstance(r, Sandbox) for r in watching))
            if suite.access is not None and suite.access in watching:
                request, removed = suite.access.filter_request(ex.canonical(), context)
                if removed:
                    ex.rewrite(request)
                    logger.info(f"LLM policy tools: removed {', '.join(removed)} from the request")
            # The exchange lives as long as its flow, so the gate must not hold the flow itself.
            flow_ref = weakref.ref(flow)
            ex.event_stages.append(ToolCallGate(watching, context, lambda d: self.record(flow_ref(), d)))
        if suite.rewriter.active_for_answers:
            ex.event_stages.append(RewriteStage(suite.rewriter))
        if tool_loop is not None:
            ex.event_stages.append(tool_loop)  # after the gate and the rewriter: it ends the answer
        loops = self.settings.config.loop_detection
        session = ex.session
        if loops.enabled and not (session and session.settings.get("loop-detection") is False):
            flow_ref = weakref.ref(flow)
            ex.event_stages.append(LoopStage(loops, lambda d: self.record(flow_ref(), d)))  # last: it ends

    def _tool_loop(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> ToolLoopStop | None:
        """Steer a session's tool loop, with the stage that stops the steered answer if it calls
        the same thing again; or answer the request itself (``flow.response``) when the loop went
        on anyway. Only a request of a session that offers tools and carries at least
        ``max_repeats`` tool results (counted in the raw body, no parse) is parsed for it."""
        session, guard = ex.session, ToolLoopGuard(self.settings.config.tool_loop)
        if session is None or not offered_tools(ex):
            return None
        state = session.state.setdefault(guard.name, {})
        if not at_least(ex.client_content, RESULT_MARKS[ex.client_protocol], guard.max_repeats):
            state.clear()
            return None
        # The pairs from the decoded body where its protocol allows: no parse of the conversation.
        pairs = raw_pairs(ex.client_protocol, ex.body) if ex.request is None else None
        verdict = guard.judge(ex.canonical() if pairs is None else pairs, state)
        if verdict is None:
            return None
        action, repeat = verdict
        detail = f"{repeat.count}× same call and result"
        self.record(flow, Decision(guard.name, action, repeat.tool, detail, repeat.arguments[:80]))
        if action == "stop":
            flow.response = proxy_answer(ex, guard.answer(repeat))
            return None
        request = ex.canonical()
        ex.rewrite(request.model_copy(update={"system": [*request.system, Text(text=guard.note(repeat))]}))
        flow_ref = weakref.ref(flow)
        return ToolLoopStop(repeat, lambda d: self.record(flow_ref(), d))

    def _reasoning_floor(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        """Raise a too small ``max_tokens`` for models listed in ``reasoning_floor``; the request is
        parsed only when the routed model matches a glob and the client sent a limit at all."""
        assert ex.target is not None
        guard = ReasoningFloor(self.settings.config.reasoning_floor)
        floor = guard.floor(ex.target.instance, ex.target.model) if guard.floors else None
        if floor is None or not isinstance(ex.body, dict) or not (ex.body.keys() & LIMIT_KEYS):
            return
        raised = guard.apply(ex.canonical(), floor)
        if raised is not None:
            sent = ex.canonical().max_tokens
            ex.rewrite(raised)
            self.record(
                flow, Decision(guard.name, "raise", "", ex.target.model, f"max_tokens {sent} → {floor}")
            )

    def _context(
        self, flow: http.HTTPFlow, ex: exchange.Exchange, offered: tuple[str, ...], cwd: bool
    ) -> Context:
        assert ex.target is not None
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        return Context(
            model=f"{ex.target.instance}:{ex.target.model}",
            client=client_identity(ex.client_headers, ex.client_user, address),
            cwd=working_directory(ex.canonical()) if cwd else None,
            tools=offered,
            # The names the translation gives the offered tools (translators/toolnames.py), from the
            # client's own names: no parse of the request for it.
            renamed={safe: name for name in offered if (safe := flat(name)) != name},
        )

    async def response(self, flow: http.HTTPFlow) -> None:
        """A whole answer, before the client saw anything of it, that is empty or has a blocked
        call: ask the model again (``empty_answer.retries``, ``policies.retries`` times) with a
        note saying what was wrong."""
        ex = exchange.get(flow)
        if (
            ex is None
            or ex.stream
            or ex.operation != "generate"
            or ex.target is None
            or flow.response is None
        ):
            return
        await self._retry_empty(flow, ex)
        gates = [stage for stage in ex.event_stages if isinstance(stage, ToolCallGate)]
        for _ in range(self.suite.config.retries if gates else 0):
            blocked = self._blocked(flow, ex, gates[0])
            if blocked is None:
                return
            self.record(flow, Decision(blocked.policy, "retry", blocked.tool, blocked.rule, blocked.reason))
            note = STEERING.format(
                tool=blocked.tool, rule=f"{blocked.policy}: {blocked.rule}", reason=blocked.reason
            )
            if not await self._ask_again(flow, ex, note):
                return

    async def _retry_empty(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        """A whole answer with no text and no tool call is asked again (``empty_answer.retries``
        times) with a note; nothing of it reached the client yet."""
        for _ in range(self.settings.config.empty_answer.retries):
            if flow.response is None or len(flow.response.raw_content or b"") > EMPTY_BODY:
                return  # an empty answer's body is small: larger ones are never parsed for this
            answer = self._answer(flow, ex)
            if answer is None or any(
                isinstance(part, ToolCall) or (isinstance(part, Text) and part.text.strip())
                for part in answer.content
            ):
                return
            self.record(
                flow, Decision("empty_answer", "retry", "", "empty answer", f"stop {answer.stop_reason}")
            )
            if not await self._ask_again(flow, ex, EMPTY_NOTE):
                return

    async def _ask_again(self, flow: http.HTTPFlow, ex: exchange.Exchange, note: str) -> bool:
        """The request again with ``note`` as a private system instruction; the new whole answer
        replaces the flow's response."""
        request = ex.canonical()
        ex.rewrite(request.model_copy(update={"system": [*request.system, Text(text=note)]}))
        try:
            ex.upstream = prepare(ex, ex.candidates[0])
        except ProxyError:
            return False
        flow.response = await self.fetch(ex)
        return True

    def _answer(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> ChatResponse | None:
        """The provider's whole answer, parsed, unless it is an error or unreadable."""
        response = flow.response
        if response is None or response.status_code >= 400 or ERROR_HEADER in response.headers:
            return None
        try:
            return ex.answer(response.content or b"")  # parsed once, for the translation too
        except (ValueError, ProxyError):
            return None

    def _blocked(self, flow: http.HTTPFlow, ex: exchange.Exchange, gate: ToolCallGate) -> Decision | None:
        """The first call a fresh copy of ``gate`` would block in the provider's whole answer."""
        answer = self._answer(flow, ex)
        if answer is None:
            return None
        found: list[Decision] = []
        trial = ToolCallGate(gate.reactors, gate.context, found.append)
        trial.feed(answer_events(answer))
        return next((d for d in found if d.action == "block"), None)

    def record(self, flow: http.HTTPFlow | None, decision: Decision) -> None:
        """Every decision that was not ``allow``: metrics, capture, the flow, diagnostics."""
        if flow is None:
            return
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
