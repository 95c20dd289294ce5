"""The rewriting policy (``policies/rewrite.py``): rule validation, whole-text semantics, requests,
and streams that must agree with the whole text however they are chunked."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from policies.rewrite import Rewriter, RewriteRule, StreamRewriter
from translators.canonical import ChatRequest, Image, Message, Text, ToolCall, ToolResult

SEED = 20240611


def rules(*specs: dict[str, Any]) -> Rewriter:
    return Rewriter([RewriteRule.model_validate(spec) for spec in specs])


def streamed(stream: StreamRewriter, chunks: list[str]) -> str:
    return "".join(stream.feed(chunk) for chunk in chunks) + stream.flush()


def random_chunks(text: str, rng: random.Random, largest: int = 7) -> list[str]:
    chunks, pos = [], 0
    while pos < len(text):
        size = rng.randint(0, largest)  # empty chunks too
        chunks.append(text[pos : pos + size])
        pos += size
    return chunks


def assert_any_chunking(rewriter: Rewriter, text: str, tries: int = 150) -> str:
    """The stream equals ``rewrite_text`` for every 2-way and 3-way cut and random chunkings."""
    whole = rewriter.rewrite_text(text, "assistant")
    assert streamed(rewriter.stream(), [text]) == whole
    assert streamed(rewriter.stream(), list(text)) == whole
    for i in range(len(text) + 1):
        assert streamed(rewriter.stream(), [text[:i], text[i:]]) == whole, i
        for j in range(i, min(len(text), i + 12) + 1):
            assert streamed(rewriter.stream(), [text[:i], text[i:j], text[j:]]) == whole, (i, j)
    rng = random.Random(SEED)
    for _ in range(tries):
        chunks = random_chunks(text, rng)
        assert streamed(rewriter.stream(), chunks) == whole, chunks
    return whole


# -- validation ----------------------------------------------------------------------------------


class _Policies(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rewrite: list[RewriteRule] = []


class _Config(BaseModel):
    """How the suite's config nests the rules: ``policies.rewrite``."""

    policies: _Policies


def config_error(rule_list: list[dict[str, Any]]) -> str:
    """The first error as the suite's config loader reports it: ``key.path: message``."""
    with pytest.raises(ValidationError) as caught:
        _Config.model_validate({"policies": {"rewrite": rule_list}})
    first = caught.value.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg'].removeprefix('Value error, ')}"


GOOD = {"where": "user", "find": "x", "replace": "y"}


@pytest.mark.parametrize(
    "bad, expected",
    [
        ({"where": "user", "regex": "(unclosed", "replace": ""}, r"policies\.rewrite\.1\.regex: not a valid"),
        ({"where": "user", "regex": "", "replace": ""}, r"policies\.rewrite\.1\.regex: must not be empty"),
        ({"where": "user", "find": "", "replace": ""}, r"policies\.rewrite\.1\.find: "),
        ({"where": "tool", "find": "a", "replace": ""}, r"policies\.rewrite\.1\.where: "),
        ({"where": "user", "find": "a", "regex": "a", "replace": ""}, r"policies\.rewrite\.1: .*not both"),
        ({"where": "user", "find": "a"}, r"policies\.rewrite\.1: give exactly one of replace"),
        ({"where": "user", "find": "a", "replace": "", "append": "b"}, r"policies\.rewrite\.1: give exactly"),
        ({"where": "user", "replace": "b"}, r"policies\.rewrite\.1: replace needs find or regex"),
        ({"where": "user", "find": "a", "replace": "", "color": 1}, r"policies\.rewrite\.1\.color: "),
        (
            {"where": "assistant", "regex": "a", "replace": "", "max_match": 1},
            r"policies\.rewrite\.1\.max_match",
        ),
    ],
)
def test_config_errors_name_the_key_path(bad: dict[str, Any], expected: str) -> None:
    assert re.match(expected, config_error([GOOD, bad]))


def test_valid_rules() -> None:
    config = _Config.model_validate(
        {
            "policies": {
                "rewrite": [
                    GOOD,
                    {"where": "system", "regex": "(?i)colou?r", "prepend": "<", "max_match": 16},
                    {"where": "assistant", "append": "\n-- via proxy"},
                ]
            }
        }
    )
    found, regex, whole = config.policies.rewrite
    assert not found.whole and found.pattern is None
    assert regex.pattern is not None and regex.pattern.pattern == "(?i)colou?r"  # compiled at validation
    assert whole.whole and whole.max_match == 256


