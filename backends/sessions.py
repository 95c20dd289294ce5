"""Proxy-side sessions: one per conversation, scoped by the client's identity (B2BUA style).

The session id is the proxy's own; what the client sends (a session header, a metadata field, a
fingerprint of the conversation's start) only finds it, within the client's scope, and is never
forwarded upstream by the proxy's own doing. Policies keep per-session state in ``state`` under
their own name. README "Sessions".
"""

from __future__ import annotations

import time
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
