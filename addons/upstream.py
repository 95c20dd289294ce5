"""The request one target gets: its URL, its headers (credentials aside) and its body.

One home for it, because three stages need it: the egress prepares the first target and every
failover target, and token counting prepares a forwarded count call. Same protocol on both sides
and nothing to rewrite (and, for a call to a preset provider's own host, that provider answering)
→ the client's body goes upstream as it came (only the model name changes
when it differs, spliced into the bytes rather than re-serialised: agent bodies are hundreds of KB,
and docs/snags.md #25 asks to change only what is meant). Otherwise the canonical request is
rendered for the target's protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import translators
from backends.presets import PRESETS
from backends.routing import Target
from translators import wire
from translators.canonical import ChatRequest, ReasoningConfig

if TYPE_CHECKING:
    from addons.exchange import Exchange

PRESET_NAMES = frozenset(preset.name for preset in PRESETS)
# Client headers never forwarded: credentials (the proxy injects its own), hop-by-hop and
# framing headers, and anything the proxy itself uses.
DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "accept-encoding",
        "proxy-connection",
    }
)
MODEL_MEMBER = re.compile(rb'"model"\s*:\s*"')
# A key written with an escape ("mod\\u0065l") could hide the top-level member from MODEL_MEMBER.
ESCAPED_KEY = re.compile(rb'"[^"\\]*\\u[0-9a-fA-F]{4}[^"]*"\s*:')
SPLICE_LIMIT = 64 * 1024  # bytes: above, re-serialising costs less than proving the splice safe
REQUEST_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "frequency_penalty",
    "presence_penalty",
)


@dataclass
class Upstream:
    """One target's request: where, which headers (credentials are added by the egress only),
    the body (None: the client's bytes unchanged) and whether it passes through untranslated."""

    target: Target
    url: str
    headers: dict[str, str]
    body: bytes | None
    passthrough: bool


def speaks_dialect_of_another(ex: Exchange, target: Target) -> bool:
    """Did the client call a preset provider's own host (``dashscope.aliyuncs.com``) while another
    family answers? Then its body is that provider's dialect (Qwen Code adds DashScope's
    ``preserve_thinking``, which OpenAI refuses) and is rendered anew instead of passed on."""
    return ex.host_family in PRESET_NAMES and ex.host_family != target.family.name


def prepare(ex: Exchange, target: Target) -> Upstream:
    """The request for ``target``; raises ProxyError when the target cannot express it."""
    passthrough = (
        target.protocol == ex.client_protocol
        and not target.params
        and not ex.defaults
        and not ex.rewritten
        and not speaks_dialect_of_another(ex, target)
    )
    if passthrough:
        body = None
        if ex.client_protocol != "gemini" and ex.body.get("model") != target.model:
            body = with_model(ex.client_content, ex.body, target.model)
    else:
        request = with_parameters(ex.canonical(), target, ex.defaults)
        options = target.family.render_options(target.protocol)  # e.g. reasoning sent back
        body = wire.dumps(translators.get(target.protocol).render_request(request, **options))
    url = target.url(ex.stream, sse=ex.gemini_sse if passthrough else True)
    headers = upstream_headers(ex, target, passthrough)
    if body is not None:
        headers.pop("content-encoding", None)  # a body the proxy wrote is plain JSON
    return Upstream(target, url, headers, body, passthrough)


def with_model(content: bytes, body: dict, model: str) -> bytes:
    """``content`` with its top-level ``model`` replaced. When the document holds exactly one
    ``"model": "…"`` member (a key inside a JSON string is escaped and cannot match) and no key is
    written with a backslash-u escape, that one is the top-level member and its value is spliced;
    otherwise the body is serialised anew. Proving that takes two searches of the whole body, which
    cost several times orjson's serialisation of the decoded document: bodies over ``SPLICE_LIMIT``
    are serialised anew (the same document, in orjson's bytes)."""
    if len(content) > SPLICE_LIMIT:
        return wire.dumps({**body, "model": model})
    members = list(islice(MODEL_MEMBER.finditer(content), 2))
    old = body.get("model")
    if len(members) == 1 and isinstance(old, str) and not ESCAPED_KEY.search(content):
        start, needle = members[0].end() - 1, wire.dumps(old)
        if content.startswith(needle, start):
            return content[:start] + wire.dumps(model) + content[start + len(needle) :]
    return wire.dumps({**body, "model": model})


def upstream_headers(ex: Exchange, target: Target, passthrough: bool) -> dict[str, str]:
    headers = dict(target.family.extra_headers)
    if passthrough:
        for name, value in ex.client_headers.items():
            lower = name.lower()
            if lower not in DROPPED_HEADERS and not lower.startswith("x-llm-"):
                headers[lower] = value
    else:
        headers["accept"] = "text/event-stream" if ex.stream else "application/json"
    headers["content-type"] = "application/json"
    return headers


def with_parameters(request: ChatRequest, target: Target, defaults: dict) -> ChatRequest:
    """Selector parameters override the request; route-rule parameters fill what it left unset."""
    update = {k: v for k, v in defaults.items() if k in REQUEST_FIELDS and getattr(request, k) is None}
    if "reasoning_effort" in defaults and request.reasoning is None:
        update["reasoning"] = ReasoningConfig(effort=str(defaults["reasoning_effort"]))
    update.update({k: v for k, v in target.params.items() if k != "reasoning_effort"})
    if "reasoning_effort" in target.params:
        update["reasoning"] = ReasoningConfig(effort=target.params["reasoning_effort"])
    return request.model_copy(update={**update, "model": target.model})
