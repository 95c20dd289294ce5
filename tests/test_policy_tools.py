"""Tool access control (policies.tools): ordered rules, first match wins."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from policies.base import ALLOW, Call, Context
from policies.gate import Decision, ToolCallGate
from policies.tools import ToolAccess, ToolRule
from translators.canonical import (
    ChatRequest,
    Message,
    Text,
    TextDelta,
    Tool,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolChoice,
)

RULES = TypeAdapter(list[ToolRule])

GEMINI = Context(model="gemini:gemini-2.5-pro", client="alice")
OPENAI = Context(model="openai:gpt-5", client="bob")


def access(*rules: dict[str, Any]) -> ToolAccess:
    return ToolAccess(RULES.validate_python(list(rules)))


def request(*names: str, choice: ToolChoice | None = None) -> ChatRequest:
    return ChatRequest(
        model="m",
        messages=[Message(role="user", content=[Text(text="hi")])],
        tools=[Tool(name=name, description=f"the {name} tool") for name in names],
        tool_choice=choice,
    )


# -- configuration -------------------------------------------------------------------------------


def test_rule_defaults() -> None:
    rule = ToolRule()
    assert rule.match.model == "*" and rule.match.client == "*"
    assert rule.allow is None and rule.deny == []


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ([{"match": {"modle": "gemini:*"}}], (0, "match", "modle")),
        ([{}, {"deny": "WebFetch"}], (1, "deny")),
        ([{"allow": ["Read", 3]}], (0, "allow", 1)),
        ([{"match": {"model": "*"}, "denied": ["x"]}], (0, "denied")),
        ([{"match": "gemini:*"}], (0, "match")),
    ],
)
def test_config_errors_name_the_key(raw: list[Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        RULES.validate_python(raw)
    assert caught.value.errors()[0]["loc"] == loc


# -- allowed ----------------------------------------------------------------------------------


def test_example_config_denies_by_glob_for_one_backend() -> None:
    tools = access({"match": {"model": "gemini:*", "client": "*"}, "deny": ["WebFetch", "mcp__*"]})
    verdict = tools.allowed("mcp__github__create_issue", GEMINI)
    assert verdict.action == "block" and verdict.policy == "tools" and verdict.rule == "mcp__*"
    assert "mcp__github__create_issue" in verdict.reason and "gemini:gemini-2.5-pro" in verdict.reason
    assert tools.allowed("WebFetch", GEMINI).rule == "WebFetch"
    assert tools.allowed("Read", GEMINI) == ALLOW
    assert tools.allowed("WebFetch", OPENAI) == ALLOW
    assert tools.allowed("webfetch", GEMINI) == ALLOW  # case-sensitive


def test_first_matching_rule_wins() -> None:
    tools = access(
        {"match": {"model": "gemini:*", "client": "alice"}, "deny": []},
        {"match": {"model": "gemini:*"}, "deny": ["Bash"]},
        {"deny": ["*"]},
    )
    assert tools.allowed("Bash", GEMINI) == ALLOW  # the first rule fits alice and denies nothing
    assert tools.allowed("Bash", Context(model="gemini:flash", client="carol")).rule == "Bash"
    assert tools.allowed("Read", Context(model="gemini:flash", client="carol")) == ALLOW
    assert tools.allowed("Read", OPENAI).rule == "*"


def test_client_glob() -> None:
    tools = access({"match": {"client": "ci-*"}, "deny": ["Write"]})
    assert tools.allowed("Write", Context(model="openai:gpt-5", client="ci-runner")).action == "block"
    assert tools.allowed("Write", Context(model="openai:gpt-5", client="CI-runner")) == ALLOW
    assert tools.allowed("Write", Context(model="openai:gpt-5")) == ALLOW


def test_allow_list_denies_everything_else() -> None:
    tools = access({"match": {"model": "openai:*"}, "allow": ["Read", "Grep", "mcp__docs__*"]})
    assert tools.allowed("Grep", OPENAI) == ALLOW
    assert tools.allowed("mcp__docs__search", OPENAI) == ALLOW
    verdict = tools.allowed("Bash", OPENAI)
    assert verdict.action == "block" and verdict.rule == "allow [Read, Grep, mcp__docs__*]"
    assert tools.allowed("Bash", GEMINI) == ALLOW


def test_deny_wins_over_allow_in_the_same_rule() -> None:
    tools = access({"allow": ["mcp__*"], "deny": ["mcp__shell__*"]})
    assert tools.allowed("mcp__docs__search", OPENAI) == ALLOW
    assert tools.allowed("mcp__shell__run", OPENAI).rule == "mcp__shell__*"


def test_empty_allow_list_allows_nothing() -> None:
    assert access({"allow": []}).allowed("Read", OPENAI).action == "block"


def test_no_rules_allow_everything() -> None:
    tools = ToolAccess([])
    assert tools.allowed("Bash", OPENAI) == ALLOW and not tools.watches("Bash")


# -- watches / judge ----------------------------------------------------------------------------


def test_watches_only_tools_some_rule_could_deny() -> None:
    tools = access({"match": {"model": "gemini:*"}, "deny": ["WebFetch", "mcp__*"]}, {"deny": []})
    assert tools.watches("WebFetch") and tools.watches("mcp__x__y")
    assert not tools.watches("Read")
    assert access({"allow": ["Read"]}).watches("Bash")
    assert not access({"allow": ["Read"]}).watches("Read")


def test_a_call_of_a_denied_tool_is_blocked() -> None:
    tools = access({"match": {"model": "gemini:*"}, "deny": ["WebFetch"]})
    verdict = tools.judge(Call(name="WebFetch", arguments='{"url": "https://x"}', id="c1"), GEMINI)
    assert verdict.action == "block" and verdict.policy == "tools" and verdict.rule == "WebFetch"
    assert "anyway" in verdict.reason and "WebFetch" in verdict.reason
    assert tools.judge(Call(name="Read", arguments="{}"), GEMINI) == ALLOW
    assert tools.judge(Call(name="WebFetch", arguments="{}"), OPENAI) == ALLOW


# -- filter_request -----------------------------------------------------------------------------


def test_filter_removes_denied_tools_without_mutating_the_input() -> None:
    tools = access({"match": {"model": "gemini:*"}, "deny": ["WebFetch", "mcp__*"]})
    original = request("Read", "WebFetch", "Edit", "mcp__github__search", choice=ToolChoice(mode="auto"))
    before = original.model_dump()
    filtered, removed = tools.filter_request(original, GEMINI)
    assert removed == ["WebFetch", "mcp__github__search"]
    assert [t.name for t in filtered.tools] == ["Read", "Edit"]
    assert filtered.tool_choice == ToolChoice(mode="auto")
    assert filtered.messages == original.messages and filtered.model == original.model
    assert original.model_dump() == before
    assert [t.name for t in original.tools] == ["Read", "WebFetch", "Edit", "mcp__github__search"]


def test_filter_keeps_the_request_when_nothing_is_denied() -> None:
    tools = access({"match": {"model": "gemini:*"}, "deny": ["WebFetch"]})
    original = request("Read", "WebFetch")
    assert tools.filter_request(original, OPENAI) == (original, [])
    assert tools.filter_request(request("Read"), GEMINI)[1] == []
    assert tools.filter_request(request(), GEMINI)[1] == []


def test_filter_resets_a_tool_choice_naming_a_removed_tool() -> None:
    tools = access({"deny": ["WebFetch"]})
    forced = request("Read", "WebFetch", choice=ToolChoice(mode="tool", name="WebFetch"))
    filtered, removed = tools.filter_request(forced, OPENAI)
    assert removed == ["WebFetch"] and filtered.tool_choice == ToolChoice(mode="auto")
    assert forced.tool_choice == ToolChoice(mode="tool", name="WebFetch")
    kept = request("Read", "WebFetch", choice=ToolChoice(mode="tool", name="Read"))
    assert tools.filter_request(kept, OPENAI)[0].tool_choice == ToolChoice(mode="tool", name="Read")


def test_filter_with_no_tool_left() -> None:
    tools = access({"match": {"model": "openai:*"}, "allow": []})
    forced = request("WebFetch", choice=ToolChoice(mode="tool", name="WebFetch"))
    filtered, removed = tools.filter_request(forced, OPENAI)
    assert filtered.tools == [] and removed == ["WebFetch"]
    assert filtered.tool_choice == ToolChoice(mode="none")
    required = request("WebFetch", "Bash", choice=ToolChoice(mode="required"))
    assert tools.filter_request(required, OPENAI)[0].tool_choice == ToolChoice(mode="none")
    unset = request("WebFetch")
    assert tools.filter_request(unset, OPENAI)[0].tool_choice is None


def test_filter_keeps_required_while_tools_remain() -> None:
    tools = access({"deny": ["Bash"]})
    required = request("Read", "Bash", choice=ToolChoice(mode="required"))
    assert tools.filter_request(required, OPENAI)[0].tool_choice == ToolChoice(mode="required")


def test_filtered_request_is_still_a_valid_request() -> None:
    tools = access({"deny": ["Bash"]})
    filtered, _ = tools.filter_request(
        request("Read", "Bash", choice=ToolChoice(mode="tool", name="Bash")), OPENAI
    )
    assert ChatRequest.model_validate(filtered.model_dump()) == filtered


# -- tools the translation renamed (translators/toolnames.py) -----------------------------------

RENAMED = Context(model="openai:gpt-5", client="carol", renamed={"mcp_files_read_1a2b3c4d": "mcp.files:read"})


def test_filter_judges_a_renamed_tool_by_the_name_the_client_declared() -> None:
    rules = access({"deny": ["mcp.files:*"]})
    offered = request(
        "mcp_files_read_1a2b3c4d", "Read", choice=ToolChoice(mode="tool", name="mcp_files_read_1a2b3c4d")
    )
    filtered, removed = rules.filter_request(offered, RENAMED)
    assert [t.name for t in filtered.tools] == ["Read"]
    assert removed == ["mcp.files:read"]  # the log line names the client's tool
    assert filtered.tool_choice == ToolChoice(mode="auto")


def test_a_call_of_a_renamed_tool_is_blocked_and_named_as_the_client_declared_it() -> None:
    found: list[Decision] = []
    gate = ToolCallGate([access({"deny": ["mcp.files:*"]})], RENAMED, found.append)
    events = gate.feed(
        [
            ToolCallStart(index=0, id="call_1", name="mcp_files_read_1a2b3c4d"),
            ToolCallDelta(index=0, arguments='{"path": "/etc/passwd"}'),
            ToolCallEnd(index=0),
        ]
    )
    assert [(d.action, d.tool, d.rule) for d in found] == [("block", "mcp.files:read", "mcp.files:*")]
    notes = [e.text for e in events if isinstance(e, TextDelta)]
    assert notes and "the mcp.files:read tool call" in notes[0]
    assert not any(isinstance(e, ToolCallStart) for e in events)


def test_a_renamed_tool_that_no_rule_denies_passes_under_its_provider_safe_name() -> None:
    """Only the policies speak the client's names: the event goes on as the provider named it, and
    the client's encoder maps it back."""
    gate = ToolCallGate([access({"deny": ["WebFetch"]})], RENAMED, lambda d: None)
    events = gate.feed([ToolCallStart(index=0, id="c", name="mcp_files_read_1a2b3c4d"), ToolCallEnd(index=0)])
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["mcp_files_read_1a2b3c4d"]
