"""Provider-safe tool names, reversible per request.

Clients declare tool names that some provider refuses: OpenAI caps names at 64 characters,
Anthropic wants ``^[a-zA-Z0-9_-]{1,64}$``, Gemini a letter or underscore first (docs/snags.md
#12), and Codex's namespaced tools (``namespace`` + ``name``) have no flat name at all. One
name that every provider accepts is chosen here, deterministically (the same declaration gives
the same name in every request, so history replayed later maps the same way), and the client's
declaration rides along on ``Tool.origin``; the client's encoder maps calls back with
``Names.origin``.
"""

from __future__ import annotations

import hashlib
import re

from translators.canonical import Tool, ToolOrigin

LIMIT = 64  # the shortest cap among the providers (OpenAI, Anthropic)
# What every provider accepts: Anthropic's character set, Gemini's first character.
SAFE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_-]")
NAMESPACE_JOIN = "__"
HASH_CHARS = 8


def flat(name: str, namespace: str | None = None) -> str:
    """The provider-safe name of ``name`` (inside ``namespace``): unchanged when already safe,
    else cleaned and, when changed or too long, suffixed with a hash of the declaration."""
    joined = f"{namespace}{NAMESPACE_JOIN}{name}" if namespace else name
    if SAFE.fullmatch(joined):
        return joined
    digest = hashlib.sha256(f"{namespace or ''}\0{name}".encode()).hexdigest()[:HASH_CHARS]
    cleaned = UNSAFE_CHAR.sub("_", joined)
    if not re.match(r"[A-Za-z_]", cleaned):
        cleaned = "_" + cleaned
    return f"{cleaned[: LIMIT - HASH_CHARS - 1]}_{digest}"


class Names:
    """The flat names of one request's tools: ``declare`` gives each declaration its name (a
    collision with a different declaration gets the hashed form), ``origin`` reads a call back."""

    def __init__(self) -> None:
        self._by_flat: dict[str, ToolOrigin | None] = {}
        self._by_origin: dict[tuple[str | None, str], str] = {}

    def declare(self, tool: Tool, origin: ToolOrigin | None) -> Tool:
        key = (origin.namespace, origin.name) if origin else (None, tool.name)
        name = flat(key[1], key[0])
        if name in self._by_flat and self._by_flat[name] != origin:
            digest = hashlib.sha256(f"{key[0] or ''}\0{key[1]}\0collision".encode()).hexdigest()
            name = f"{name[: LIMIT - HASH_CHARS - 1]}_{digest[:HASH_CHARS]}"
        if name != key[1] and origin is None:
            origin = ToolOrigin(name=key[1])
        self._by_flat[name] = origin
        self._by_origin[key] = name
        return tool.model_copy(update={"name": name, "origin": origin})

    def of(self, name: str, namespace: str | None = None) -> str:
        """The flat name a call in history uses (declared, else the deterministic one)."""
        return self._by_origin.get((namespace, name)) or flat(name, namespace)


def origins(tools: list[Tool]) -> dict[str, ToolOrigin]:
    """Flat name -> the client's declaration, for the tools that were reshaped."""
    return {tool.name: tool.origin for tool in tools if tool.origin is not None}
