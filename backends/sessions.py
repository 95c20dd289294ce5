"""Proxy-side sessions: one per conversation, scoped by the client's identity (B2BUA style).

The session id is the proxy's own; what the client sends (a session header, a metadata field, a
fingerprint of the conversation's start) only finds it, within the client's scope, and is never
forwarded upstream by the proxy's own doing. Policies keep per-session state in ``state`` under
their own name. README "Sessions".
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Session:
    id: str  # the proxy's own id (x-llm-session)
    client: str  # the identity that scopes it (proxy key name, credential digest or address)
    model: str | None = None  # backend:model chosen with !/model (None: as the client asks)
    oneoff: str | None = None  # backend:model for the next request only (!/oneoff)
    settings: dict[str, Any] = field(default_factory=dict)  # !/set values (model, temperature, …)
    turns: int = 0  # requests served in this session
    user_turns: int = 0  # of which started by a new user message (not a tool follow-up)
    created: float = field(default_factory=time.time)
    last_seen: float = field(default_factory=time.time)
    state: dict[str, Any] = field(default_factory=dict)  # per-policy state, keyed by policy name
    user_turn: bool = False  # the latest request ended with a new user message (not a tool result)


@dataclass
class Found:
    """A lookup's result: the session and whether this request opened it."""

    session: Session
    new: bool


class SessionTable:
    """The live sessions, in memory and bounded: at most ``max`` (the least recently seen go
    first) and none unseen for ``idle_seconds``. ``keys`` are the lookup keys a client's requests
    carry (already scoped and digested by the caller); each session remembers its own, so an
    evicted session takes them along. Nothing here touches the disk: ``on_change`` and
    ``on_drop`` hand the rows to the store's writer."""

    def __init__(
        self,
        max_sessions: int,
        idle_seconds: float,
        on_change: Callable[[Session, list[str]], None] | None = None,
        on_drop: Callable[[Session], None] | None = None,
    ) -> None:
        self.max, self.idle = max_sessions, idle_seconds
        self.on_change, self.on_drop = on_change, on_drop
        self.sessions: OrderedDict[str, Session] = OrderedDict()  # least recently seen first
        self.keys: dict[str, str] = {}  # lookup key -> session id
        self.key_lists: dict[str, list[str]] = {}  # session id -> its lookup keys

    def __len__(self) -> int:
        return len(self.sessions)

    def find(self, client: str, key: str, now: float | None = None) -> Found:
        """The session ``key`` names, else a new one for ``client`` under that key."""
        now = time.time() if now is None else now
        self.expire(now)
        sid = self.keys.get(key)
        if sid is not None and (session := self.sessions.get(sid)) is not None:
            session.last_seen = now
            self.sessions.move_to_end(sid)
            return Found(session, False)
        session = Session(id="s-" + secrets.token_hex(8), client=client, created=now, last_seen=now)
        self.add(session, [key])
        return Found(session, True)

    def add(self, session: Session, keys: list[str]) -> None:
        self.sessions[session.id] = session
        self.sessions.move_to_end(session.id)
        self.key_lists[session.id] = keys
        for key in keys:
            self.keys[key] = session.id
        while len(self.sessions) > self.max:
            self.drop(next(iter(self.sessions.values())))

    def changed(self, session: Session) -> None:
        if self.on_change is not None:
            self.on_change(session, self.key_lists.get(session.id, []))

    def expire(self, now: float) -> None:
        """Forget sessions idle too long (the oldest are at the front: stop at the first live one)."""
        while self.sessions:
            oldest = next(iter(self.sessions.values()))
            if now - oldest.last_seen <= self.idle:
                return
            self.drop(oldest)

    def drop(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for key in self.key_lists.pop(session.id, []):
            if self.keys.get(key) == session.id:
                del self.keys[key]
        if self.on_drop is not None:
            self.on_drop(session)

    def report(self) -> list[dict[str, Any]]:
        """What diagnostics show: identity and counters, never content or lookup keys."""
        return [
            {
                "id": s.id,
                "client": s.client,
                "model": s.model,
                "turns": s.turns,
                "user_turns": s.user_turns,
                "created": round(s.created, 3),
                "last_seen": round(s.last_seen, 3),
            }
            for s in reversed(self.sessions.values())
        ]
