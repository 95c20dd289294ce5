"""Model listings answered locally, in the shape of each client protocol.

Lists the literal model names of each backend's ``models`` (globs are selectors, not models),
each both bare and as the ``backend:model`` selector that reaches it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from mitmproxy import http

from addons.replies import json_response
from backends.config import Config

GLOB_CHARS = set("*?[")


def model_ids(config: Config) -> list[tuple[str, str]]:
    """(id, owner) pairs: every literal model, then its selector form."""
    ids: list[tuple[str, str]] = []
    for instance, backend in config.backends.items():
        for model in backend.models:
            if not GLOB_CHARS & set(model):
                ids += [(model, instance), (f"{instance}:{model}", instance)]
    return list(dict.fromkeys(ids))


def listing(protocol: str, config: Config) -> http.Response:
    ids = model_ids(config)
    if protocol == "anthropic":
        created = datetime.fromtimestamp(0, timezone.utc).isoformat().replace("+00:00", "Z")
        data = [{"type": "model", "id": i, "display_name": i, "created_at": created} for i, _ in ids]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return json_response(200, {"data": data, "has_more": False, "first_id": first, "last_id": last})
    if protocol == "gemini":
        models = [
            {
                "name": f"models/{i}",
                "baseModelId": i,
                "displayName": i,
                "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
            }
            for i, _ in ids
        ]
        return json_response(200, {"models": models})
    now = int(time.time())
    data = [{"id": i, "object": "model", "created": now, "owned_by": owner} for i, owner in ids]
    return json_response(200, {"object": "list", "data": data})
