"""Sessions and in-chat commands: which conversation a request continues, and what the user told
the proxy inside it.

Runs after FrontDoor (the exchange exists) and before RouteRequests, because the session's model
(``!/model``, ``!/oneoff``) and parameters (``!/set``) are handed to routing as the exchange's
model selector (``backend:model?temperature=…``): the router and the upstream stage apply them
exactly as if the client had asked. A request whose body holds no command prefix and whose
session has no overrides is never parsed here and keeps the byte-for-byte path.

Identity is B2BUA style (backends/sessions.py): what a client sends to say which conversation it
is in (CONTINUITY) is untrusted, so it is only a lookup key, digested together with the client's
scope (its proxy key, else a digest of its own credential, else its address): two clients never
reach each other's sessions, whatever they send. README "Sessions", "Commands"; docs/wire.md
"Session ids clients send".
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from mitmproxy import http

from addons import exchange
from addons.replies import error_response, proxy_answer
from addons.router import ROUTE_HEADER
from addons.settings import Settings
from addons.usage import client_identity
from backends.sessions import Session, SessionTable
from backends.store import Worker, ensure_schema, open_database
from policies.commands import MARK, CommandError, Commands, selector, status
from translators import wire
from translators.errors import ProxyError

logger = logging.getLogger(__name__)

SESSION_HEADER = "x-llm-session"
# Append-only (backends.store.ensure_schema).
SCHEMA = [
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, client TEXT NOT NULL, data TEXT NOT NULL, "
    "keys TEXT NOT NULL, last_seen REAL NOT NULL)",
]
CLAUDE_SESSION = re.compile(r"_session_([0-9A-Za-z-]+)")


def _claude_code(body: dict[str, Any]) -> str | None:
    """Claude Code's ``metadata.user_id``: a JSON string with ``session_id`` (2.x), or
    ``user_…_account_…_session_<uuid>`` (1.x); only the session part identifies a conversation."""
    user_id = (body.get("metadata") or {}).get("user_id") if isinstance(body.get("metadata"), dict) else None
    if not isinstance(user_id, str):
        return None
    if user_id.startswith("{"):
        try:
            value = json.loads(user_id).get("session_id")
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and value else None
    match = CLAUDE_SESSION.search(user_id)
    return match[1] if match else None


def _field(name: str) -> Callable[[dict[str, Any]], str | None]:
    return lambda body: value if isinstance(value := body.get(name), str) and value else None


# Where clients say which conversation a request belongs to, in order of trust (docs/wire.md).
# any client; Claude Code (also in metadata.user_id); older Codex releases
HEADER_IDS = ("x-session-id", "x-claude-code-session-id", "session_id")
BODY_IDS: dict[str, tuple[Callable[[dict[str, Any]], str | None], ...]] = {
    "anthropic": (_claude_code,),
    "openai-responses": (_field("prompt_cache_key"),),  # Codex: its thread id
    "openai-chat": (_field("prompt_cache_key"),),
    "gemini": (),  # Gemini CLI sends no session field to the Gemini API
}


def _start_openai_chat(body: dict[str, Any]) -> tuple[Any, Any]:
    """The first system (or developer) message and the first user message, read from the front:
    a long conversation is never walked."""
    system = None
    for message in body.get("messages") if isinstance(body.get("messages"), list) else []:
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            return system, message
        if role in ("system", "developer") and system is None:
            system = message
    return system, None


def _start_responses(body: dict[str, Any]) -> tuple[Any, Any]:
    items = body.get("input")
    if not isinstance(items, list):
        return body.get("instructions"), items
    user = next((m for m in items if isinstance(m, dict) and m.get("role") == "user"), None)
    return body.get("instructions"), user


def _start_anthropic(body: dict[str, Any]) -> tuple[Any, Any]:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return body.get("system"), next((m for m in messages if isinstance(m, dict)), None)


def _start_gemini(body: dict[str, Any]) -> tuple[Any, Any]:
    contents = body.get("contents") if isinstance(body.get("contents"), list) else []
    system = body.get("systemInstruction", body.get("system_instruction"))
    return system, next(
        (c for c in contents if isinstance(c, dict) and c.get("role", "user") == "user"), None
    )


# The conversation's start (system prompt, first user message) read from the decoded body.
START: dict[str, Callable[[dict[str, Any]], tuple[Any, Any]]] = {
    "openai-chat": _start_openai_chat,
    "openai-responses": _start_responses,
    "anthropic": _start_anthropic,
    "gemini": _start_gemini,
}


def _last(body: dict[str, Any], key: str) -> Any:
    items = body.get(key)
    return items[-1] if isinstance(items, list) and items else items


def _anthropic_user(message: Any) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    blocks = content if isinstance(content, list) else []
    return (
        isinstance(message, dict)
        and message.get("role") == "user"
        and not any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks)
    )


def _gemini_user(content: Any) -> bool:
    parts = content.get("parts") if isinstance(content, dict) else None
    return (
        isinstance(content, dict)
        and content.get("role", "user") == "user"
        and not any(isinstance(p, dict) and "functionResponse" in p for p in parts or [])
    )


# Does the request end with a new user message (rather than a tool result)?
USER_TURN: dict[str, Callable[[dict[str, Any]], bool]] = {
    "openai-chat": lambda b: isinstance(m := _last(b, "messages"), dict) and m.get("role") == "user",
    "openai-responses": lambda b: (
        isinstance(m := _last(b, "input"), str) or (isinstance(m, dict) and m.get("role") == "user")
    ),
    "anthropic": lambda b: _anthropic_user(_last(b, "messages")),
    "gemini": lambda b: _gemini_user(_last(b, "contents")),
}


def scope(ex: exchange.Exchange, address: str) -> str:
    """Whose sessions these are: the proxy key, else the client's own credential (digested), else
    its address. ``x-llm-client`` and body user fields are the client's word and scope nothing."""
    if ex.key is not None:
        return "key:" + ex.key.name
    headers = {k: v for k, v in ex.client_headers.items() if k.lower() != "x-llm-client"}
    return client_identity(headers, lambda: None, address)


