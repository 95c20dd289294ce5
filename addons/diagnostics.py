"""``GET /v1/diagnostics``: what state each backend is in and why; and reactivation.

Never shows a key: instances report how many keys they have and each key's hash-prefix id.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import http

from addons import exchange, listeners
from addons.replies import error_response, json_response
from addons.settings import Settings
from translators.errors import ProxyError

REACTIVATE = re.compile(r"^/v1/diagnostics/backends/(?P<instance>[^/]+)/reactivate$")
MAX_ENTRIES = 200  # per list in the report; more is cut and marked
RECENT_ATTEMPTS = 20


@dataclass
class InstanceStats:
    requests: int = 0
    errors: int = 0
    last_error: dict[str, Any] | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)


class Diagnostics:
    def __init__(self, settings: Settings, sections: dict[str, Callable[[], Any]] | None = None) -> None:
        self.settings = settings
        # Other addons' parts of the report (policy decisions, sessions, …): name -> plain data.
        self.sections = sections or {}
        self.stats: dict[str, InstanceStats] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or listeners.surface(flow) == "proxy":
            return
        path = flow.request.path.partition("?")[0]
        if path == "/v1/diagnostics" and flow.request.method == "GET":
            flow.response = json_response(200, self.report())
        elif (m := REACTIVATE.match(path)) and flow.request.method == "POST":
            flow.response = self._reactivate(m["instance"], flow.request.query.get("clear_models") == "true")

    def _reactivate(self, instance: str, clear_models: bool) -> http.Response:
        backend = self.settings.config.backends.get(instance)
        if backend is None:
            error = ProxyError("not_found", f"no backend instance {instance!r} is configured")
            return error_response("openai-chat", error)
        self.settings.availability.reactivate(instance, clear_models=clear_models)
        state = self.settings.availability.describe(instance, backend.api_keys)
        return json_response(200, {"instance": instance, **state})

    def response(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._count(flow)

    def _count(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None:
            return
        for attempt in ex.attempts:
            stats = self.stats.setdefault(attempt.instance, InstanceStats())
            stats.requests += 1
            failed = attempt.error is not None or (attempt.status or 0) >= 400
            entry = {
                "time": time.time(),
                "model": attempt.model,
                "status": attempt.status,
                "error": attempt.error,
            }
            stats.recent = (stats.recent + [entry])[-RECENT_ATTEMPTS:]
            if failed:
                stats.errors += 1
                stats.last_error = entry

    def report(self) -> dict[str, Any]:
        config, availability = self.settings.config, self.settings.availability
        backends = {}
        for name, backend in list(config.backends.items())[:MAX_ENTRIES]:
            stats = self.stats.get(name, InstanceStats())
            backends[name] = {
                "type": backend.type,
                "base_url": backend.base_url,
                "key_count": len(backend.api_keys),
                "key_policy": backend.key_policy,
                **availability.describe(name, backend.api_keys),
                "requests": stats.requests,
                "errors": stats.errors,
                "last_error": stats.last_error,
                "recent_attempts": stats.recent,
            }
        models: dict[str, list[str]] = {}
        for name, backend in config.backends.items():
            for pattern in backend.models or ["*"]:
                models.setdefault(pattern, []).append(name)
        counts = Counter({"backends": len(config.backends), "models": len(models)})
        return {
            "backends": backends,
            "default_backend": config.default_backend,
            "models": dict(list(models.items())[:MAX_ENTRIES]),
            **{name: section() for name, section in self.sections.items()},
            "truncated": {k: v - MAX_ENTRIES for k, v in counts.items() if v > MAX_ENTRIES} or None,
        }