# -- whole texts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, text, expected",
    [
        ({"find": "cat", "replace": "dog"}, "cat catalog scat", "dog dogalog sdog"),
        ({"find": "cat", "prepend": "<"}, "cat catalog", "<cat <catalog"),
        ({"find": "cat", "append": ">"}, "cat catalog", "cat> cat>alog"),
        ({"find": "aab", "replace": "X"}, "aaab aabaab", "aX XX"),
        ({"regex": r"\d+", "replace": "#"}, "a1 b22 c333", "a# b# c#"),
        ({"regex": r"\d+", "prepend": "n="}, "a1 b22", "an=1 bn=22"),
        ({"regex": r"\d+", "append": "!"}, "a1 b22", "a1! b22!"),
        ({"regex": r"(\w)@", "replace": r"\1"}, "a@b", r"\1b"),  # no group references
        ({"regex": "(?m)^", "prepend": "> "}, "one\ntwo\n", "> one\n> two\n> "),
        ({"prepend": "["}, "whole answer", "[whole answer"),
        ({"append": "]"}, "whole answer", "whole answer]"),
        ({"append": "]"}, "", ""),
        ({"find": "é", "replace": "e"}, "café crème é", "cafe crème e"),
        ({"find": "🙂🙂", "replace": ":)"}, "🙂🙂🙂 ok", ":)🙂 ok"),
    ],
)
def test_rewrite_text(spec: dict[str, Any], text: str, expected: str) -> None:
    assert rules({"where": "assistant", **spec}).rewrite_text(text, "assistant") == expected


def test_regex_semantics_are_re_sub() -> None:
    rng = random.Random(SEED)
    for pattern in [r"a*", r"(?m)^|a", r"b?", r"\bab", r"(?<=a)b+", r"a$", r"(?m)$", r"ab|abc"]:
        rule = RewriteRule(where="assistant", regex=pattern, replace="<>")
        for _ in range(50):
            text = "".join(rng.choice("ab \n") for _ in range(rng.randint(0, 12)))
            assert rule.apply(text) == re.sub(pattern, "<>", text), (pattern, text)


def test_rules_apply_in_order_each_on_the_previous_output() -> None:
    first = rules(
        {"where": "assistant", "find": "a", "replace": "b"},
        {"where": "assistant", "find": "b", "replace": "c"},
    )
    second = rules(
        {"where": "assistant", "find": "b", "replace": "c"},
        {"where": "assistant", "find": "a", "replace": "b"},
    )
    assert first.rewrite_text("ab", "assistant") == "cc"
    assert second.rewrite_text("ab", "assistant") == "bc"


def test_rules_apply_only_where_they_say() -> None:
    rewriter = rules({"where": "system", "find": "a", "replace": "b"})
    assert rewriter.rewrite_text("a", "system") == "b"
    assert rewriter.rewrite_text("a", "user") == "a"
    assert rewriter.rewrite_text("a", "assistant") == "a"


def test_active() -> None:
    assert not Rewriter([]).active
    answers = rules({"where": "assistant", "find": "a", "replace": "b"})
    assert answers.active and answers.active_for_answers and not answers.active_for_requests
    requests = rules({"where": "user", "find": "a", "replace": "b"})
    assert requests.active and requests.active_for_requests and not requests.active_for_answers


# -- requests ------------------------------------------------------------------------------------


def make_request() -> ChatRequest:
    return ChatRequest(
        model="m",
        system=[Text(text="You are terse.", cache_control={"type": "ephemeral"}), Text(text="Be kind.")],
        messages=[
            Message(role="user", content=[Text(text="hello secret"), Image(url="https://x/y.png")]),
            Message(
                role="assistant",
                content=[Text(text="secret answer"), ToolCall(id="c1", name="t", arguments="{}")],
            ),
            Message(
                role="user",
                content=[ToolResult(tool_call_id="c1", content=[Text(text="secret output")])],
            ),
            Message(role="user", content=[Text(text="the secret"), Text(text="again")]),
        ],
    )


