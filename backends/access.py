"""The ``access:`` key of ``llm.yaml``: who may use a shared proxy, for which models, how much.

single-user (the default) needs no keys but refuses to listen beyond loopback without them;
multi-user requires a valid proxy key on every request. Keys are secrets like provider keys:
never in a repr, a log line, a capture, diagnostics or an error (README "Access").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Limits(BaseModel):
    """Usage limits of one proxy key; windows are rolling minutes and calendar UTC days/months.
    Cost is US dollars from the ``costs:`` table."""

    model_config = ConfigDict(extra="forbid")
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)
    tokens_per_day: int | None = Field(None, gt=0)
    cost_per_day: float | None = Field(None, gt=0)
    cost_per_month: float | None = Field(None, gt=0)


class ProxyKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]+$")  # what usage, metrics and captures show
    key: str = Field(min_length=8, repr=False)
    admin: bool = False
    models: list[str] = Field(default_factory=lambda: ["*"])  # selector globs over backend:model
    limits: Limits | None = None  # None: access.default_limits


class AccessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["single-user", "multi-user"] = "single-user"
    keys: list[ProxyKey] = Field(default_factory=list)
    default_limits: Limits = Field(default_factory=Limits)

    @model_validator(mode="after")
    def _keys(self) -> AccessConfig:
        names = [k.name for k in self.keys]
        if len(set(names)) != len(names):
            raise ValueError("keys: every key needs a name of its own")
        if len({k.key for k in self.keys}) != len(self.keys):
            raise ValueError("keys: two keys have the same secret")
        if self.mode == "multi-user" and not self.keys:
            raise ValueError("multi-user mode needs at least one key under access.keys")
        return self

    def limits_of(self, key: ProxyKey) -> Limits:
        return key.limits if key.limits is not None else self.default_limits
