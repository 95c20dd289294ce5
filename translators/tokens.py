"""Local token estimates, for usage the provider did not report and for count_tokens endpoints.

tiktoken's ``o200k_base`` encoding is loaded from its cache (``TIKTOKEN_CACHE_DIR``); it never
downloads at request time. Without the encoding files the estimate falls back to one token per
four characters of text and logs one warning.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache
from typing import Any

from translators.canonical import ChatRequest, Image, Reasoning, Text, ToolCall, ToolResult

logger = logging.getLogger(__name__)

ENCODING = "o200k_base"
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 765  # OpenAI's figure for a high-detail 512x512 tile set; a fair middle ground
MESSAGE_OVERHEAD = 4


@cache
def _encoder() -> Any:
    try:
        import tiktoken

        if not os.environ.get("TIKTOKEN_CACHE_DIR") and not os.environ.get("DATA_GYM_CACHE_DIR"):
            raise LookupError("TIKTOKEN_CACHE_DIR is not set")
        return tiktoken.get_encoding(ENCODING)
    except Exception as e:  # missing files, no network, broken cache: never fatal
        logger.warning(f"tiktoken {ENCODING} unavailable ({e}); token counts are estimated as characters/4")
        return None


def count_text(text: str) -> int:
    encoder = _encoder()
    if encoder is None:
        return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN
    return len(encoder.encode(text, disallowed_special=()))


def is_exact() -> bool:
    """Whether counts come from tiktoken (else they are the characters/4 estimate)."""
    return _encoder() is not None


def count_request(request: ChatRequest) -> int:
    """Input tokens of a request: system, messages, tool definitions."""
    texts = [part.text for part in request.system]
    total = 0
    for message in request.messages:
        total += MESSAGE_OVERHEAD
        for part in message.content:
            match part:
                case Text() | Reasoning():
                    texts.append(part.text)
                case Image():
                    total += IMAGE_TOKENS
                case ToolCall():
                    texts += [part.name, part.arguments]
                case ToolResult():
                    texts += [p.text for p in part.content if isinstance(p, Text)]
                    total += IMAGE_TOKENS * sum(isinstance(p, Image) for p in part.content)
    for tool in request.tools:
        texts += [tool.name, tool.description or "", json.dumps(tool.parameters, separators=(",", ":"))]
    return total + count_text("\n".join(texts))
