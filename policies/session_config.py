"""The session-control keys of ``llm.yaml`` (README "Sessions", "Commands", "Loop protection",
"Verifier"): one schema each, validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SessionsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max: int = Field(10_000, gt=0)  # sessions kept; the least recently seen go first
    idle_seconds: float = Field(3600.0, gt=0)  # a session unseen this long is forgotten


class CommandsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    prefix: str = Field("!/", min_length=1, max_length=8)


class LoopDetectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class ToolLoopConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_repeats: int = Field(4, ge=2)


class EmptyAnswerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    retries: int = Field(1, ge=0, le=5)


class VerifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str  # backend:model (checked against the configured backends)
    every: int = Field(10, ge=1)  # every Nth turn of a session
    timeout: float = Field(30.0, gt=0)  # seconds; the verifier fails open
    hold_kb: int = Field(512, gt=0)  # a stream longer than this passes through live, unchecked
