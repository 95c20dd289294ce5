"""``GET /v1/models`` (and its Anthropic and Gemini twins): the models reachable through the proxy.

Sources: the literal names in each backend's ``models`` (globs are patterns, not models) and,
for backends with ``discover_models``, the provider's own list, cached for
``models_cache_seconds``. A backend that fails to answer is reported in the listing, never fatal.
Each model appears as its canonical ``vendor/model`` id and as the ``backend:model`` selector
that reaches it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mitmproxy import http

from addons.replies import json_response
from addons.settings import Settings
from backends.config import BackendConfig

logger = logging.getLogger(__name__)

KEY = "llm_models"  # flow.metadata: the protocol whose listing shape the client wants
GLOB_CHARS = frozenset("*?[")
VENDORS = {"openai": "openai", "openai-responses": "openai", "anthropic": "anthropic", "gemini": "google"}


@dataclass(frozen=True)
class Listed:
    id: str
    instance: str
    canonical: str  # vendor/model


def canonical_id(instance: str, backend: BackendConfig, model: str) -> str:
    if "/" in model:
        return model  # already vendor/model (OpenRouter)
    return f"{VENDORS.get(backend.type, instance)}/{model}"


def parse_model_ids(family_type: str, body: Any) -> list[str]:
    if family_type == "gemini":
        return [
            m["name"].removeprefix("models/")
            for m in body.get("models", [])
            if isinstance(m, dict) and "name" in m
        ]
    return [m["id"] for m in body.get("data", []) if isinstance(m, dict) and "id" in m]


class ModelCatalog:
    def __init__(self, settings: Settings, fetch_json: Any) -> None:
        """``fetch_json(url, headers, timeouts) -> Any`` is the egress relay's GET."""
        self.settings = settings
        self.fetch_json = fetch_json
        self.cache: dict[str, tuple[float, list[str]]] = {}

    async def request(self, flow: http.HTTPFlow) -> None:
        protocol = flow.metadata.get(KEY)
        if protocol is None or flow.response:
            return
        listed, errors = await self.catalog()
        flow.response = json_response(200, shape(protocol, listed, errors))

    async def catalog(self) -> tuple[list[Listed], dict[str, str]]:
        listed: list[Listed] = []
        errors: dict[str, str] = {}
        for instance, backend in self.settings.config.backends.items():
            names = [m for m in backend.models if not GLOB_CHARS & set(m)]
            if backend.discover_models:
                try:
                    names += await self._discover(instance, backend)
                except Exception as e:  # reported in the listing, never fatal
                    errors[instance] = str(e) or type(e).__name__
            for model in dict.fromkeys(names):
                canonical = canonical_id(instance, backend, model)
                listed += [
                    Listed(canonical, instance, canonical),
                    Listed(f"{instance}:{model}", instance, canonical),
                ]
        unique = {entry.id: entry for entry in reversed(listed)}
        return [e for e in listed if unique[e.id] is e], errors

    async def _discover(self, instance: str, backend: BackendConfig) -> list[str]:
        cached = self.cache.get(instance)
        if cached and cached[0] > time.time():
            return cached[1]
        from backends.families import FAMILIES

        family = FAMILIES[backend.type]
        keys = self.settings.availability.usable_keys(instance, backend.api_keys, "fill_first")
        headers = {**family.extra_headers, **(family.auth_headers(keys[0]) if keys and keys[0] else {})}
        body = await self.fetch_json(family.models_url(backend.base_url), headers, backend.timeouts)
        ids = parse_model_ids(backend.type, body)
        self.cache[instance] = (time.time() + self.settings.config.models_cache_seconds, ids)
        return ids


def shape(protocol: str, listed: list[Listed], errors: dict[str, str]) -> dict[str, Any]:
    """The listing in the client protocol's own shape; unreachable backends under ``errors``."""
    extra = {"errors": errors} if errors else {}
    if protocol == "anthropic":
        created = datetime.fromtimestamp(0, UTC).isoformat().replace("+00:00", "Z")
        data = [{"type": "model", "id": e.id, "display_name": e.id, "created_at": created} for e in listed]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return {"data": data, "has_more": False, "first_id": first, "last_id": last, **extra}
    if protocol == "gemini":
        models = [
            {
                "name": f"models/{e.id}",
                "baseModelId": e.id,
                "displayName": e.id,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for e in listed
        ]
        return {"models": models, **extra}
    now = int(time.time())
    data = [
        {"id": e.id, "object": "model", "created": now, "owned_by": e.instance, "canonical_id": e.canonical}
        for e in listed
    ]
    return {"object": "list", "data": data, **extra}
