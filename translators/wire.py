"""Helpers every protocol module uses to read and write its wire format.

Client and provider bodies are untrusted JSON. A value of the wrong type must become
``ProxyError("invalid_request", "<key path>: <problem>")`` naming where it is — the message a client
reads to fix its request — and never a TypeError deep inside a parser, so all typed reads go through
one ``Reader``. What the proxy writes is compact JSON that keeps non-ASCII text as it is: the form
providers send, and the cheapest to produce once per stream event.

This module knows the canonical model but no protocol; the protocol modules import from it, never
from each other's private names.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from translators.canonical import Image, StreamError
from translators.errors import ProxyError

# -- JSON -----------------------------------------------------------------------------------------

# orjson is several times faster than the standard library both ways, which matters for agent
# bodies of hundreds of KB and for every stream event; its output is the same compact, UTF-8,
# non-ASCII-as-is form. What it refuses (integers beyond 64 bits, NaN) falls back to ``json``.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, ready for a body or an SSE ``data:`` line."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return _ENCODER.encode(obj).encode()


def dumps_text(obj: Any) -> str:
    """Compact JSON text, non-ASCII kept as it is."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return _ENCODER.encode(obj)


def dumps_sorted(obj: Any) -> str:
    """Compact JSON text with object keys sorted: one text per meaning, for comparing values."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(data: bytes | str) -> Any:
    """Decoded JSON; raises ValueError (with the standard library's message) for invalid JSON."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


# -- typed reads that name key paths --------------------------------------------------------------

KINDS: dict[str, tuple[type, ...]] = {
    "a string": (str,),
    "an object": (dict,),
    "an array": (list,),
    "a number": (int, float),
    "an integer": (int,),
    "a boolean": (bool,),
}
JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages ("object", "number", … "null")."""
    return JSON_TYPES.get(type(value), "null")


def key_path(where: str, key: str | int) -> str:
    """``where`` extended by an object key (``a.b``) or an array index (``a[2]``)."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def invalid(path: str, problem: str) -> ProxyError:
    return ProxyError("invalid_request", f"{path}: {problem}")


def refuse(path: str, what: str) -> ProxyError:
    """The error for valid input the canonical model cannot carry (a same-protocol route may still
    pass it through untouched)."""
    return invalid(path, f"{what} cannot be translated to another protocol")


class Reader:
    """Typed reads from a decoded JSON body. ``kind`` is a key of ``KINDS``; a mismatch raises
    ``invalid`` naming the key path. ``detail=False`` leaves out what was found instead
    (``max_tokens: expected an integer``, ``messages[0].content[0].text: required``), the shorter
    messages the Anthropic module has always given."""

    def __init__(self, *, detail: bool = True) -> None:
        self._detail = detail

    def check(self, value: Any, path: str, kind: str) -> Any:
        # bool is an int in Python but not a number in JSON.
        if not isinstance(value, KINDS[kind]) or (isinstance(value, bool) and kind != "a boolean"):
            found = f", got {json_type(value)}" if self._detail else ""
            raise invalid(path, f"expected {kind}{found}")
        return value

    def read(self, obj: dict[str, Any], key: str, where: str, kind: str, *, required: bool = False) -> Any:
        """``obj[key]`` checked against ``kind``; absent and ``null`` both read as None (SDKs send
        explicit nulls for unset optionals)."""
        value = obj.get(key)
        if value is None:
            if required:
                problem = f"required, expected {kind}" if self._detail else "required"
                raise invalid(key_path(where, key), problem)
            return None
        if isinstance(value, KINDS[kind]) and (kind == "a boolean" or not isinstance(value, bool)):
            return value  # the common case: no key path to build
        return self.check(value, key_path(where, key), kind)

    def objects(
        self, obj: dict[str, Any], key: str, where: str, *, required: bool = False
    ) -> list[tuple[str, dict[str, Any]]]:
        """The objects of an array, each with its key path."""
        at = key_path(where, key)
        found: list[tuple[str, dict[str, Any]]] = []
        for i, value in enumerate(self.read(obj, key, where, "an array", required=required) or []):
            path = key_path(at, i)
            found.append((path, self.check(value, path, "an object")))
        return found


_READER = Reader()
check = _READER.check
read = _READER.read
objects = _READER.objects


# -- lenient reads of provider answers ------------------------------------------------------------
# Answers are read leniently: a provider's odd value is left out rather than failing the answer.


def count(value: Any) -> int | None:
    """A token count: an integer that is not a bool, else unknown."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def broken_off() -> StreamError:
    """The event for a stream that ended before its provider said it finished."""
    error = ProxyError("upstream_error", "upstream stream ended before it finished")
    return StreamError(error=error.to_dict())


# -- tool arguments and images --------------------------------------------------------------------


def parse_arguments(arguments: str) -> dict[str, Any]:
    """Tool arguments as an object for protocols that want one; invalid or non-object JSON is kept
    visible under ``_raw`` rather than silently dropped (empty text is ``{}``)."""
    if not arguments.strip():
        return {}
    try:
        value = loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def dump_arguments(value: Any) -> str:
    """Compact JSON text for an arguments object (``{}`` for a missing one, never ``""``)."""
    return dumps_text(value if value is not None else {})


def arguments_text(value: Any) -> str:
    """Arguments as JSON text: a string as sent (empty → ``{}``, docs/wire.md §6.5), an object
    serialised."""
    if isinstance(value, str):
        return value if value.strip() else "{}"
    return dump_arguments(value)


def split_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<payload>`` → (mime, payload); None for any other URL."""
    if not url.startswith("data:"):
        return None
    header, _, payload = url[5:].partition(",")
    mime, _, encoding = header.partition(";")
    if encoding != "base64":
        return None
    return mime or "application/octet-stream", payload


def image_from_url(url: str, detail: str | None = None) -> Image:
    """An image by URL; a ``data:`` URL becomes inline data."""
    inline = split_data_url(url)
    if inline is None:
        return Image(url=url, detail=detail)
    return Image(media_type=inline[0], data=inline[1], detail=detail)


def image_url(image: Image) -> str:
    """The URL of an image: inline data as a ``data:`` URL."""
    if image.data is not None:
        return f"data:{image.media_type or 'application/octet-stream'};base64,{image.data}"
    return image.url or ""
