"""The ``policies:`` key of ``llm.yaml``: one schema for every policy, validated at start-up."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from policies.dangerous_commands import DangerousCommandsConfig
from policies.rewrite import RewriteRule
from policies.sandbox import SandboxConfig
from policies.tools import ToolRule


class PoliciesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dangerous_commands: DangerousCommandsConfig = Field(default_factory=DangerousCommandsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    tools: list[ToolRule] = Field(default_factory=list)  # ordered: the first rule that fits decides
    rewrite: list[RewriteRule] = Field(default_factory=list)  # ordered: each on the previous output
    # Whole answers: how often the model is asked again, with a note saying what was blocked and why,
    # before a blocked call is replaced by text. A stream has reached the client already: it gets the text.
    retries: int = Field(1, ge=0, le=5)
