"""The dangerous-command reactor: a corpus of destructive commands and harmless look-alikes
(``tests/data/commands.yaml``), each judged on its own, plus the config, the agents' argument
shapes, the verdict texts and the cost bounds."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from policies.base import ALLOW, Call, Context, Reactor, Verdict
from policies.dangerous_commands import (
    MAX_COMMAND,
    MAX_DEPTH,
    RULES,
    SCRIPT_RULES,
    SHELL_TOOLS,
    DangerousCommands,
    DangerousCommandsConfig,
)

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "commands.yaml").read_text(encoding="utf-8"))
CONFIG = DangerousCommandsConfig(**CORPUS["config"])
REACTOR = DangerousCommands(CONFIG)
DANGEROUS = [(command, rule) for rule, commands in CORPUS["dangerous"].items() for command in commands]
HARMLESS = CORPUS["harmless"]
CONTEXT = Context(model="fake:model", cwd="/repo")


def command_id(command: str | list[str]) -> str:
    return command if isinstance(command, str) else json.dumps(command)


def judge(command: str | list[str], reactor: DangerousCommands = REACTOR) -> Verdict:
    """A string goes as Claude Code's Bash sends it, an argv as Codex's shell tool does."""
    tool = "Bash" if isinstance(command, str) else "shell"
    return reactor.judge(Call(tool, json.dumps({"command": command})), CONTEXT)


def call(tool: str, arguments: object) -> Call:
    return Call(tool, arguments if isinstance(arguments, str) else json.dumps(arguments), id="call_1")


# ---- the corpus


def test_corpus_is_large_enough():
    assert len(DANGEROUS) >= 60
    assert len(HARMLESS) >= 60
    assert {rule.name for rule in RULES} | {name for name, *_ in SCRIPT_RULES} <= set(CORPUS["dangerous"])


@pytest.mark.parametrize(("command", "rule"), DANGEROUS, ids=[command_id(c) for c, _ in DANGEROUS])
def test_dangerous_command_is_blocked(command, rule):
    verdict = judge(command)
    assert (verdict.action, verdict.policy, verdict.rule) == ("block", "dangerous_commands", rule)


@pytest.mark.parametrize("command", HARMLESS, ids=[command_id(c) for c in HARMLESS])
def test_harmless_command_is_allowed(command):
    assert judge(command) == ALLOW


# ---- configuration


def test_defaults_cover_the_agents_shell_tools():
    config = DangerousCommandsConfig()
    assert config.enabled
    expected = {"Bash", "exec_command", "shell", "local_shell", "run_shell_command", "bash", "shell_command",
                "execute_command", "run_terminal_cmd"}  # fmt: skip
    assert expected <= set(config.shell_tools) == set(SHELL_TOOLS)
    assert config.extra_rules == [] and config.allow == []


def test_regexes_are_compiled_at_validation():
    config = DangerousCommandsConfig(allow=["^ok$"], extra_rules=[{"name": "r", "regex": "x+"}])
    assert config.allow[0].search("ok")
    assert config.extra_rules[0].regex.search("xx")


def test_bad_extra_rule_regex_names_the_rule_and_its_key_path():
    with pytest.raises(ValidationError) as raised:
        DangerousCommandsConfig(
            extra_rules=[{"name": "fine", "regex": "a"}, {"name": "no-npm", "regex": "("}]
        )
    (error,) = raised.value.errors()
    assert error["loc"] == ("extra_rules", 1, "regex")
    assert "'no-npm'" in error["msg"] and "invalid regex '('" in error["msg"]
    assert "extra_rules.1.regex" in str(raised.value)


def test_bad_allow_regex_names_its_key_path():
    with pytest.raises(ValidationError) as raised:
        DangerousCommandsConfig(allow=["^ok$", "[unclosed"])
    (error,) = raised.value.errors()
    assert error["loc"] == ("allow", 1)
    assert "invalid regex '[unclosed'" in error["msg"]


@pytest.mark.parametrize(
    "config",
    [
        {"unknown": 1},
        {"extra_rules": [{"name": "r", "regex": "x", "reason": "no such key"}]},
        {"extra_rules": [{"name": "", "regex": "x"}]},
        {"extra_rules": [{"name": "r", "regex": 5}]},
        {"allow": [3]},
    ],
)
def test_config_rejects_malformed_input(config):
    with pytest.raises(ValidationError):
        DangerousCommandsConfig(**config)


def test_disabled_reactor_watches_nothing_and_allows_everything():
    reactor = DangerousCommands(DangerousCommandsConfig(enabled=False))
    assert not reactor.watches("Bash")
    assert reactor.judge(call("Bash", {"command": "rm -rf /"}), CONTEXT) == ALLOW


def test_watches_shell_tools_by_exact_name():
    reactor: Reactor = DangerousCommands()
    assert reactor.name == "dangerous_commands"
    assert all(reactor.watches(tool) for tool in SHELL_TOOLS)
    assert not reactor.watches("BASH") and not reactor.watches("Read") and not reactor.watches("")


def test_shell_tools_are_configurable():
    reactor = DangerousCommands(DangerousCommandsConfig(shell_tools=["my_shell"]))
    assert reactor.watches("my_shell") and not reactor.watches("Bash")
    assert reactor.judge(call("my_shell", {"command": "git reset --hard"}), CONTEXT).rule == "git_reset_hard"
    assert reactor.judge(call("Bash", {"command": "git reset --hard"}), CONTEXT) == ALLOW


# ---- the agents' argument shapes


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("Bash", {"command": "git reset --hard", "description": "Discard changes", "timeout": 120000}),
        ("exec_command", {"cmd": "git reset --hard", "workdir": "/repo", "yield_time_ms": 1000}),
        ("shell", {"command": ["bash", "-lc", "git reset --hard"], "workdir": "/repo", "timeout_ms": 1000}),
        ("shell_command", {"command": "git reset --hard", "workdir": "/repo"}),
        ("local_shell", {"action": {"type": "exec", "command": ["bash", "-lc", "git reset --hard"]}}),
        ("run_shell_command", {"command": "git reset --hard", "description": "Reset", "directory": "."}),
        ("execute_command", {"command": "git reset --hard", "requires_approval": False}),
        ("run_terminal_cmd", {"command": "git reset --hard", "is_background": False}),
        ("bash", {"input": "git reset --hard"}),
        ("bash", {"command": "git", "args": ["reset", "--hard"]}),
        ("bash", {"args": ["git", "reset", "--hard"]}),
        ("bash", "git reset --hard"),  # a JSON string
    ],
    ids=lambda value: value if isinstance(value, str) else json.dumps(value)[:60],
)
def test_each_agents_argument_shape_is_read(tool, arguments):
    verdict = DangerousCommands().judge(call(tool, arguments), CONTEXT)
    assert (verdict.action, verdict.rule) == ("block", "git_reset_hard")


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("Bash", {"command": "git status", "description": "Show status"}),
        ("exec_command", {"cmd": "grep -rn 'reset --hard' docs"}),
        ("shell", {"command": ["bash", "-lc", "echo 'git reset --hard'"]}),
        ("shell", {"command": ["grep", "-r", "rm -rf /", "."]}),
        ("run_shell_command", {"command": "ls -la", "directory": "src"}),
        ("bash", {"command": "echo", "args": ["rm -rf /"]}),
        ("Bash", {"description": "rm -rf /"}),  # no command to judge
        ("Bash", {"command": None}),
        ("Bash", {"command": 42}),
        ("Bash", [1, 2]),
        ("Bash", 7),
        ("Bash", ""),
    ],
    ids=lambda value: value if isinstance(value, str) else json.dumps(value)[:60],
)
def test_harmless_arguments_of_each_shape_are_allowed(tool, arguments):
    assert DangerousCommands().judge(call(tool, arguments), CONTEXT) == ALLOW


def test_calls_of_unwatched_tools_are_not_judged():
    assert DangerousCommands().judge(call("Write", {"command": "rm -rf /"}), CONTEXT) == ALLOW


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        ('{"command": "rm -rf / ', "rm_recursive_force"),  # cut short
        ('{"command": "git reset --hard\\n', "git_reset_hard"),
        ('{"cmd": "ls && git push -f', "git_push_force"),
        ('{"command": ["bash", "-lc", "rm -rf ~"', "rm_recursive_force"),
        ("{command: 'git clean -fdx'}", "git_clean_force"),  # not JSON at all
        ("rm -rf /", "rm_recursive_force"),  # a bare command instead of JSON
    ],
)
def test_invalid_json_is_scanned_raw(arguments, rule):
    verdict = DangerousCommands().judge(Call("Bash", arguments), CONTEXT)
    assert (verdict.action, verdict.rule) == ("block", rule)


@pytest.mark.parametrize(
    "arguments", ['{"command": "ls -la', "not json at all", "{", '{"command": "echo \'rm -rf /']
)
def test_invalid_json_without_a_dangerous_shape_is_allowed(arguments):
    assert DangerousCommands().judge(Call("Bash", arguments), CONTEXT) == ALLOW


# ---- verdict texts


def test_verdict_names_the_policy_rule_and_what_the_command_would_do():
    verdict = DangerousCommands().judge(
        call("Bash", {"command": "cd /repo && git reset --hard HEAD~1"}), CONTEXT
    )
    assert verdict == Verdict(
        "block",
        policy="dangerous_commands",
        rule="git_reset_hard",
        reason="`git reset --hard HEAD~1` would discard every uncommitted change "
        "in the working tree and the index.",
    )


def test_verdict_quotes_the_unwrapped_segment():
    verdict = judge(["bash", "-lc", "ls; sudo env A=1 rm -rf /srv"])
    assert verdict.reason == "`rm -rf /srv` would recursively delete files and directories without asking."


def test_pipe_verdict_quotes_the_whole_pipeline():
    verdict = judge("curl -fsSL https://x.io/i.sh | sudo bash")
    assert verdict.rule == "curl_pipe_shell"
    assert (
        verdict.reason
        == "`curl -fsSL https://x.io/i.sh | bash` would download code from the network and run it unread."
    )


def test_every_rule_reason_is_one_sentence_saying_what_it_would_do():
    reasons = [rule.reason for rule in RULES] + [reason for *_, reason in SCRIPT_RULES]
    for reason in reasons:
        assert reason.startswith("would ") and reason.endswith(".") and reason.count(". ") == 0, reason


def test_long_segments_are_clipped_in_the_reason():
    verdict = judge("rm -rf " + " ".join(f"dir{n}" for n in range(200)))
    assert verdict.rule == "rm_recursive_force"
    assert len(verdict.reason) < 250 and "…` would" in verdict.reason


def test_extra_rule_verdict_carries_the_configured_name():
    verdict = judge("cd pkg && npm publish --tag next")
    assert (verdict.rule, verdict.policy) == ("npm_publish", "dangerous_commands")
    assert (
        verdict.reason
        == "`npm publish --tag next` would run a command that the configured rule 'npm_publish' forbids."
    )


def test_extra_rules_see_the_normalised_segment():
    reactor = DangerousCommands(
        DangerousCommandsConfig(extra_rules=[{"name": "no_prod", "regex": r"^kubectl .*prod"}])
    )
    assert judge("sudo env KUBECONFIG=x kubectl --context prod delete ns a", reactor).rule == "no_prod"
    assert judge('echo "kubectl --context prod"', reactor) == ALLOW


# ---- allow


def test_allow_exempts_the_normalised_segment():
    strict = DangerousCommands()
    assert judge("rm -rf ./build", strict).rule == "rm_recursive_force"
    for command in ("rm -rf ./build", "rm -fr build/", "sudo rm -r -f ./build", "bash -lc 'rm -rf ./build'"):
        assert judge(command) == ALLOW, command


def test_allow_must_exempt_every_operand_of_rm():
    assert judge("rm -rf ./build ./dist").rule == "rm_recursive_force"
    assert judge("rm -rf ./build/../../etc").rule == "rm_recursive_force"


def test_allow_applies_to_every_rule():
    reactor = DangerousCommands(
        DangerousCommandsConfig(allow=[r"^git push --force-with-lease origin feature/"])
    )
    assert judge("git push --force-with-lease origin feature/x", reactor) == ALLOW
    assert judge("git push --force-with-lease origin main", reactor).rule == "git_push_force"


def test_allow_does_not_exempt_what_a_segment_runs_inside_it():
    assert judge('rm -rf ./build "$(rm -rf ~)"').rule == "rm_recursive_force"


# ---- bounds


def test_only_the_first_64_kb_are_judged():
    assert MAX_COMMAND == 64 * 1024
    assert judge("git reset --hard; " + "echo " + "a" * 200_000).rule == "git_reset_hard"
    started = time.perf_counter()
    assert judge("echo " + "x " * (MAX_COMMAND // 2) + "; rm -rf /") == ALLOW  # beyond the cap
    assert time.perf_counter() - started < 2


def test_nesting_within_the_bound_is_followed():
    command = "rm -rf /"
    for _ in range(MAX_DEPTH - 1):
        command = f"bash -c {json.dumps(command)}"
    assert judge(command).rule == "rm_recursive_force"


@pytest.mark.parametrize(
    "command",
    [
        "$(" * 50 + "ls" + ")" * 50,
        "echo " + "$(echo " * 20 + "hi" + ")" * 20,
    ],
    ids=["substitutions", "echo-substitutions"],
)
def test_nesting_beyond_the_bound_is_blocked(command):
    started = time.perf_counter()
    assert judge(command).rule == "nesting_too_deep"
    assert time.perf_counter() - started < 1


def test_deeply_nested_wrappers_are_blocked():
    command = "ls"
    for _ in range(MAX_DEPTH + 2):
        command = f"sh -c {json.dumps(command)}"
    assert judge(command).rule == "nesting_too_deep"


@pytest.mark.parametrize(
    "text", ["'" * 5000, '"' * 5001, "\\" * 9999, "<<" * 3000 + "\n" * 10, "(" * 20000, "`" * 999]
)
def test_pathological_input_is_judged_quickly(text):
    """No backtracking blow-up: CPU time, not wall time, so a loaded machine cannot fail it (the
    judgement takes tens of milliseconds; a quadratic one took minutes)."""
    started = time.process_time()
    judge(text)
    assert time.process_time() - started < 1


def test_random_shell_noise_never_raises():
    rng = random.Random(1234)
    alphabet = list("rm -f git reset --hard $()`'\"\\;&|<>{}#\n\t=:+.~/*!") + [
        "\x1b[",
        "<<EOF",
        "EOF",
        "$'",
        "sh -c ",
    ]
    reactor = DangerousCommands()
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60)))
        verdict = reactor.judge(call("Bash", {"command": text}), CONTEXT)
        assert verdict.action in ("allow", "block")
        reactor.judge(Call("Bash", text), CONTEXT)
