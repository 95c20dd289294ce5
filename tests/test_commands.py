"""In-process: parsing, stripping and running the in-chat commands (policies/commands.py)."""

from __future__ import annotations

import pytest

from backends.sessions import Session
from policies.commands import CommandError, Commands, selector, status
from translators.canonical import ChatRequest, Image, Message, Text

CONFIGURED = {"openai", "anthropic", "gemini"}


def commands(prefix: str = "!/") -> Commands:
    return Commands(prefix, lambda model: model.partition(":")[0] in CONFIGURED and ":" in model)


def user(*texts: str) -> Message:
    return Message(role="user", content=[Text(text=t) for t in texts])


def assistant(text: str) -> Message:
    return Message(role="assistant", content=[Text(text=text)])


def request(*messages: Message) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages))


def test_commands_are_found_with_and_without_arguments_and_removed_from_the_text():
    c = commands()
    found = c.find("please !/set(temperature=0.2, top_p=0.9) and !/status now")
    assert [(x.name, x.argument) for x in found] == [("set", "temperature=0.2, top_p=0.9"), ("status", None)]
    assert c.strip("please !/status") == "please"


def test_another_prefix_is_escaped_and_the_default_one_is_then_plain_text():
    c = commands("%%")
    assert [x.name for x in c.find("%%help !/status")] == ["help"]


def test_model_oneoff_set_and_unset_change_the_session():
    c, session = commands(), Session(id="s-1", client="key:a")
    lines = c.run(
        c.find("!/model(anthropic:claude-x) !/oneoff(gemini:g) !/set(max_tokens=50, loop-detection=off)"),
        session,
    )
    assert session.model == "anthropic:claude-x" and session.oneoff == "gemini:g"
    assert session.settings == {"max_tokens": 50, "loop-detection": False}
    assert lines[-1] == "set max_tokens=50, loop-detection=off"
    c.run(c.find("!/unset(max_tokens, model)"), session)
    assert session.settings == {"loop-detection": False} and session.model is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("!/nope", "unknown command !/nope"),
        ("!/model(mistral:large)", "not a configured backend:model"),
        ("!/set(temperature=warm)", "expected a float"),
        ("!/set(loop-detection=maybe)", "expected on or off"),
        ("!/set(colour=red)", "known key"),
        ("!/unset(colour)", "expected known keys"),
        ("!/set()", "expected key=value"),
    ],
)
def test_a_bad_command_changes_nothing_and_says_what_was_wrong(text, message):
    c, session = commands(), Session(id="s-1", client="a")
    with pytest.raises(CommandError, match=message):
        c.run(c.find("!/set(temperature=0.5) " + text), session)
    assert session.settings == {}  # the valid command before it was not applied either


def test_only_the_last_user_message_runs_and_history_loses_command_turns_and_their_answers():
    c = commands()
    sent = request(
        user("<system-reminder>ctx</system-reminder>", "!/model(openai:gpt-4o)"),
        assistant("[llm-proxy] model for this session: openai:gpt-4o"),
        user("Fix the bug !/set(temperature=0.1)"),
        assistant("Done."),
        user("Thanks !/status"),
    )
    stripped, found, only = c.strip_request(sent)
    assert [x.name for x in found] == ["status"] and not only
    texts = [[p.text for p in m.content] for m in stripped.messages]
    assert texts == [["<system-reminder>ctx</system-reminder>", "Fix the bug"], ["Done."], ["Thanks"]]


def test_a_message_of_commands_and_agent_context_is_command_only():
    _, found, only = commands().strip_request(request(user("<system-reminder>x</system-reminder>", "!/help")))
    assert only and [x.name for x in found] == ["help"]


def test_a_request_without_commands_is_returned_as_the_same_object():
    sent = request(user("hello"), assistant("hi"), user("bye"))
    stripped, found, only = commands().strip_request(sent)
    assert stripped is sent and found == [] and not only


def test_a_command_beside_an_image_keeps_the_image():
    image = Image(media_type="image/png", data="AAAA")
    sent = request(Message(role="user", content=[Text(text="!/status"), image]))
    stripped, _, only = commands().strip_request(sent)
    assert not only and stripped.messages[0].content == [image]


def test_the_session_selector_carries_model_and_parameters():
    session = Session(
        id="s-1", client="a", model="anthropic:x", settings={"temperature": 0.3, "reasoning-effort": "low"}
    )
    assert selector(session, "gpt-4o") == "anthropic:x?temperature=0.3&reasoning_effort=low"
    session.oneoff = "gemini:y"
    assert selector(session, "gpt-4o").startswith("gemini:y?")
    assert selector(Session(id="s", client="a"), "gpt-4o?seed=1") == "gpt-4o?seed=1"


def test_status_names_the_session_model_and_settings():
    text = status(Session(id="s-9", client="a", model="openai:m", settings={"loop-detection": False}))
    assert text.startswith("session s-9; model: openai:m;") and "loop-detection=off" in text