def test_request_rewrite() -> None:
    rewriter = rules(
        {"where": "system", "find": "terse", "replace": "brief"},
        {"where": "system", "prepend": "RULES: "},
        {"where": "system", "append": " END"},
        {"where": "user", "find": "secret", "replace": "[redacted]"},
        {"where": "user", "append": "!"},
        {"where": "assistant", "find": "secret", "replace": "NO"},
    )
    request = make_request()
    before = request.model_dump()
    new = rewriter.rewrite_request(request)
    assert request.model_dump() == before  # not mutated
    assert [t.text for t in new.system] == ["RULES: You are brief.", "Be kind. END"]
    assert new.system[0].cache_control == {"type": "ephemeral"}
    user, assistant, results, last = new.messages
    assert (
        user.content[0] == Text(text="hello [redacted]!")
        and user.content[1] is request.messages[0].content[1]
    )
    assert assistant is request.messages[1]  # history answers are not rewritten
    assert results is request.messages[2]  # tool results are not user text
    assert [p.text for p in last.content] == ["the [redacted]", "again!"]  # type: ignore[union-attr]
    assert new.model == request.model


def test_request_unchanged_is_the_same_object() -> None:
    request = make_request()
    assert rules({"where": "user", "find": "absent", "replace": "x"}).rewrite_request(request) is request
    assert rules({"where": "assistant", "find": "secret", "replace": "x"}).rewrite_request(request) is request
    assert Rewriter([]).rewrite_request(request) is request


def test_whole_text_rules_never_invent_text() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message(role="user", content=[ToolResult(tool_call_id="c", content=[])])],
    )
    rewriter = rules({"where": "system", "prepend": "S"}, {"where": "user", "append": "U"})
    assert rewriter.rewrite_request(request) is request
    stream = rules({"where": "assistant", "prepend": "<"}, {"where": "assistant", "append": ">"}).stream()
    assert streamed(stream, ["", ""]) == ""


# -- streams -------------------------------------------------------------------------------------

CASES = [
    ({"find": "secret", "replace": "[x]"}, "a secret, another secret! secretsecret secre"),
    ({"find": "aab", "replace": "X"}, "aaab aaaab aabaab aa"),
    ({"find": "abab", "replace": "X"}, "abababab ababab aba"),
    ({"find": "ab", "prepend": "<"}, "abab xab ab a"),
    ({"find": "ab", "append": ">"}, "abab xab ab a"),
    ({"find": "ça", "replace": "🙂"}, "ça va? çaça ç"),
    (
        {"regex": r"(?i)as an ai language model,? ", "replace": ""},
        "As an AI language model, I can't. as an ai language model I",
    ),
    ({"regex": r"\d+", "replace": "#"}, "12 345 6 78"),
    ({"regex": r"colou?r", "prepend": "*"}, "color colour colo"),
    ({"regex": r"\bcat\b", "append": "!"}, "cat concat cat. cats cat"),
    ({"regex": r"(?<=x)y+", "replace": "Y"}, "xyy yy xy xxyyy"),
    ({"regex": "(?m)^", "prepend": "> "}, "one\ntwo\n\nthree"),
    ({"regex": "(?m)$", "append": ";"}, "one\ntwo\n"),
    ({"regex": r"a*", "replace": "-"}, "baaac aa"),
    ({"regex": r"(?m)^|a", "replace": "<>"}, "a\nab\n"),
    ({"regex": r"end$", "replace": "END"}, "end end\nthe end"),
    ({"prepend": "["}, "the whole answer"),
    ({"append": "]"}, "the whole answer"),
]


def tight_window(spec: dict[str, Any], text: str) -> int:
    """A small ``max_match`` the case is guaranteed with: its longest match plus what the pattern
    reads past it (``$`` up to two characters: a final newline, then the end) plus one."""
    longest = max((len(m.group()) for m in re.finditer(spec.get("regex", "$^"), text)), default=0)
    return longest + 3


@pytest.mark.parametrize("tight", [True, False], ids=["tight-window", "wide-window"])
@pytest.mark.parametrize("spec, text", CASES)
def test_stream_equals_whole_text_for_any_chunking(spec: dict[str, Any], text: str, tight: bool) -> None:
    window = tight_window(spec, text) if tight else 40
    rewriter = rules({"where": "assistant", "max_match": window, **spec})
    assert rewriter.rewrite_text(text, "assistant") != text
    assert_any_chunking(rewriter, text)


