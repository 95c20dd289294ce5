"""Protocol translators: one module per wire protocol, all through ``translators.canonical``.

Every protocol module offers the same surface (see ``ProtocolModule``) and is registered in
``PROTOCOLS`` under its name.
"""

from __future__ import annotations

from types import ModuleType


def get(name: str) -> ModuleType:
    """The protocol module called ``name`` ("openai-chat", "openai-responses", "anthropic", "gemini")."""
    from translators import anthropic, gemini, openai_chat, openai_responses

    modules = {m.NAME: m for m in (openai_chat, openai_responses, anthropic, gemini)}
    return modules[name]
