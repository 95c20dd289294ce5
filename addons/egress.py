"""The egress: the one place that talks to providers.

Failover, key rotation, timeouts and native errors all need control over the upstream call, so
the suite makes it itself with one pooled aiohttp client, in mitmproxy's own event loop:

- a whole (non-streamed) answer is fetched in the async ``request`` hook and set as the flow's
  response, so mitmproxy opens no upstream connection of its own (the cheapest path there is);
- a stream goes through a small aiohttp server on loopback (the relay), because mitmproxy cannot
  stream a response that an addon builds (docs/mitm.md §4-5): the flow is pointed at the
  relay, which makes the call and streams the provider's bytes back unchanged; translation stays
  in mitmproxy's ``flow.response.stream``.

Either way, what the egress answers itself:
- before any upstream byte: the canonical error as JSON, marked with ``x-llm-error`` so that the
  translate addon renders it in the client's protocol;
- after the stream began: the provider protocol's own in-band error event, which the stream
  translation turns into the client's.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from mitmproxy import ctx, http
from mitmproxy.net.http import status_codes, url
from mitmproxy.utils import asyncio_utils

import translators
from addons import exchange, listeners
from addons.replies import error_response
from addons.settings import Settings
from addons.upstream import Upstream, prepare
from backends.config import Timeouts
from backends.ratelimits import retry_after
from backends.routing import Target
from policies.gate import Decision
from policies.guards import carries_content, with_recovery_note
from translators import wire
from translators.canonical import ChatRequest, StreamError
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

RELAY_HEADER = "x-llm-relay"
ERROR_HEADER = "x-llm-error"
# Response headers that describe the provider's framing, not the body the relay sends on.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"}
)


# Provider answers that move on to the next key / instance / fallback before anything reached
# the client (Anthropic's 529 is its "overloaded").
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
KEY_STATUSES = frozenset({401, 403})  # this key is bad: try the next one
RELAY_BACKLOG = 4096
INTERNAL = "the proxy failed while calling the provider (its log says why)"
PEEK_LIMIT = 64 * 1024  # bytes read to find a stream's first event before committing


@dataclass
class Reply:
    """A complete answer the egress hands on as it is (an error, a provider's own 404)."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Outcome:
    """One attempt's result: a provider response committed to (with the stream's first bytes
    already read), a complete reply, or a failure and whether the next key of the same instance
    is worth trying."""

    response: aiohttp.ClientResponse | None = None
    head: list[bytes] = field(default_factory=list)
    reply: Reply | None = None
    failure: ProxyError | None = None
    next_key: bool = True
    empty: bool = False  # a stream that ended with no content, held whole in ``head``


def _block_end(data: bytes) -> int:
    """Where the first complete SSE block of ``data`` ends (after its blank line), or -1."""
    ends = [i + len(sep) for sep in (b"\n\n", b"\r\n\r\n") if (i := data.find(sep)) >= 0]
    return min(ends, default=-1)


def about_model(target: Target, error: ProxyError, content: bytes) -> bool:
    """Is a provider's 404 about the model (else about the path, and handed to the client)? It
    names the model, or says ``model_not_found`` (OpenAI's code, OpenRouter's type)."""
    return (
        target.model in error.message
        or error.provider_type == "model_not_found"
        or b'"model_not_found"' in content
    )


def broke_off(fault: Exception, idle: float) -> ProxyError:
    """An answer that stopped coming: silent for ``idle`` seconds, or its connection broke."""
    if isinstance(fault, TimeoutError):
        return ProxyError("timeout", f"upstream sent nothing for {idle:g} s")
    return ProxyError("upstream_error", "upstream connection broke off mid-response")


def error_reply(error: ProxyError) -> Reply:
    return Reply(
        error.status, {"content-type": "application/json", ERROR_HEADER: "1"}, wire.dumps(error.to_dict())
    )


def in_band_error(protocol: str, error: ProxyError) -> bytes:
    encoder = translators.get(protocol).StreamEncoder(ChatRequest(model=""))
    return encoder.encode([StreamError(error=error.to_dict())])


def show_destination(flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
    """The flow list and mitmdump's lines name where the call went: the answering attempt's URL
    becomes the request's (once the upstream call is made, so the relay's loopback address or the
    front door's placeholder never shows) and its headers the prepared upstream headers (the client's
    own credentials and the relay's routing header never show; the key is added later and never
    shows either), ``backend:model`` and the route join the comment (after any policy's note) and a
    line beside mitmdump's flow lines says the same."""
    if ex.target is None:
        return
    if sent_to := ex.attempts[-1].url if ex.attempts else ex.upstream.url if ex.upstream else "":
        point_at(flow.request, sent_to)
    if ex.upstream is not None:  # the headers and body the provider got, the key not among them
        shown = {"host": urlsplit(ex.upstream.url).netloc, **ex.upstream.headers, **hop(flow)}
        flow.request.headers = http.Headers([(k.encode(), v.encode()) for k, v in shown.items()])
        sent = ex.upstream.body if ex.upstream.body is not None else ex.client_content
        flow.request.raw_content = sent
    route = "passthrough" if ex.passthrough else f"translated {ex.client_protocol} → {ex.backend_protocol}"
    note = f"{ex.target.instance}:{ex.target.model} · {route}"
    flow.comment = f"{flow.comment}\n{note}" if flow.comment else note
    say_destination(flow, f"LLM {ex.client_protocol} call → {note} · {flow.request.url}")


@functools.lru_cache(maxsize=1024)
def url_parts(address: str) -> tuple[bytes, str, int, bytes]:
    scheme, host, port, path = url.parse(address)
    return scheme, host.decode("idna"), port, path


def point_at(request: http.Request, address: str) -> None:
    """``request.url = address`` at a sixth of the cost: the URL is parsed once per distinct URL,
    not per flow, and the host header is left to the caller, which sets the headers next."""
    data = request.data
    data.scheme, data.host, data.port, data.path = url_parts(address)
    if data.authority:  # an HTTPS-proxy flow's authority names the host too
        data.authority = url.hostport(data.scheme, data.host, data.port).encode()


# Every whole answer's response is a copy of this one with its fields replaced. Constructing an
# ``http.Response`` type-checks each field (mitmproxy does so whenever Python runs without -O, as
# mitmdump does), about a fortieth of a small call's CPU, for values whose types are fixed here.
_RESPONSE = http.Response(b"HTTP/1.1", 200, b"OK", http.Headers(), b"", None, 0.0, 0.0)


def whole_response(reply: Reply) -> http.Response:
    """The flow's response for ``reply``: what ``http.Response.make`` builds, without its content
    setter's encoding checks (the body is as the provider sent it, or the proxy's own JSON) or the
    constructor's type checks (see ``_RESPONSE``)."""
    fields = [
        (k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
        for k, v in reply.headers.items()
    ]
    fields.append((b"content-length", str(len(reply.body)).encode()))
    data = copy.copy(_RESPONSE.data)
    data.status_code, data.headers, data.content = reply.status, http.Headers(fields), reply.body
    data.reason = status_codes.RESPONSES.get(reply.status, "").encode()
    data.timestamp_start = data.timestamp_end = time.time()
    response = copy.copy(_RESPONSE)
    response.data = data
    return response


def hop(flow: http.HTTPFlow) -> dict[str, str]:
    """The client connection's own header (``connection: close``), which mitmproxy reads from the
    flow's request to decide whether to close the client's connection after the answer."""
    value = flow.request.headers.get("connection")
    return {"connection": value} if value else {}


def say_destination(flow: http.HTTPFlow, line: str) -> None:
    """mitmdump prints the line with its own flow lines (and only for the flows it shows): a log
    record per request would cost a hook call on every addon (mitmproxy's ``add_log``), about a
    twentieth of a small call's CPU. Without a dumper (mitmweb) it is an ordinary log line."""
    master = getattr(ctx, "master", None)
    dumper = master.addons.get("dumper") if master else None
    if dumper is None:
        logger.info(line)
    elif ctx.options.flow_detail > 0 and dumper.match(flow):
        dumper.echo(line, dim=True)


def show_own_path(flow: http.HTTPFlow) -> None:
    """An answer of the proxy's own (models, usage, metrics, errors) shows the listener's address,
    not the reverse mode's placeholder upstream."""
    if listeners.surface(flow) != "proxy" and flow.client_conn.sockname:
        flow.request.host, flow.request.port = flow.client_conn.sockname[:2]


def provider_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower() not in FRAMING_HEADERS}


class Relay:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pending: dict[str, exchange.Exchange] = {}
        self.port = 0
        self.ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=False,  # never loop back through a proxy from the environment
            skip_auto_headers=("user-agent",),
            # One session serves every client: a cookie a provider sets (Cloudflare's bot cookie on
            # every answer) must not ride on the next client's request. The client gets it as sent.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # handler_cancellation: a client that hangs up cancels the provider call too, instead of
        # the provider generating (and billing) until the stream ends or times out.
        server = web.Server(self.handle, access_log=None, handler_cancellation=True)
        # Every open stream is one connection from mitmproxy: the default backlog of 100 refuses
        # a burst of hundreds of streams starting at once.
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(server, "127.0.0.1", 0, backlog=RELAY_BACKLOG)
        self.port = self._server.sockets[0].getsockname()[1]
        self.ready.set()
        logger.debug(f"LLM egress relay on 127.0.0.1:{self.port}")

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        if self._session:
            await self._session.close()

    async def fetch_json(self, url: str, headers: dict[str, str], timeouts: Timeouts) -> Any:
        """A provider's JSON by GET (model lists); errors say what failed, never with a key."""
        await self.ready.wait()
        assert self._session is not None
        host = urlsplit(url).netloc
        try:
            async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
                async with self._session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status >= 400:
                        raise RuntimeError(f"{host} answered HTTP {response.status}")
                    return await response.json(content_type=None)
        except TimeoutError:
            raise RuntimeError(f"{host} did not answer in time") from None
        except (aiohttp.ClientError, ValueError) as e:
            raise RuntimeError(f"{host} failed: {type(e).__name__}") from None

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """The relay's side of a stream: the flow's attempts, then the chosen answer streamed."""
        ex = self.pending.pop(request.headers.get(RELAY_HEADER, ""), None)
        if ex is None:
            reply = error_reply(ProxyError("internal", "egress relay: unknown or expired flow"))
        else:
            try:
                outcome = await self._stream_outcome(ex)
            except Exception:  # a bug of the proxy's: answered as an error, never as a traceback
                logger.exception("LLM egress relay failed")
                outcome = Outcome(reply=error_reply(ex.fail(ProxyError("internal", INTERNAL))))
            if outcome.response is not None:
                try:
                    return await self._relay_body(request, ex, outcome.response, outcome.head)
                finally:
                    outcome.response.release()
            assert outcome.reply is not None
            reply = outcome.reply
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    async def _stream_outcome(self, ex: exchange.Exchange) -> Outcome:
        """A stream's chosen answer: dispatched, asked again while empty, held for the verifier."""
        outcome = await self.dispatch(ex)
        for _ in range(self.settings.config.empty_answer.retries):
            if not outcome.empty or not self._recover(ex, outcome):
                break
            outcome = await self.dispatch(ex)
        if outcome.response is not None and ex.review is not None:
            outcome = await ex.review(outcome)  # the verifier holds this stream (addons/verifier.py)
        return outcome

    async def fetch(self, ex: exchange.Exchange) -> http.Response:
        """A whole answer, fetched here in the request hook: no relay hop."""
        outcome = await self.dispatch(ex)
        if outcome.response is None:
            assert outcome.reply is not None
            reply = outcome.reply
        else:
            try:
                reply = await self._read_body(ex, outcome.response)
            finally:
                outcome.response.release()
        return whole_response(reply)

    async def dispatch(self, ex: exchange.Exchange) -> Outcome:
        """Try the candidates in order (keys, instances, fallbacks) until one answers; the
        result has a response or a reply, never only a failure."""
        await self.ready.wait()
        failover = self.settings.config.failover
        loop = asyncio.get_running_loop()
        deadline = loop.time() + failover.deadline
        budget = failover.attempts
        last: ProxyError | None = None
        refused: list[str] = []  # instances that refused the model lately
        for index, target in enumerate(ex.candidates):
            if budget <= 0 or loop.time() >= deadline:
                break
            availability = self.settings.availability
            if availability.is_unsupported(target.instance, target.model):
                ex.attempts.append(
                    exchange.Attempt(target.instance, target.model, "", error="model unsupported")
                )
                refused.append(target.instance)
                continue
            try:
                upstream = ex.upstream if index == 0 and ex.upstream else prepare(ex, target)
            except ProxyError as e:  # this target cannot express the request
                last = e
                continue
            body = upstream.body if upstream.body is not None else ex.client_content
            keys = availability.usable_keys(
                target.instance, target.backend.api_keys, target.backend.key_policy
            )
            if not keys:
                last = self._cooling_down(ex, target)
                continue
            for key in keys:
                if budget <= 0 or loop.time() >= deadline:
                    break
                budget -= 1
                outcome = await self._attempt(ex, upstream, body, key, deadline)
                if outcome.response is not None or outcome.reply is not None:
                    return outcome
                last = outcome.failure
                if not outcome.next_key:
                    break
        if last is None and refused:
            last = self._refused_everywhere(ex, refused)
        if last is None:
            last = ProxyError("upstream_error", "no backend could be tried for this request")
        elif budget <= 0 or loop.time() >= deadline:
            last.message += f" (gave up after {len(ex.attempts)} attempt(s))"
        return Outcome(reply=error_reply(ex.fail(last)))

    def _refused_everywhere(self, ex: exchange.Exchange, instances: list[str]) -> ProxyError:
        """Every instance refused the model lately: the client's own "model not found"."""
        model = ex.candidates[0].model
        said = self.settings.availability.refusal(instances[0], model)
        wait = self.settings.config.failover.unsupported_model_seconds
        message = (
            f"model {model!r} is not available: {', '.join(instances)} refused it"
            + (f" ({said})" if said else "")
            + f"; it is tried again {wait:g} s after the refusal, or at once after"
            " POST /v1/diagnostics/backends/<instance>/reactivate?clear_models=true"
        )
        return ProxyError("not_found", message, param="model")

    def _cooling_down(self, ex: exchange.Exchange, target: Target) -> ProxyError:
        ready = self.settings.availability.ready_at(target.instance, target.backend.api_keys)
        wait = max(0.0, ready - time.time()) if ready else None
        if wait is not None:
            state = f"rate limited for {wait:.0f} s more"
        else:
            reactivate = f"POST /v1/diagnostics/backends/{target.instance}/reactivate brings it back"
            state = f"disabled ({reactivate})"
        message = f"every key of backend {target.instance} is {state}"
        ex.attempts.append(exchange.Attempt(target.instance, target.model, "", error=message))
        code = "rate_limited" if wait is not None else "upstream_error"
        return ProxyError(code, message, status=429 if wait is not None else 503, retry_after=wait)

    async def _attempt(
        self, ex: exchange.Exchange, upstream: Upstream, body: bytes, key: str, deadline: float
    ) -> Outcome:
        target = upstream.target
        attempt = exchange.Attempt(target.instance, target.model, upstream.url)
        ex.attempts.append(attempt)
        headers = {**upstream.headers, **(target.family.auth_headers(key) if key else {})}
        availability = self.settings.availability
        try:
            response = await self._send(upstream.url, headers, body, target.backend.timeouts, deadline)
        except ProxyError as e:
            attempt.error = e.message
            availability.failed(target.instance, key, e.message)
            return Outcome(failure=e, next_key=False)  # the instance is unreachable, not the key
        attempt.status = response.status
        if response.status in RETRY_STATUSES or response.status in KEY_STATUSES or response.status == 404:
            outcome = await self._refused(ex, upstream, key, response)
            attempt.error = outcome.failure.message if outcome.failure else None
            return outcome
        head: list[bytes] = []
        empty = False
        if response.status == 200 and response.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            hold = self.settings.config.empty_answer.retries > 0
            head, first_error, empty = await self._peek(response, target, hold)
            if first_error is not None:
                response.release()
                attempt.error = first_error.message
                self._learn(target, key, first_error, response.headers)
                return Outcome(failure=first_error)
        if response.status < 400:
            availability.succeeded(target.instance, key)
        ex.commit(upstream)
        ex.first_byte = time.time()
        return Outcome(response=response, head=head, empty=empty)

    async def _refused(
        self, ex: exchange.Exchange, upstream: Upstream, key: str, response: aiohttp.ClientResponse
    ) -> Outcome:
        """Read a provider's refusal and decide: fail over, or (a 404 that is not about the
        model) hand it to the client as it is."""
        target = upstream.target
        content = self.settings.redact(await response.read())
        response.release()
        error = translators.get(target.protocol).parse_error(response.status, content)
        if response.status == 404:
            if not about_model(target, error, content):
                ex.commit(upstream)
                return Outcome(reply=Reply(404, provider_headers(response), content))
            self.settings.availability.model_unsupported(target.instance, target.model, error.message)
            return Outcome(failure=error, next_key=False)
        self._learn(target, key, error, response.headers)
        return Outcome(failure=error)

    def _learn(self, target: Target, key: str, error: ProxyError, headers: Any) -> None:
        availability = self.settings.availability
        if error.status == 429 or error.code == "rate_limited":
            error.retry_after = availability.rate_limited(
                target.instance, key, retry_after(headers, error), error.message
            )
        elif error.status in KEY_STATUSES:
            availability.failed(target.instance, key, error.message, authentication=True)
        else:
            availability.failed(target.instance, key, error.message)

    async def _send(
        self, url: str, headers: dict[str, str], body: bytes, timeouts: Timeouts, deadline: float
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        host = urlsplit(url).netloc
        limit = timeouts.connect + timeouts.first_byte
        budget = min(limit, deadline - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(budget):
                return await self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
                    allow_redirects=False,
                )
        except TimeoutError:
            raise ProxyError("timeout", f"upstream {host} did not answer within {budget:g} s") from None
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror if e.os_error and e.os_error.strerror else type(e.os_error).__name__
            raise ProxyError("upstream_unreachable", f"cannot connect to upstream {host}: {reason}") from None
        except aiohttp.ClientError as e:
            raise ProxyError("upstream_error", f"upstream {host} failed: {type(e).__name__}") from None

    async def _peek(
        self, response: aiohttp.ClientResponse, target: Target, hold: bool
    ) -> tuple[list[bytes], ProxyError | None, bool]:
        """Read up to the stream's first event: an error there (Anthropic's overloaded, an
        OpenRouter error chunk) can still fail over, because nothing reached the client yet. With
        ``hold`` (the empty-answer retry is on) read on, within the same bound, to the first event
        that carries content (``policies.guards``) or the stream's end: the third value says it
        ended with none. Only whole SSE blocks are decoded, and only until then."""
        decoder = translators.get(target.protocol).StreamDecoder()
        head: list[bytes] = []
        pending = b""
        try:
            async with asyncio.timeout(target.backend.timeouts.idle):  # the hold's time bound too
                while sum(map(len, head)) < PEEK_LIMIT:
                    chunk = await response.content.readany()
                    if not chunk:
                        return head, None, hold and not pending.strip()
                    head.append(chunk)
                    pending += chunk
                    while (end := _block_end(pending)) > 0:
                        events, pending = decoder.feed(pending[:end]), pending[end:]
                        for event in events:
                            if isinstance(event, StreamError):
                                return head, ProxyError.from_dict(event.error), False
                            if not hold or carries_content(event):
                                return head, None, False
        except (TimeoutError, aiohttp.ClientError):
            pass  # the relay loop meets the same fault and reports it in-band
        return head, None, False

    def _recover(self, ex: exchange.Exchange, outcome: Outcome) -> bool:
        """An empty stream, not a byte of it sent: make the request again with the recovery note
        (``empty_answer``); False when it cannot be expressed (the empty stream then goes on)."""
        assert outcome.response is not None
        try:
            ex.rewrite(with_recovery_note(ex.canonical()))
            ex.upstream = prepare(ex, ex.candidates[0])
        except ProxyError:
            return False
        outcome.response.release()
        ex.decisions.append(Decision("empty_answer", "retry", "", "empty answer", "stream"))
        logger.info(f"LLM policy empty_answer retry: {ex!r} streamed an empty answer")
        return True

    async def read_ahead(self, ex: exchange.Exchange, outcome: Outcome, limit: int) -> bool:
        """Read a stream's answer on into ``outcome.head`` (which the relay sends first), up to
        ``limit`` bytes: True when the stream ended within them. A fault ends the reading; the
        relay meets it again and reports it in-band."""
        response = outcome.response
        assert response is not None and ex.target is not None
        idle, loop = ex.target.backend.timeouts.idle, asyncio.get_running_loop()
        size = sum(map(len, outcome.head))
        try:
            async with asyncio.timeout(None) as deadline:
                while size < limit:
                    deadline.reschedule(loop.time() + idle)
                    if not (chunk := await response.content.readany()):
                        return True
                    outcome.head.append(chunk)
                    size += len(chunk)
        except (TimeoutError, aiohttp.ClientError):
            pass
        return False

    async def _read_body(self, ex: exchange.Exchange, upstream: aiohttp.ClientResponse) -> Reply:
        """A whole answer, read within the backend's idle timeout."""
        assert ex.target is not None
        idle = ex.target.backend.timeouts.idle
        try:
            async with asyncio.timeout(idle):
                body = await upstream.read()
        except (TimeoutError, aiohttp.ClientError) as e:
            return error_reply(ex.fail(broke_off(e, idle)))
        return Reply(upstream.status, provider_headers(upstream), body)

    async def _relay_body(
        self,
        request: web.BaseRequest,
        ex: exchange.Exchange,
        upstream: aiohttp.ClientResponse,
        head: list[bytes],
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=provider_headers(upstream)
        )
        ex.release_body()  # the request is sent for good: only the answer matters from here
        await response.prepare(request)
        assert ex.target is not None
        idle = ex.target.backend.timeouts.idle
        loop = asyncio.get_running_loop()
        try:
            for chunk in head:
                await response.write(chunk)
            async with asyncio.timeout(None) as deadline:
                while not ex.cut:
                    deadline.reschedule(loop.time() + idle)
                    chunk = await upstream.content.readany()
                    if not chunk:
                        break
                    await response.write(chunk)
            if ex.cut:  # a stage ended the answer (addons/stages.py): the provider stops generating
                upstream.close()
        except (TimeoutError, aiohttp.ClientError) as e:
            error = ex.fail(broke_off(e, idle))
            if upstream.headers.get("content-type", "").startswith("text/event-stream"):
                await response.write(in_band_error(ex.target.protocol, error))
        except ConnectionError:
            return response  # the client went away; nothing left to tell it
        await response.write_eof()
        return response


class Egress:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay = Relay(settings)

    def running(self) -> None:
        asyncio_utils.create_task(self.relay.start(), name="llm egress relay", keep_ref=True)

    def done(self) -> None:
        asyncio_utils.create_task(self.relay.stop(), name="llm egress relay stop", keep_ref=True)

    async def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or not ex.candidates or flow.response:
            if flow.response is not None and (ex is None or not ex.attempts):
                show_own_path(flow)
            return
        if ex.upstream is None and not self._prepare_first(flow, ex):
            show_own_path(flow)
            return
        upstream = ex.upstream
        assert upstream is not None
        if not ex.stream:
            try:
                flow.response = await self.relay.fetch(ex)
            except Exception:  # a bug of the proxy's: the client still gets an answer it can read
                logger.exception("LLM egress failed")
                flow.response = error_response(ex.client_protocol, ex.fail(ProxyError("internal", INTERNAL)))
                return
            show_destination(flow, ex)
            return
        await self.relay.ready.wait()
        self.relay.pending[flow.id] = ex
        path = urlsplit(upstream.url)
        flow.request.url = f"http://127.0.0.1:{self.relay.port}{path.path}" + (
            f"?{path.query}" if path.query else ""
        )
        kept = hop(flow)
        flow.request.headers.clear()
        flow.request.headers.update({**upstream.headers, **kept})
        flow.request.headers["host"] = f"127.0.0.1:{self.relay.port}"
        # The relay sends the prepared body itself: mitmproxy hands it no copy to write, read and
        # hold for the stream's lifetime. show_destination puts the body back for the flow's views.
        flow.request.raw_content = b""
        flow.request.headers["content-length"] = "0"
        flow.request.headers[RELAY_HEADER] = flow.id

    def _prepare_first(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> bool:
        """The first target's request, after the request stages; refused at once if it cannot
        be expressed (as the router did before failover existed: no attempt is made)."""
        try:
            upstream = prepare(ex, ex.candidates[0])
        except ProxyError as e:
            ex.target = None
            flow.response = error_response(ex.client_protocol, ex.fail(e))
            return False
        ex.commit(upstream)
        if upstream.body is not None:
            flow.request.content = upstream.body
        exchange.publish(flow)
        return True

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if (ex := exchange.get(flow)) is not None and ex.stream and RELAY_HEADER in flow.request.headers:
            show_destination(flow, ex)  # the relay is connected: the request may name the provider now

    def error(self, flow: http.HTTPFlow) -> None:
        self.relay.pending.pop(flow.id, None)
