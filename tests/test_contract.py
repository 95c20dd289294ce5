"""The contract every protocol module keeps (``translators.protocol``), over each protocol's examples.

One test per promise, parametrised over "openai-chat", "openai-responses", "anthropic" and "gemini"
with the examples of ``support.examples``: what is true of every protocol is pinned here once, and
each protocol's own test file pins only what is particular to it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
from support.examples import EXAMPLES, ProtocolExamples, with_json_arguments

import translators
from translators import protocol
from translators.assemble import response_from_events
from translators.canonical import ChatRequest, Event
from translators.errors import ProxyError

PROTOCOLS = list(EXAMPLES)


def cases(field: str) -> list[Any]:
    """(protocol, example name) for every entry of an ``ProtocolExamples`` dict field."""
    return [
        pytest.param(name, key, id=f"{name}-{key}")
        for name, examples in EXAMPLES.items()
        for key in getattr(examples, field)
    ]


def decode(name: str, stream: bytes) -> list[Event]:
    decoder = translators.get(name).StreamDecoder()
    return decoder.feed(stream) + decoder.close()


# -- the module surface ---------------------------------------------------------------------------


def signature_problems(where: str, expected: Any, got: Any) -> list[str]:
    """``got`` takes every parameter of ``expected`` (less ``self``) in the same way; parameters
    beyond those must be optional."""
    wanted = [p for p in inspect.signature(expected).parameters.values() if p.name != "self"]
    have = inspect.signature(got).parameters
    problems = [
        f"{where}: parameter {p.name!r} missing or not {p.kind.description}"
        for p in wanted
        if p.name not in have or have[p.name].kind != p.kind
    ]
    names = {p.name for p in wanted}
    extra = [p for p in have.values() if p.name not in names and p.name != "self"]
    required = [p.name for p in extra if p.default is p.empty]
    return problems + [f"{where}: extra parameter {name!r} has no default" for name in required]


def members_missing(value: Any, surface: type, where: str) -> list[str]:
    """What ``value`` lacks of a Protocol class: its annotated attributes and its methods."""
    problems = [f"{where}.{attr}: missing" for attr in surface.__annotations__ if not hasattr(value, attr)]
    for attr, member in vars(surface).items():
        if attr.startswith("_") or not callable(member):
            continue
        if not callable(found := getattr(value, attr, None)):
            problems.append(f"{where}.{attr}: missing")
        else:
            problems += signature_problems(f"{where}.{attr}", member, found)
    return problems


@pytest.mark.parametrize("name", PROTOCOLS)
def test_each_module_is_registered_under_its_name_and_provides_the_whole_protocol_surface(name: str) -> None:
    module = translators.get(name)

    assert module is importlib.import_module(f"translators.{name.replace('-', '_')}")
    assert translators.PROTOCOLS[name] is module and module.NAME == name
    assert isinstance(module.STREAM_CONTENT_TYPE, str)
    assert members_missing(module, protocol.ProtocolModule, name) == []
    decoder = module.StreamDecoder()
    encoder = module.StreamEncoder(ChatRequest(model="m"))
    assert members_missing(decoder, protocol.StreamDecoder, f"{name}.StreamDecoder()") == []
    assert members_missing(encoder, protocol.StreamEncoder, f"{name}.StreamEncoder()") == []


def test_every_protocol_has_examples() -> None:
    assert sorted(EXAMPLES) == sorted(translators.PROTOCOLS)
    assert all(isinstance(examples, ProtocolExamples) for examples in EXAMPLES.values())


# -- render_request -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROTOCOLS)
def test_render_request_does_not_mutate_its_input(name: str) -> None:
    original = EXAMPLES[name].render_input()
    snapshot = original.model_copy(deep=True)

    translators.get(name).render_request(original)
    translators.get(name).render_request(original)

    assert original == snapshot
    assert original.model_dump() == snapshot.model_dump()


# -- stream decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROTOCOLS)
def test_the_examples_cut_inside_multi_byte_characters(name: str) -> None:
    """So that cutting at every byte also cuts inside UTF-8 characters."""
    assert any(max(stream) >= 0x80 for stream in EXAMPLES[name].streams.values())


@pytest.mark.parametrize(("name", "key"), cases("streams"))
def test_streams_cut_at_any_byte_decode_like_one_feed(name: str, key: str) -> None:
    stream = EXAMPLES[name].streams[key]
    whole = decode(name, stream)
    for cut in range(len(stream) + 1):
        decoder = translators.get(name).StreamDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) + decoder.close() == whole, cut


@pytest.mark.parametrize(("name", "key"), cases("streams"))
def test_streams_fed_byte_by_byte_decode_like_one_feed(name: str, key: str) -> None:
    stream = EXAMPLES[name].streams[key]
    decoder = translators.get(name).StreamDecoder()
    events = [event for i in range(len(stream)) for event in decoder.feed(stream[i : i + 1])]

    assert events + decoder.close() == decode(name, stream)


@pytest.mark.parametrize(("name", "key"), cases("answers"))
def test_a_streamed_answer_assembles_to_the_same_answer_not_streamed(name: str, key: str) -> None:
    """docs/snags.md #2."""
    stream, body = EXAMPLES[name].answers[key]
    streamed = response_from_events(decode(name, stream))
    whole = translators.get(name).parse_response(body)

    if EXAMPLES[name].exact_arguments:
        assert streamed == whole
    else:
        assert with_json_arguments(streamed) == with_json_arguments(whole)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "index"),
    [
        pytest.param(name, i, id=f"{name}-{case.code}-{case.status}")
        for name, examples in EXAMPLES.items()
        for i, case in enumerate(examples.errors)
    ],
)
def test_a_rendered_error_parses_back_to_its_code_status_and_message(name: str, index: int) -> None:
    case = EXAMPLES[name].errors[index]
    module = translators.get(name)

    status, body = module.render_error(ProxyError(case.code, case.message, status=case.status))
    parsed = module.parse_error(status, body)

    assert status == case.status
    assert (parsed.code, parsed.status, parsed.message) == (case.code, case.status, case.message)