def test_ai_language_model_example() -> None:
    rewriter = rules({"where": "assistant", "regex": "(?i)as an ai language model,? ", "replace": ""})
    text = "As an AI language model, I cannot browse. As an ai language model I can summarise."
    assert assert_any_chunking(rewriter, text, tries=60) == "I cannot browse. I can summarise."


def test_several_rules_compose_in_streams() -> None:
    rewriter = rules(
        {"where": "assistant", "find": "foo", "replace": "bar"},
        {"where": "assistant", "regex": "barbar", "replace": "B", "max_match": 10},
        {"where": "assistant", "find": "Bz", "append": "!"},
        {"where": "assistant", "prepend": ">> "},
        {"where": "assistant", "append": " <<"},
    )
    text = "foofoo fobar foobarz barfoo x"
    assert assert_any_chunking(rewriter, text) == ">> B fobar Bz! B x <<"


def test_unicode_across_chunks() -> None:
    rewriter = rules({"where": "assistant", "find": "naïve café 🙂", "replace": "ok"})
    assert (
        assert_any_chunking(rewriter, "a naïve café 🙂, naïve café 🙁, naïve café 🙂")
        == "a ok, naïve café 🙁, ok"
    )


def test_literal_holds_only_a_prefix_of_the_literal() -> None:
    rng = random.Random(SEED)
    stream = rules({"where": "assistant", "find": "needle", "replace": "x"}).stream()
    text = "".join(rng.choice("needl haystack") for _ in range(3000)).replace("needle", "")
    out = []
    for chunk in random_chunks(text, rng, largest=20):
        out.append(stream.feed(chunk))
        fed = "".join(out)
        assert stream.held <= len("needle") - 1
        held = text[: len(fed) + stream.held][len(fed) :]
        assert "needle".startswith(held)
    assert "".join(out) + stream.flush() == text


def test_literal_passes_text_that_cannot_begin_a_match_at_once() -> None:
    stream = rules({"where": "assistant", "find": "needle", "replace": "x"}).stream()
    assert stream.feed("hay") == "hay" and stream.held == 0
    assert stream.feed(" nee") == " " and stream.held == 3
    assert stream.feed("dle") == "x" and stream.held == 0


def test_regex_holds_less_than_max_match() -> None:
    rng = random.Random(SEED)
    stream = rules({"where": "assistant", "regex": r"q\d{3}", "replace": "Q", "max_match": 32}).stream()
    text = "".join(rng.choice("abc q1 ") for _ in range(3000))
    while re.search(r"q\d{3}", text):
        text = re.sub(r"q\d{3}", "", text)
    out = []
    for chunk in random_chunks(text, rng, largest=50):
        out.append(stream.feed(chunk))
        assert stream.held <= 31
    assert "".join(out) + stream.flush() == text


def test_streamed_matches_of_max_match_or_longer_are_not_found() -> None:
    rewriter = rules({"where": "assistant", "regex": r"<[^>]*>", "replace": "", "max_match": 8})
    text = "a<short>b<much longer>c"
    assert rewriter.rewrite_text(text, "assistant") == "abc"  # whole texts: no limit
    for chunks in ([text], list(text), [text[:5], text[5:]]):
        assert streamed(rewriter.stream(), chunks) == "ab<much longer>c"


def test_no_rules_stream_passes_through() -> None:
    stream = Rewriter([]).stream()
    assert stream.feed("abc") == "abc" and stream.flush() == ""


@pytest.mark.parametrize(
    "pattern", [r"a*", r"(?m)^|a", r"b?", r"\bab", r"(?<=a)b+", r"a$", r"(?m)$", r"ab|abc"]
)
def test_stream_fuzz(pattern: str) -> None:
    rng = random.Random(SEED)
    for _ in range(40):
        text = "".join(rng.choice("ab \n") for _ in range(rng.randint(0, 40)))
        spec = {"regex": pattern, "replace": "<>"}
        rewriter = rules({"where": "assistant", "max_match": tight_window(spec, text), **spec})
        whole = rewriter.rewrite_text(text, "assistant")
        for _ in range(10):
            chunks = random_chunks(text, rng, largest=9)
            assert streamed(rewriter.stream(), chunks) == whole, (text, chunks)
