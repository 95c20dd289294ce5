"""Provider-safe tool names, reversible per request.

Clients declare tool names that some provider refuses: OpenAI caps names at 64 characters,
Anthropic wants ``^[a-zA-Z0-9_-]{1,64}$``, Gemini a letter or underscore first (docs/snags.md
#12), and Codex's namespaced tools (``namespace`` + ``name``) have no flat name at all. One
name that every provider accepts is chosen here, deterministically (the same declaration gives
the same name in every request, so history replayed later maps the same way), and the client's
declaration rides along on ``Tool.origin``; the client's encoder maps calls back with
``origins``. The Responses parser declares its tools (namespaced, custom) one by one; the Chat,
Anthropic and Gemini parsers, whose tools are plain functions, pass what they read through
``safe_names``, and their encoders read calls back with ``client_name``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from translators.canonical import ChatRequest, Message, Part, Tool, ToolCall, ToolOrigin, ToolResult

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


def client_name(name: str, known: dict[str, ToolOrigin]) -> str:
    """The name a client of plain function names declared for the call ``name`` (``known``: the
    request's ``origins``); a name nobody reshaped is the client's own."""
    origin = known.get(name)
    return origin.name if origin is not None else name


def safe_names(request: ChatRequest) -> ChatRequest:
    """``request`` as a parser read it, with the client's names, now with the names providers see:
    every declared tool through one ``Names`` (the client's name on ``Tool.origin``), then the calls
    and results in history and a named tool choice mapped the same way. Safe names stay as they
    are: a request with nothing to rename comes back equal to itself."""
    if all(SAFE.fullmatch(name) for name in set(_names(request))):
        return request  # the common case: nothing to rename, nothing copied
    names = Names()
    tools = [names.declare(tool, None) for tool in request.tools]
    messages = [_renamed(message, names) for message in request.messages]
    choice = request.tool_choice
    if choice is not None and choice.mode == "tool" and choice.name:
        choice = choice.model_copy(update={"name": names.of(choice.name)})
    return request.model_copy(update={"tools": tools, "messages": messages, "tool_choice": choice})


_NAMED = (ToolCall, ToolResult)  # the parts that carry a tool name, matched by exact type


def _names(request: ChatRequest) -> Iterator[str]:
    """Every tool name ``request`` carries: declared, called, answered, chosen."""
    yield from (tool.name for tool in request.tools)
    for message in request.messages:
        for part in message.content:
            if type(part) in _NAMED and part.name:  # a fifth of isinstance's cost, per part
                yield part.name
    if request.tool_choice is not None and request.tool_choice.name:
        yield request.tool_choice.name


def _renamed(message: Message, names: Names) -> Message:
    """``message`` with its calls' and results' names as ``names`` maps them (itself if none change)."""
    content: list[Part] = []
    changed = False
    for part in message.content:
        if type(part) in _NAMED and part.name:
            name = names.of(part.name)
            if name != part.name:
                part, changed = part.model_copy(update={"name": name}), True
        content.append(part)
    return message.model_copy(update={"content": content}) if changed else message


# -- hosted tools ---------------------------------------------------------------------------------
# A hosted tool runs at the provider. The one every provider has is web search: a client's
# declaration of it is read into the canonical request's ``metadata`` under WEB_SEARCH (the options
# providers share, as a dict), never into ``tools``, because a renderer that knows no hosted tool
# (Chat Completions) would send it as a function the model could call with nobody to run it. Each
# renderer that has an equivalent writes its own (docs/wire.md §2.8):
#
# | protocol         | read from                                        | written as                     |
# |------------------|--------------------------------------------------|--------------------------------|
# | openai-responses | web_search, web_search_preview (and dated forms) | {"type": "web_search"}         |
# | anthropic        | web_search_20250305, web_search_20260209         | type web_search_20250305       |
# | gemini           | googleSearch, googleSearchRetrieval              | googleSearch, if no functions |
# | openai-chat      | (none)                                           | (removed)                      |
#
# Options: allowed_domains, blocked_domains (lists of domains), max_uses (searches per turn),
# user_location ({"type": "approximate", city, region, country, timezone}); a renderer writes those
# its provider has. Every other hosted tool is removed with a warning.

WEB_SEARCH = "llm-proxy.web_search"  # ChatRequest.metadata key; client metadata values are strings
SEARCH_OPTIONS = ("allowed_domains", "blocked_domains", "max_uses", "user_location")
MAPPED = (
    "{where}: the hosted tool {kind!r} is sent as the target's own web search where it has one "
    "(OpenAI Responses, Anthropic, Gemini without function tools), else removed"
)
REMOVED = "{where}: removed the hosted tool {kind!r} ({what})"


def web_search(metadata: dict) -> dict | None:
    """The web search a request asked for (its options), or None."""
    value = metadata.get(WEB_SEARCH)
    return value if isinstance(value, dict) else None


def search_options(source: dict, **renamed: str) -> dict:
    """The shared options found in ``source`` (``renamed``: option -> the key ``source`` uses)."""
    options = {}
    for option in SEARCH_OPTIONS:
        value = source.get(renamed.get(option, option))
        if value is not None:
            options[option] = value
    return options


class Sources:
    """The pages a provider's web search cited (Anthropic citations, Gemini grounding, OpenAI
    url_citation annotations), once each in order. No client protocol carries another's citation
    shape, so a translated answer ends with them as text: ``text()`` is that ending ("" if none)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}  # url -> title

    def add(self, url: object, title: object) -> None:
        if isinstance(url, str) and url and url not in self.pages:
            self.pages[url] = title if isinstance(title, str) else ""

    def text(self) -> str:
        if not self.pages:
            return ""
        lines = [f"- {title}: {url}" if title else f"- {url}" for url, title in self.pages.items()]
        return SOURCES_HEADING + "\n".join(lines)


SOURCES_HEADING = "\n\nSources:\n"
