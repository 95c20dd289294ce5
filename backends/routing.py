"""Model selectors → backend targets.

A selector is ``backend:model`` (a family or an instance name), or a bare ``model`` /
``vendor/model`` resolved by the backends' ``models`` globs, then by the family of the host an
intercepted client addressed, then by ``default_backend``. ``model?temperature=0.5`` carries
request parameters in URI query style.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl

from backends.config import BackendConfig, Config
from backends.families import FAMILIES, Family
from translators.errors import ProxyError

# Selector parameters a user may set, with their types; anything else is refused.
PARAMETERS: dict[str, type] = {
    "temperature": float,
    "top_p": float,
    "top_k": int,
    "max_tokens": int,
    "seed": int,
    "frequency_penalty": float,
    "presence_penalty": float,
    "reasoning_effort": str,
}


@dataclass
class Target:
    instance: str
    backend: BackendConfig
    family: Family
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""  # what the provider is spoken to in: the client's own when the family can

    def __post_init__(self) -> None:
        self.protocol = self.protocol or self.family.protocol

    def url(self, stream: bool, *, sse: bool = True) -> str:
        return self.family.url(self.protocol, self.backend.base_url, self.model, stream, sse=sse)


def split_parameters(selector: str) -> tuple[str, dict[str, Any]]:
    model, sep, query = selector.partition("?")
    if not sep:
        return selector, {}
    params: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        kind = PARAMETERS.get(name)
        if kind is None:
            raise ProxyError(
                "invalid_request",
                f"model selector parameter {name!r} is not supported "
                f"(supported: {', '.join(PARAMETERS)})",
            )
        try:
            params[name] = kind(value)
        except ValueError:
            raise ProxyError(
                "invalid_request", f"model selector parameter {name}={value!r} is not a valid {kind.__name__}"
            ) from None
    return model, params


class Router:
    """Resolves selectors against one configuration; chooses keys round robin per instance."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._keys = {name: itertools.cycle(b.api_keys) for name, b in config.backends.items() if b.api_keys}

    def resolve(self, selector: str, host_family: str | None = None, client_protocol: str | None = None) -> Target:
        target = self._resolve(selector, host_family)
        if client_protocol:
            target.protocol = target.family.protocol_for(client_protocol)
        return target

    def _resolve(self, selector: str, host_family: str | None) -> Target:
        if not selector:
            raise ProxyError("invalid_request", "model: a model is required")
        model, params = split_parameters(selector)
        prefix, sep, rest = model.partition(":")
        if sep and rest:
            if prefix in self.config.backends:
                return self._target(prefix, rest, params)
            if prefix in FAMILIES:
                instance = self._instance_of_family(prefix)
                if instance is None:
                    raise ProxyError(
                        "not_found",
                        f"model {model!r}: no backend of type {prefix!r} is configured "
                        f"(configured: {', '.join(self.config.backends) or 'none'})",
                    )
                return self._target(instance, rest, params)
        for name, backend in self.config.backends.items():
            if any(fnmatchcase(model, pattern) for pattern in backend.models):
                return self._target(name, model, params)
        if host_family and (instance := self._instance_of_family(host_family)):
            return self._target(instance, model, params)
        if self.config.default_backend:
            return self._target(self.config.default_backend, model, params)
        raise ProxyError(
            "not_found",
            f"model {model!r}: no backend serves it and no default_backend is configured; "
            f"use backend:model (configured backends: {', '.join(self.config.backends) or 'none'})",
        )

    def is_explicit(self, selector: str) -> bool:
        """Does the selector name a configured backend (``backend:model``)?"""
        prefix, sep, _ = selector.partition(":")
        return bool(sep) and (prefix in self.config.backends or self.serves_family(prefix))

    def serves_family(self, family: str) -> bool:
        return self._instance_of_family(family) is not None

    def key_for(self, instance: str) -> str | None:
        keys = self._keys.get(instance)
        return next(keys) if keys else None

    def _instance_of_family(self, family: str) -> str | None:
        if family in self.config.backends:
            return family
        return next((n for n, b in self.config.backends.items() if b.type == family), None)

    def _target(self, instance: str, model: str, params: dict[str, Any]) -> Target:
        backend = self.config.backends[instance]
        return Target(instance, backend, FAMILIES[backend.type], model, params)
