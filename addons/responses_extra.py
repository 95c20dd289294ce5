"""The Responses endpoints beside generation: compaction, input token counts, stored responses.

OpenAI serves more under ``/v1/responses`` than generation, and clients call it: Codex releases
before 0.171 and the SDK's ``responses.compact`` ask ``POST /v1/responses/compact`` for a compacted
history, SDKs ``POST /v1/responses/input_tokens`` for a count, and ``GET /v1/responses/{id}``
(``/input_items``) and ``POST /v1/responses/{id}/cancel`` read and stop responses OpenAI stored
(docs/wire.md §2.7). What happens to each depends on where the request is routed:

| endpoint | to an OpenAI backend | to any other backend |
|---|---|---|
| compact | passed through | emulated: the routed target model writes the summary |
| input_tokens | passed through | estimated locally (``x-llm-token-count``), as count_tokens |
| stored responses | passed through | a native 400: the proxy stores nothing |

The emulated compaction is the flow's own call, sent by the egress like any whole answer
(failover, keys, timeouts, capture): the request is the client's conversation ending in a
``compaction_trigger``, which the Responses parser turns into a summarising instruction, rendered
for the target's protocol; ``response`` reshapes the target's answer into OpenAI's compaction
object before the translation addon sees it (which leaves non-generation bodies alone).

Stored responses have no model to route by and paths the front door's table cannot hold, so
``StoredResponses`` answers them itself before the front door, through the relay's client.
"""

from __future__ import annotations

import re

from mitmproxy import http

from addons import exchange, listeners
from addons.egress import ERROR_HEADER, Relay
from addons.replies import error_response, json_response
from addons.router import choose
from addons.settings import Settings
from addons.upstream import Upstream, upstream_headers, with_model
from backends.families import FAMILIES
from backends.routing import Target
from translators import openai_responses, tokens
from translators.canonical import Text
from translators.errors import ProxyError

PROTOCOL = openai_responses.NAME
# Operations the front door's table opens (addons/frontdoor.py) -> the OpenAI path under the base URL.
OPENAI_PATHS = {"compact": "/responses/compact", "input_tokens": "/responses/input_tokens"}
STORED_PREFIX = "/v1/responses/"
STORED_PATH = re.compile(r"^/v1/responses/(?P<id>[^/]+)(?P<rest>/cancel|/input_items)?$")
STORED_METHODS = {"": "GET", "/input_items": "GET", "/cancel": "POST"}
NOT_STORED_IDS = frozenset({"compact", "input_tokens"})  # the front door's own rows
STORED_MODEL = "stored-responses"  # a Target needs a model: one no provider error names
NO_STORE = (
    "{what} needs a response stored at OpenAI, and no OpenAI backend is configured: this proxy "
    "stores no responses (store: true is refused on routes it translates); send the full "
    "conversation as input items instead"
)


def speaks_responses(target: Target) -> bool:
    return target.protocol == PROTOCOL


class ResponsesExtra:
    """Place it after the request stages and before the egress (which sends what it prepares)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response or ex.operation not in OPENAI_PATHS:
            return
        try:
            route = choose(flow, ex, self.settings, PROTOCOL)
            if route is None:
                return  # no backend of the addressed provider: the client's own call
            target = route.targets[0]
            if speaks_responses(target):
                self._pass(flow, ex, target)
            elif ex.operation == "input_tokens":
                flow.response = self._estimate(ex)
            else:
                self._emulate(ex, route.targets, route.defaults)
        except ProxyError as e:
            flow.response = error_response(PROTOCOL, ex.fail(e))

    def _pass(self, flow: http.HTTPFlow, ex: exchange.Exchange, target: Target) -> None:
        """The client's body to the same path of the OpenAI backend (only the model spliced in);
        one candidate, because a failover target would be prepared for generation."""
        body = (
            None
            if ex.body.get("model") == target.model
            else with_model(ex.client_content, ex.body, target.model)
        )
        url = target.backend.base_url.rstrip("/") + OPENAI_PATHS[ex.operation]
        upstream = Upstream(target, url, upstream_headers(ex, target, True), body, True)
        ex.candidates, ex.stream = [target], False
        ex.commit(upstream)
        if body is not None:
            flow.request.content = body

    def _estimate(self, ex: exchange.Exchange) -> http.Response:
        count = tokens.count_request(ex.canonical())
        method = f"tiktoken {tokens.ENCODING}" if tokens.is_exact() else "characters/4"
        body = {"object": "response.input_tokens", "input_tokens": count}
        return json_response(200, body, {"x-llm-token-count": f"estimated; {method}"})

    def _emulate(self, ex: exchange.Exchange, targets: list[Target], defaults: dict) -> None:
        """The conversation with a compaction_trigger at its end, as the flow's own whole call."""
        items = ex.body.get("input")
        if isinstance(items, str):
            items = [{"type": "message", "role": "user", "content": items}]
        body = {**ex.body, "input": [*(items or []), {"type": "compaction_trigger"}], "stream": False}
        ex.request = openai_responses.parse_request(body, model=ex.selector, stream=False)
        ex.rewritten, ex.stream = True, False
        ex.candidates, ex.defaults, ex.target = targets, defaults, targets[0]

    def response(self, flow: http.HTTPFlow) -> None:
        """An emulated compaction's answer as OpenAI's compaction object (errors are left to the
        translation addon, which renders them in the client's envelope)."""
        ex = exchange.get(flow)
        response = flow.response
        if ex is None or ex.operation != "compact" or ex.passthrough or ex.target is None or response is None:
            return
        if response.status_code != 200 or ERROR_HEADER in response.headers:
            return
        try:
            answer = ex.answer(response.content or b"")  # parsed once, shared with the translation
        except (ValueError, ProxyError):
            error = ProxyError("upstream_error", "the provider returned a summary the proxy cannot read")
            flow.response = error_response(PROTOCOL, ex.fail(error))
            return
        ex.usage = answer.usage
        ex.output.text.append("".join(p.text for p in answer.content if isinstance(p, Text)))
        flow.response = json_response(200, openai_responses.compaction_response(ex.body, answer))


