"""The suite's configuration: one YAML file, one pydantic schema, validated at start.

Errors name the file, the key path and what is wrong, so a bad file stops start-up with one
clear line instead of a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backends.access import AccessConfig
from backends.families import FAMILIES
from backends.presets import PRESET_ENV_KEYS
from policies.config import PoliciesConfig
from policies.session_config import (
    CommandsConfig,
    EmptyAnswerConfig,
    LoopDetectionConfig,
    SessionsConfig,
    ToolLoopConfig,
    VerifierConfig,
)

ENV_KEYS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    **PRESET_ENV_KEYS,  # DEEPSEEK_API_KEY, … (backends/presets.py)
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    pass


class Timeouts(BaseModel):
    """Seconds. ``first_byte`` and ``idle`` are generous because reasoning models think quietly."""

    model_config = ConfigDict(extra="forbid")
    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(300.0, gt=0)
    idle: float = Field(300.0, gt=0)


class BackendConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    base_url: str = ""
    api_keys: list[str] = Field(default_factory=list, repr=False)  # never in a log line
    models: list[str] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    # round_robin spreads requests over the keys; fill_first uses the first key until it is
    # rate limited (free tiers first).
    key_policy: Literal["round_robin", "fill_first"] = "round_robin"
    # Also list the models the provider's own models endpoint reports (cached; a failure is
    # reported in the listing, which keeps the configured literal names).
    discover_models: bool = True

    @field_validator("type")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown backend type {value!r}; expected one of: {', '.join(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _base_url(self) -> BackendConfig:
        if not self.base_url:
            self.base_url = FAMILIES[self.type].default_base_url
        if not self.base_url:
            raise ValueError(f"base_url is required for type {self.type}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        return self

    @model_validator(mode="after")
    def _preset_key(self) -> BackendConfig:
        """A preset backend given no key takes the one its provider's variable holds
        (``DEEPSEEK_API_KEY`` for ``type: deepseek``), when it is set."""
        variable = FAMILIES[self.type].env_key
        if not self.api_keys and variable and os.environ.get(variable):
            self.api_keys = [os.environ[variable]]
        return self


class ModelCost(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)


class Failover(BaseModel):
    """Retries before any byte reached the client: next key, next instance, then ``fallbacks``."""

    model_config = ConfigDict(extra="forbid")
    attempts: int = Field(4, ge=1)
    deadline: float = Field(600.0, gt=0)  # seconds, over all attempts
    backoff: float = Field(5.0, gt=0)  # first rate-limit cool-down without a provider hint
    backoff_max: float = Field(600.0, gt=0)  # cool-downs double on repeats up to this
    disable_after: int = Field(5, ge=1)  # consecutive failures that disable a key
    # A model an instance refused (404) is skipped there for this long, then tried again.
    unsupported_model_seconds: float = Field(600.0, ge=0)
    # model glob (matched against "instance:model", "family:model" and the bare model) ->
    # backend:model targets tried in order when every instance of the first target failed.
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)


class RouteMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None  # glob over the requested model
    client_protocol: Literal["openai-chat", "openai-responses", "anthropic", "gemini"] | None = None
    surface: Literal["front_door", "anthropic_port", "proxy"] | None = None


class RouteRule(BaseModel):
    """Applied in order before resolution: ``target`` replaces the model (strict backend:model),
    ``params`` are defaults for parameters the request leaves unset."""

    model_config = ConfigDict(extra="forbid")
    match: RouteMatch = Field(default_factory=RouteMatch)
    target: str | None = None
    params: dict[str, float | int | str] = Field(default_factory=dict)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    default_backend: str | None = None
    # The proxy's state (usage, availability): one SQLite file. Default: llm-state.sqlite in
    # mitmproxy's confdir.
    database: str | None = None
    # Model name globs -> prices, for usage reports; the first matching glob wins.
    costs: dict[str, ModelCost] = Field(default_factory=dict)
    # Requests larger than this are refused with a clear error (docs/snags.md #20).
    max_request_bytes: int = Field(32 * 1024 * 1024, gt=0)
    routes: list[RouteRule] = Field(default_factory=list)
    models_cache_seconds: float = Field(600.0, ge=0)  # how long discovered model lists are reused
    failover: Failover = Field(default_factory=Failover)
    # What inspects and changes conversations (docs/architecture.md, README "Policies").
    policies: PoliciesConfig = Field(default_factory=PoliciesConfig)
    # Who may use the proxy, for which models, how much (README "Access").
    access: AccessConfig = Field(default_factory=AccessConfig)
    # Session control (README "Sessions", "Commands", "Loop protection", "Verifier").
    sessions: SessionsConfig = Field(default_factory=SessionsConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    loop_detection: LoopDetectionConfig = Field(default_factory=LoopDetectionConfig)
    tool_loop: ToolLoopConfig = Field(default_factory=ToolLoopConfig)
    reasoning_floor: dict[str, int] = Field(default_factory=dict)  # model glob -> minimum max_tokens
    empty_answer: EmptyAnswerConfig = Field(default_factory=EmptyAnswerConfig)
    verifier: VerifierConfig | None = None

    @model_validator(mode="after")
    def _references(self) -> Config:
        for name in self.backends:
            if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?", name):
                raise ValueError(f"backend instance name {name!r}: use a family name, optionally .suffix")
        if self.default_backend is not None and self.default_backend not in self.backends:
            raise ValueError(
                f"default_backend {self.default_backend!r} is not a configured backend "
                f"(configured: {', '.join(self.backends) or 'none'})"
            )
        for i, rule in enumerate(self.routes):
            if rule.target is not None:
                self._check_target(rule.target, f"routes[{i}].target")
        if self.verifier is not None:
            self._check_target(self.verifier.model, "verifier.model")
        for pattern, targets in self.failover.fallbacks.items():
            for i, target in enumerate(targets):
                self._check_target(target, f"failover.fallbacks[{pattern!r}][{i}]")
        return self

    def _check_target(self, target: str, where: str) -> None:
        """Targets in rules must name a configured backend explicitly: ``backend:model``."""
        backend, sep, model = target.partition(":")
        families = {b.type for b in self.backends.values()}
        if not sep or not model or (backend not in self.backends and backend not in families):
            raise ValueError(
                f"{where}: {target!r} must be backend:model with a configured backend "
                f"(configured: {', '.join(self.backends) or 'none'})"
            )


def _expand(value: Any, path: str) -> Any:
    """Expand ``${VAR}`` from the environment in every string; an unset variable is an error."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return os.environ[name]

        return _VAR.sub(replace, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _with_family_types(raw: dict[str, Any]) -> dict[str, Any]:
    """``type`` may be left out when the instance name starts with a family name."""
    backends = raw.get("backends")
    if isinstance(backends, dict):
        for name, backend in backends.items():
            if isinstance(backend, dict) and "type" not in backend:
                family = str(name).split(".", 1)[0]
                if family in FAMILIES:
                    backend["type"] = family
    return raw


def parse_config(raw: Any, source: str) -> Config:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    try:
        expanded = _expand(raw, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    try:
        return Config.model_validate(_with_family_types(expanded))
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {message}" if where else f"{source}: {message}") from None


def load_config(path: Path) -> Config:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return parse_config(raw, str(path))


def config_from_environment() -> Config:
    """One backend per provider key found in the environment; the first found is the default."""
    backends = {
        family: {"type": family, "api_keys": [os.environ[var]]}
        for family, var in ENV_KEYS.items()
        if os.environ.get(var)
    }
    return parse_config({"backends": backends, "default_backend": next(iter(backends), None)}, "environment")
