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
    """Thresholds of ``policies.loops.LoopDetector`` (README "Loop protection")."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    long_unit: int = Field(100, ge=8)  # a repeated unit this many characters or longer is "long"
    short_repeats: int = Field(30, ge=3)  # back-to-back copies of a short unit that make a loop
    long_repeats: int = Field(5, ge=2)  # back-to-back copies of a long unit that make a loop
    min_chars: int = Field(1500, ge=64)  # a loop covers at least this many characters
    window: int = Field(16_384, ge=1024)  # characters kept per stream; longer units are not seen
    check_every: int = Field(128, ge=1)  # characters between two checks (the detection lag)


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