def lookup_key(ex: exchange.Exchange, client: str) -> str:
    """The digest that finds this request's session within ``client``'s scope."""
    lower = {k.lower(): v for k, v in ex.client_headers.items()}
    sent = next((f"header:{lower[h]}" for h in HEADER_IDS if lower.get(h)), None)
    for read in BODY_IDS.get(ex.client_protocol, ()) if sent is None else ():
        if value := read(ex.body):
            sent = f"body:{value}"
            break
    if sent is None:
        sent = "start:" + wire.dumps(START[ex.client_protocol](ex.body)).decode()
    return hashlib.sha256(f"{client}\0{sent}".encode()).hexdigest()


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table = SessionTable(10_000, 3600.0, self._save, self._forget)
        self.worker: Worker | None = None
        self.path: Any = None

    # -- configuration and the state store ---------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        config = self.settings.config.sessions
        self.table.max, self.table.idle = config.max, config.idle_seconds
        prefix = self.settings.config.commands.prefix
        self.commands = Commands(prefix, lambda model: self.settings.router.is_explicit(model))
        self.needles = {prefix.encode(), wire.dumps(prefix)[1:-1]}
        path = self.settings.database_path
        if path is None or path == self.path:
            return
        try:
            conn = open_database(path)
            ensure_schema(conn, "sessions", SCHEMA)
            rows = conn.execute("SELECT data, keys FROM sessions ORDER BY last_seen").fetchall()
        except (OSError, sqlite3.Error) as e:
            logger.error(f"LLM sessions database {path}: {e}")
            return
        self.done()
        self.path, self.worker = path, Worker(conn, "llm-sessions")
        for data, keys in rows:  # at start-up only: requests never wait for the disk
            self.table.add(Session(**json.loads(data)), json.loads(keys))
        self.table.expire(time.time())

    def done(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.path, self.worker = None, None

    def _save(self, session: Session, keys: list[str]) -> None:
        if self.worker is None:
            return
        data = {k: v for k, v in vars(session).items() if k != "state"}  # policy state stays in memory
        data["settings"] = dict(session.settings)  # a snapshot: the row is written later
        self.worker.submit(partial(_store, data, list(keys)), key=session.id)  # the latest save wins

    def _forget(self, session: Session) -> None:
        if self.worker is not None:
            self.worker.submit(partial(_delete, session.id))

    def diagnostics(self) -> dict[str, Any]:
        return {"count": len(self.table), "max": self.table.max, "sessions": self.table.report()[:100]}

    # -- the request ------------------------------------------------------------------------

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or flow.response:
            return
        commands = self.settings.config.commands.enabled and self._has_prefix(flow, ex)
        if ex.operation != "generate":
            if commands:  # a count call: command text goes, nothing runs
                self._strip_only(flow, ex)
            return
        client = scope(ex, flow.client_conn.peername[0] if flow.client_conn.peername else "unknown")
        session = self.table.find(client, lookup_key(ex, client)).session
        ex.session = session
        if commands:
            if self._commands(flow, ex, session):
                return
        self._route(flow, ex, session)
        session.turns += 1
        session.user_turn = USER_TURN[ex.client_protocol](ex.body)
        session.user_turns += session.user_turn
        self.table.changed(session)

    def _route(self, flow: http.HTTPFlow, ex: exchange.Exchange, session: Session) -> None:
        """Hand the session's choice to routing. A model the user chose in the chat (``!/model``,
        ``!/oneoff``) is an explicit choice for this request, as ``x-llm-route`` is: route rules
        do not re-route it. Parameters alone ride on the selector and leave the rules their say."""
        if not (session.oneoff or session.model or session.settings):
            return  # the fast path: nothing of the session's own
        chosen = selector(session, ex.selector)
        if session.oneoff or session.model:
            flow.request.headers[ROUTE_HEADER] = chosen
        ex.selector, session.oneoff = chosen, None

    def _has_prefix(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> bool:
        """Does the decoded body hold the prefix anywhere? A byte search, no parse."""
        encoded = "content-encoding" in flow.request.headers
        content = (flow.request.get_content(strict=False) or b"") if encoded else ex.client_content
        return any(contains(content, needle) for needle in self.needles)

    def _commands(self, flow: http.HTTPFlow, ex: exchange.Exchange, session: Session) -> bool:
        """Run the last user message's commands and take command text out of the request; True
        when the proxy answered the request itself."""
        try:
            request, found, only = self.commands.strip_request(ex.canonical())
        except ProxyError as e:  # a body the client's protocol cannot carry: said in that protocol
            flow.response = error_response(ex.client_protocol, ex.fail(e))
            return True
        try:
            lines = self.commands.run(found, session)
        except CommandError as e:
            text = f"{MARK} {e}\n{self.commands.help()}"
            flow.response = self._answer(ex, session, text)
            return True
        if only:
            flow.response = self._answer(ex, session, f"{MARK} " + "\n".join(lines or [status(session)]))
            self.table.changed(session)
            return True
        ex.rewrite(request)
        return False

    def _strip_only(self, flow: http.HTTPFlow, ex: exchange.Exchange) -> None:
        try:
            ex.rewrite(self.commands.strip_request(ex.canonical())[0])
        except ProxyError as e:
            flow.response = error_response(ex.client_protocol, ex.fail(e))

    def _answer(self, ex: exchange.Exchange, session: Session, text: str) -> http.Response:
        response = proxy_answer(ex, text)
        response.headers[SESSION_HEADER] = session.id
        return response

    # -- the answer -------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._mark(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._mark(flow)

    def _mark(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is not None and ex.session is not None and flow.response is not None:
            flow.response.headers[SESSION_HEADER] = ex.session.id


def _store(data: dict[str, Any], keys: list[str], conn: Any) -> None:
    conn.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
        "data = excluded.data, keys = excluded.keys, last_seen = excluded.last_seen",
        (data["id"], data["client"], json.dumps(data), json.dumps(keys), data["last_seen"]),
    )


def contains(content: bytes, needle: bytes) -> bool:
    """``needle in content``, found by its first byte (memchr): CPython's general search of a
    two-byte needle in a large body costs about 25 times a scan for one byte."""
    first, start = needle[:1], content.find(needle[:1])
    while start != -1:
        if content.startswith(needle, start):
            return True
        start = content.find(first, start + 1)
    return False


def _delete(session_id: str, conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
