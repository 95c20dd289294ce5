"""Protocol translators: one module per wire protocol, all through ``translators.canonical``.

Every protocol module offers the same surface (``translators.protocol.ProtocolModule``) and is
registered in ``PROTOCOLS`` under its ``NAME``. The registry is built once, at import: ``get`` runs
for every request.
"""

from __future__ import annotations

from translators import anthropic, gemini, openai_chat, openai_responses
from translators.protocol import ProtocolModule

# Typed as the Protocol so that a type checker holds each module to the whole surface.
_MODULES: tuple[ProtocolModule, ...] = (openai_chat, openai_responses, anthropic, gemini)

PROTOCOLS: dict[str, ProtocolModule] = {module.NAME: module for module in _MODULES}


def get(name: str) -> ProtocolModule:
    """The protocol module called ``name`` ("openai-chat", "openai-responses", "anthropic", "gemini");
    KeyError for any other name."""
    return PROTOCOLS[name]
