"""Model selectors → backend targets.

A selector is ``backend:model`` (a family or an instance name), or a bare ``model`` /
``vendor/model`` resolved by the backends' ``models`` globs, then by the family of the host an
intercepted client addressed, then by ``default_backend``. ``model?temperature=0.5`` carries
request parameters in URI query style.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, urlencode

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


# Canonical model ids are vendor/model; these vendors map to a family.
VENDOR_FAMILIES = {"openai": "openai", "anthropic": "anthropic", "google": "gemini"}


@dataclass
class Target:
    instance: str
    backend: BackendConfig
    family: Family
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    protocol: str = ""  # what the provider is spoken to in: the client's own when the family can
    pinned: bool = False  # the selector named this instance: no other instance stands in

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
                f"model selector parameter {name!r} is not supported (supported: {', '.join(PARAMETERS)})",
            )
        try:
            params[name] = kind(value)
        except ValueError:
            raise ProxyError(
                "invalid_request", f"model selector parameter {name}={value!r} is not a valid {kind.__name__}"
            ) from None
    return model, params


@dataclass
class Route:
    """Where a request may go, in order, and the parameter defaults route rules gave it."""

    targets: list[Target]
    defaults: dict[str, Any] = field(default_factory=dict)


class Router:
    """Resolves selectors against one configuration: route rules, then the selector, then the
    other instances of the same family, then the configured fallbacks."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def route(
        self,
        selector: str,
        *,
        host_family: str | None = None,
        client_protocol: str | None = None,
        surface: str | None = None,
        override: str | None = None,
    ) -> Route:
        defaults: dict[str, Any] = {}
        if override:
            selector = override  # x-llm-route: this request only, no rules
        else:
            selector = self._apply_rules(selector, client_protocol, surface, defaults)
        first = self.resolve(selector, host_family, client_protocol)
        targets = [first]
        if not first.pinned:
            targets += [
                self._target(name, first.model, first.params)
                for name, backend in self.config.backends.items()
                if name != first.instance
                and backend.type == first.backend.type
                and self._serves(backend, first.model)
            ]
        for fallback in self._fallbacks(first):
            targets.append(self.resolve(fallback, None, client_protocol))
        for target in targets:
            if client_protocol:
                target.protocol = target.family.protocol_for(client_protocol)
        unique = {(t.instance, t.model): t for t in reversed(targets)}
        return Route([t for t in targets if unique.get((t.instance, t.model)) is t], defaults)

    def _apply_rules(
        self, selector: str, client_protocol: str | None, surface: str | None, defaults: dict[str, Any]
    ) -> str:
        for rule in self.config.routes:
            match = rule.match
            model, _ = split_parameters(selector)
            if match.model is not None and not fnmatchcase(model, match.model):
                continue
            if match.client_protocol not in (None, client_protocol) or match.surface not in (None, surface):
                continue
            if rule.target is not None:
                _, params = split_parameters(selector)
                selector = rule.target + ("?" + urlencode(params) if params else "")
            for name, value in rule.params.items():
                defaults.setdefault(name, value)
        return selector

    def _fallbacks(self, first: Target) -> list[str]:
        names = (f"{first.instance}:{first.model}", f"{first.backend.type}:{first.model}", first.model)
        for pattern, targets in self.config.failover.fallbacks.items():
            if any(fnmatchcase(name, pattern) for name in names):
                return targets
        return []

    @staticmethod
    def _serves(backend: BackendConfig, model: str) -> bool:
        return not backend.models or any(fnmatchcase(model, p) for p in backend.models)

    def resolve(
        self, selector: str, host_family: str | None = None, client_protocol: str | None = None
    ) -> Target:
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
                return self._target(prefix, rest, params, pinned=True)
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
        vendor, slash, name = model.partition("/")
        if (
            slash
            and (family := VENDOR_FAMILIES.get(vendor))
            and (instance := self._instance_of_family(family))
        ):
            return self._target(instance, name, params)  # a canonical vendor/model id
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

    def _instance_of_family(self, family: str) -> str | None:
        if family in self.config.backends:
            return family
        return next((n for n, b in self.config.backends.items() if b.type == family), None)

    def _target(self, instance: str, model: str, params: dict[str, Any], *, pinned: bool = False) -> Target:
        backend = self.config.backends[instance]
        return Target(instance, backend, FAMILIES[backend.type], model, dict(params), pinned=pinned)
