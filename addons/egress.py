"""The egress relay: the one place that talks to providers.

mitmproxy cannot send a response set in its ``error`` hook, nor stream a response an addon builds
(mitmproxy.md §4-5), yet timeouts, unreachable providers and (later) failover must all end in a
clean answer in the client's protocol. So each routed flow is pointed at a small aiohttp server on
loopback, in mitmproxy's own event loop, which makes the upstream call with a pooled client and
streams the provider's bytes back unchanged. Translation stays in mitmproxy's response stream.

What the relay answers itself:
- before any upstream byte: the canonical error as JSON, marked with ``x-llm-error`` so that the
  translate addon renders it in the client's protocol;
- after the stream began: the provider protocol's own in-band error event, which the stream
  translation turns into the client's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from mitmproxy import http
from mitmproxy.utils import asyncio_utils

import translators
from addons import exchange
from addons.settings import Settings
from backends.config import Timeouts
from translators.canonical import ChatRequest, StreamError
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

RELAY_HEADER = "x-llm-relay"
ERROR_HEADER = "x-llm-error"
# Response headers that describe the provider's framing, not the body the relay sends on.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive"})


@dataclass
class Plan:
    exchange: exchange.Exchange
    url: str
    headers: dict[str, str]
    timeouts: Timeouts
    protocol: str  # the provider's protocol, for in-band errors


def error_reply(error: ProxyError) -> web.Response:
    return web.Response(
        status=error.status,
        body=json.dumps(error.to_dict()).encode(),
        headers={"content-type": "application/json", ERROR_HEADER: "1"},
    )


def in_band_error(protocol: str, error: ProxyError) -> bytes:
    encoder = translators.get(protocol).StreamEncoder(ChatRequest(model=""))
    return encoder.encode([StreamError(error=error.to_dict())])


class Relay:
    def __init__(self) -> None:
        self.pending: dict[str, Plan] = {}
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
        )
        server = web.Server(self.handle, access_log=None)
        self._server = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.ready.set()
        logger.debug(f"LLM egress relay on 127.0.0.1:{self.port}")

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        if self._session:
            await self._session.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        plan = self.pending.pop(request.headers.get(RELAY_HEADER, ""), None)
        if plan is None:
            return error_reply(ProxyError("internal", "egress relay: unknown or expired flow"))
        body = await request.content.read()
        attempt = exchange.Attempt(plan.exchange.target.instance, plan.exchange.target.model, plan.url)
        plan.exchange.attempts.append(attempt)
        try:
            upstream = await self._send(plan, body)
        except ProxyError as e:
            attempt.error = e.message
            return error_reply(e)
        attempt.status = upstream.status
        plan.exchange.first_byte = time.time()
        try:
            return await self._relay_body(request, plan, upstream)
        finally:
            upstream.release()

    async def _send(self, plan: Plan, body: bytes) -> aiohttp.ClientResponse:
        assert self._session is not None
        host = urlsplit(plan.url).netloc
        timeouts = plan.timeouts
        try:
            async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
                return await self._session.post(
                    plan.url,
                    data=body,
                    headers=plan.headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
                    allow_redirects=False,
                )
        except TimeoutError:
            raise ProxyError(
                "timeout", f"upstream {host} did not answer within {timeouts.connect + timeouts.first_byte:g} s"
            ) from None
        except aiohttp.ClientConnectorError as e:
            reason = e.os_error.strerror if e.os_error and e.os_error.strerror else type(e.os_error).__name__
            raise ProxyError("upstream_unreachable", f"cannot connect to upstream {host}: {reason}") from None
        except aiohttp.ClientError as e:
            raise ProxyError("upstream_error", f"upstream {host} failed: {type(e).__name__}") from None

    async def _relay_body(
        self, request: web.BaseRequest, plan: Plan, upstream: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in FRAMING_HEADERS}
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        await response.prepare(request)
        idle = plan.timeouts.idle
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    deadline.reschedule(loop.time() + idle)
                    chunk = await upstream.content.readany()
                    if not chunk:
                        break
                    await response.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as e:
            message = (
                f"upstream sent nothing for {idle:g} s"
                if isinstance(e, TimeoutError)
                else "upstream connection broke off mid-response"
            )
            error = ProxyError("timeout" if isinstance(e, TimeoutError) else "upstream_error", message)
            plan.exchange.error = error
            if upstream.headers.get("content-type", "").startswith("text/event-stream"):
                await response.write(in_band_error(plan.protocol, error))
        except ConnectionError:
            return response  # the client went away; nothing left to tell it
        await response.write_eof()
        return response


class Egress:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.relay = Relay()

    def running(self) -> None:
        asyncio_utils.create_task(self.relay.start(), name="llm egress relay", keep_ref=True)

    def done(self) -> None:
        asyncio_utils.create_task(self.relay.stop(), name="llm egress relay stop", keep_ref=True)

    async def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or ex.upstream is None or flow.response:
            return
        await self.relay.ready.wait()
        target, upstream = ex.target, ex.upstream
        ex.upstream = None
        headers = dict(upstream.headers)
        if key := self.settings.router.key_for(target.instance):
            headers.update(target.family.auth_headers(key))
        self.relay.pending[flow.id] = Plan(ex, upstream.url, headers, target.backend.timeouts, target.protocol)
        path = urlsplit(upstream.url)
        flow.request.url = f"http://127.0.0.1:{self.relay.port}{path.path}" + (f"?{path.query}" if path.query else "")
        flow.request.headers.clear()
        flow.request.headers.update(upstream.headers)
        flow.request.headers["host"] = f"127.0.0.1:{self.relay.port}"
        flow.request.headers["content-length"] = str(len(flow.request.raw_content or b""))
        flow.request.headers[RELAY_HEADER] = flow.id
        flow.comment = f"{target.instance}:{target.model} → {upstream.url}"

    def error(self, flow: http.HTTPFlow) -> None:
        self.relay.pending.pop(flow.id, None)