class StoredResponses:
    """``GET /v1/responses/{id}`` (and ``/input_items``), ``POST /v1/responses/{id}/cancel``.
    Place it after Access (the proxy key is checked first) and before the front door (which
    answers paths it does not know with a 404)."""

    def __init__(self, settings: Settings, relay: Relay) -> None:
        self.settings = settings
        self.relay = relay

    async def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        if not flow.request.path.startswith(STORED_PREFIX):
            return  # every other request: one string comparison
        path, _, query = flow.request.path.partition("?")
        match = STORED_PATH.match(path)
        if match is None or match["id"] in NOT_STORED_IDS:
            return
        if STORED_METHODS[match["rest"] or ""] != flow.request.method:
            return
        where = listeners.surface(flow)
        if where == "anthropic_port" or (where == "proxy" and flow.request.pretty_host != "api.openai.com"):
            return
        target = self._openai()
        if target is None:
            if where == "proxy":
                return  # no OpenAI backend: the client's own call, untouched
            what = f"{flow.request.method} {path}"
            flow.response = error_response(
                PROTOCOL, ProxyError("invalid_request", NO_STORE.format(what=what))
            )
            return
        url = target.backend.base_url.rstrip("/") + path.removeprefix("/v1") + (f"?{query}" if query else "")
        try:
            flow.response = await self._call(flow, target, url)
        except ProxyError as e:
            flow.response = error_response(PROTOCOL, e)

    def _openai(self) -> Target | None:
        """The first configured backend that speaks Responses natively."""
        for name, backend in self.settings.config.backends.items():
            family = FAMILIES[backend.type]
            if family.protocol == PROTOCOL or PROTOCOL in family.protocols:
                return Target(name, backend, family, STORED_MODEL, protocol=PROTOCOL, pinned=True)
        return None

    async def _call(self, flow: http.HTTPFlow, target: Target, url: str) -> http.Response:
        ex = exchange.Exchange(
            client_protocol=PROTOCOL,
            surface=listeners.surface(flow),
            body={},
            stream=False,
            selector=f"{target.instance}:{STORED_MODEL}",
            operation="stored",
            client_content=flow.request.raw_content or b"",
            client_headers=exchange.header_dict(flow.request.headers),
        )
        headers = upstream_headers(ex, target, True)
        if flow.request.method == "POST":
            ex.candidates = [target]
            ex.commit(Upstream(target, url, headers, None, True))
            exchange.put(flow, ex)  # the translation addon renders the relay's errors natively
            return await self.relay.fetch(ex)
        return await self._get(target, url, headers)

    async def _get(self, target: Target, url: str, headers: dict[str, str]) -> http.Response:
        """A read, through the relay's GET (which reports a failure as its text only)."""
        availability = self.settings.availability
        keys = availability.usable_keys(target.instance, target.backend.api_keys, target.backend.key_policy)
        if not keys:
            raise ProxyError(
                "upstream_error", f"every key of backend {target.instance} is unusable", status=503
            )
        headers = {**headers, **target.family.auth_headers(keys[0])}
        try:
            payload = await self.relay.fetch_json(url, headers, target.backend.timeouts)
        except RuntimeError as e:
            if "HTTP 404" in str(e):
                raise ProxyError(
                    "not_found", f"backend {target.instance} has no such stored response"
                ) from None
            raise ProxyError("upstream_error", f"backend {target.instance}: {e}") from None
        return json_response(200, payload)
