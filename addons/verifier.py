"""The quality verifier (``verifier:``): a second model checks the first on every Nth turn.

Where the answer is held depends on how it travels (docs/architecture.md, "Verifier"):
- a whole answer is complete in the ``response`` hook, before anything is translated or sent:
  it is checked there, and on a steer the primary call is made again through the egress;
- a stream is held in the egress relay (``Exchange.review``), which reads the provider's stream
  ahead up to ``verifier.hold_kb`` before the client sees a byte. A stream that ends within the
  bound is checked and then sent (or replaced by the steered call's stream); a longer one passes
  through live, unchecked, with what was read sent first.

The verifier's own call is a side call of the flow (``Exchange.side_calls``): it never runs the
hooks, so verification never nests, and usage and capture record it beside the primary call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any, Literal

from mitmproxy import http

import translators
from addons import exchange
from addons.egress import ERROR_HEADER, Outcome, Relay
from addons.settings import Settings
from addons.upstream import prepare
from addons.usage import client_identity
from policies.gate import Decision
from policies.verifier import (
    Breaker,
    Review,
    Schedule,
    parse_review,
    review_request,
    steered_request,
    turn_kind,
)
from translators import wire
from translators.assemble import response_from_events
from translators.canonical import ChatResponse, StreamError, Text
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

CLIENTS = 1_000  # schedules kept for clients without a session (least recently used dropped)
POLICY = "verifier"


class Verifier:
    """Place it after Policies (its ``response`` hook then runs after the policies' retry of a
    whole answer) and before the egress (which holds a stream for ``Exchange.review``)."""

    def __init__(
        self, settings: Settings, relay: Relay, record: Callable[[http.HTTPFlow | None, Decision], None]
    ) -> None:
        self.settings = settings
        self.relay = relay
        self.record = record  # the policies' record: metrics, capture, the flow, diagnostics
        self.breaker = Breaker()
        self.counts: Counter[str] = Counter()
        self.schedules: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # -- which turns --------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        config = self.settings.config.verifier
        ex = exchange.get(flow)
        if config is None or ex is None or flow.response or ex.operation != "generate" or ex.target is None:
            return
        if self.breaker.open:
            self.counts["skipped"] += 1
            return
        if ex.session is not None:  # the sessions addon has read the last message already
            kind: Literal["user", "tool"] = "user" if ex.session.user_turn else "tool"
        else:
            try:
                kind = turn_kind(ex.canonical())
            except ProxyError:
                return  # a request the canonical model cannot read cannot be shown to a verifier
        if Schedule(config.every).due(self._schedule(flow, ex), kind):
            # The exchange lives as long as its flow, so what it holds must not hold the flow.
            flow_ref, ex_ref = weakref.ref(flow), weakref.ref(ex)
            ex.review = lambda outcome: self._review_stream(flow_ref(), ex_ref(), outcome)

    def _schedule(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> dict[str, Any]:
        if ex.session is not None:
            return ex.session.state.setdefault(POLICY, {})
        address = flow.client_conn.peername[0] if flow.client_conn.peername else ""
        client = client_identity(ex.client_headers, ex.client_user, address)
        state = self.schedules.pop(client, {})
        self.schedules[client] = state
        while len(self.schedules) > CLIENTS:
            self.schedules.popitem(last=False)
        return state

    # -- whole answers ------------------------------------------------------------------------

    async def response(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or ex.stream or ex.review is None or flow.response is None:
            return
        ex.review = None  # one check per turn, whatever follows
        response = flow.response
        if response.status_code != 200 or ERROR_HEADER in response.headers:
            return
        try:
            answer = ex.answer(response.content or b"")  # parsed once, shared with the translation
        except (ValueError, ProxyError):
            return
        review = await self.verify(flow, ex, answer)
        if review is not None and review.verdict == "steer" and self._steer(ex, review):
            flow.response = await self.relay.fetch(ex)

    # -- streams ------------------------------------------------------------------------------

    async def _review_stream(
        self, flow: http.HTTPFlow | None, ex: exchange.Exchange | None, outcome: Outcome
    ) -> Outcome:
        if ex is None:
            return outcome
        ex.review = None
        response = outcome.response
        config = self.settings.config.verifier
        if response is None or config is None or response.status != 200:
            return outcome
        if not await self.relay.read_ahead(ex, outcome, config.hold_kb * 1024):
            self.counts["too_long"] += 1
            return outcome  # over the bound: it passes through live, unchecked
        decoder = translators.get(ex.backend_protocol).StreamDecoder()
        events = decoder.feed(b"".join(outcome.head)) + decoder.close()
        if any(isinstance(e, StreamError) for e in events):
            return outcome
        review = await self.verify(flow, ex, response_from_events(events))
        if review is None or review.verdict == "pass" or not self._steer(ex, review):
            return outcome
        response.release()
        return await self.relay.dispatch(ex)

    # -- the check ----------------------------------------------------------------------------

    async def verify(
        self, flow: http.HTTPFlow | None, ex: exchange.Exchange, answer: ChatResponse
    ) -> Review | None:
        """Ask the verifier; None when it failed (the primary answer stands: fail open)."""
        config = self.settings.config.verifier
        assert config is not None
        self.counts["checked"] += 1
        try:
            text = await asyncio.wait_for(self._ask(ex, answer), config.timeout)
        except TimeoutError:
            return self._failed(flow, ex, f"no verdict within {config.timeout:g} s")
        except ProxyError as e:
            return self._failed(flow, ex, e.message)
        review = parse_review(text)
        if review is None:
            return self._failed(flow, ex, f"unreadable verdict {text[:80]!r}")
        self.breaker.succeeded()
        self.counts[review.verdict] += 1
        if review.verdict == "steer":
            self.record(flow, Decision(POLICY, "steer", "", config.model, review.note))
        return review

    async def _ask(self, ex: exchange.Exchange, answer: ChatResponse) -> str:
        """The verifier's call, as a side call of the flow (usage and capture record it)."""
        config = self.settings.config.verifier
        assert config is not None
        target = self.settings.router.resolve(config.model)
        side = exchange.Exchange(
            client_protocol=target.protocol,
            surface=ex.surface,
            body={},
            stream=False,
            selector=config.model,
            client_headers=ex.client_headers,
        )
        side.key, side.session, side.candidates = ex.key, ex.session, [target]
        ex.side_calls.append(side)
        try:
            side.request, side.rewritten = review_request(ex.canonical(), answer, target.model), True
            side.upstream = prepare(side, target)
            response = await self.relay.fetch(side)
        except asyncio.CancelledError:
            side.fail(ProxyError("timeout", "the verifier did not answer in time"))
            raise
        finally:
            side.ended = time.time()
        side.upstream_status, side.upstream_content = response.status_code, response.content
        if response.status_code >= 400 or ERROR_HEADER in response.headers:
            raise side.error or side.fail(
                ProxyError("upstream_error", f"verifier answered {response.status_code}")
            )
        verdict = translators.get(target.protocol).parse_response(wire.loads(response.content or b""))
        side.usage = verdict.usage
        text = "".join(p.text for p in verdict.content if isinstance(p, Text))
        side.output.text.append(text)
        return text

    def _failed(self, flow: http.HTTPFlow | None, ex: exchange.Exchange, why: str) -> None:
        config = self.settings.config.verifier
        assert config is not None
        self.breaker.failed()
        self.counts["failed_open"] += 1
        logger.warning(f"LLM verifier {config.model} failed, the answer passes unchecked: {why}")
        self.record(flow, Decision(POLICY, "fail_open", "", config.model, why))
        return None

    def _steer(self, ex: exchange.Exchange, review: Review) -> bool:
        """Make the primary request again with the note; False when it cannot be expressed."""
        assert ex.target is not None
        ex.rewrite(steered_request(ex.canonical(), review))
        try:
            ex.upstream = prepare(ex, ex.target)
        except ProxyError:
            return False
        return True

    def diagnostics(self) -> dict[str, Any]:
        config = self.settings.config.verifier
        return {
            "model": config.model if config else None,
            **dict(self.counts),
            "breaker_open": self.breaker.open,
        }
