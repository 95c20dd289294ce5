"""Loop detection in process: the detector (policies/loops.py), its event stage, and the seam's
way of ending an answer (addons/stages.py, addons/translate.py) on both stream paths.

The subprocess tests (tests/test_e2e_loops.py) pin the same through a real mitmdump; the corpus
of ordinary answers that must never trigger is tests/test_loop_corpus.py.
"""

from __future__ import annotations

import pytest

import translators
from addons import exchange
from addons.stages import StageChain
from addons.translate import StreamObserver, StreamTranslator
from policies.gate import Decision
from policies.loops import LoopDetector, LoopStage, check_text
from policies.session_config import LoopDetectionConfig
from translators.canonical import ChatRequest, End, MessageStart, ReasoningDelta, Stop, TextDelta

CONFIG = LoopDetectionConfig()
PARAGRAPH = "The cache returns the stored value when the key exists; otherwise it computes it again. "
UNITS = {
    "a word": "again ",
    "a line": "Checking the file once more.\n",
    "a paragraph": PARAGRAPH,
    "three paragraphs": PARAGRAPH * 2 + "So I will look at the cache.\n\n",
}
NOTE = "[llm-proxy] loop detected:"


def first_loop(text: str, piece: int = 4, config: LoopDetectionConfig = CONFIG) -> int | None:
    """How many characters a stream of ``text`` in ``piece``-sized deltas took to be stopped."""
    detector = LoopDetector(config)
    for start in range(0, len(text), piece):
        if detector.add(text[start : start + piece]):
            return start + piece
    return None


@pytest.mark.parametrize("unit", list(UNITS.values()), ids=list(UNITS))
@pytest.mark.parametrize("piece", [1, 4, 500])
def test_a_repeated_unit_is_stopped_within_a_bounded_number_of_characters(unit, piece):
    intro = "Let me think about this. "
    said = first_loop(intro + unit * 2000, piece)
    assert said is not None
    repeats = CONFIG.short_repeats if len(unit) < CONFIG.long_unit else CONFIG.long_repeats
    loop = max(CONFIG.min_chars, repeats * len(unit)) + len(unit)  # whole copies, the last one ending
    assert said <= len(intro) + loop + len(unit) + CONFIG.check_every + piece


def test_the_tail_kept_per_stream_stays_bounded():
    detector = LoopDetector(CONFIG)
    text = "".join(f"line {n}: value {n * 7919 % 10007}\n" for n in range(40_000))
    for start in range(0, len(text), 64):
        assert detector.add(text[start : start + 64]) is None
        assert len(detector.tail) <= 2 * CONFIG.window


def test_thresholds_are_configurable():
    unit = PARAGRAPH * 2 + "Next.\n"  # a long unit
    text = unit * 4
    assert check_text(text, CONFIG) is None, "4 copies are below the default long_repeats of 5"
    strict = LoopDetectionConfig(long_repeats=3, min_chars=200, check_every=1)
    loop = check_text(text, strict)
    assert loop is not None and len(loop.unit) == len(unit) and loop.repeats == 3


def test_the_note_says_what_repeated_and_how_often():
    loop = check_text(UNITS["a line"] * 200, CONFIG)
    assert loop is not None
    assert loop.unit == UNITS["a line"]
    note = loop.note()
    assert note.startswith(NOTE) and "'Checking the file once more.\\n'" in note and "29 characters" in note


def test_a_long_unit_is_quoted_shortened():
    loop = check_text(UNITS["three paragraphs"] * 20, CONFIG)
    assert loop is not None and "…'" in loop.note() and len(loop.note()) < 250


def test_the_stage_passes_events_until_the_loop_and_then_ends_the_answer():
    decisions: list[Decision] = []
    stage = LoopStage(CONFIG, decisions.append)
    head = [MessageStart(id="m", model="x"), TextDelta(text="Intro. ")]
    assert stage.feed(head) == head and stage.ending is None
    passed: list = []
    for _ in range(200):
        passed += stage.feed([TextDelta(text=UNITS["a line"])])
        if stage.ending is not None:
            break
    assert stage.ending is not None
    note, stop, end = stage.ending
    assert isinstance(note, TextDelta) and NOTE in note.text
    assert stop == Stop(reason="end_turn") and isinstance(end, End)
    assert stage.feed([TextDelta(text="more")]) == [], "nothing passes after the end"
    assert [d.policy for d in decisions] == ["loop_detection"] and decisions[0].rule == "text loop"
    assert len("".join(e.text for e in passed)) < 2000


def test_a_looping_reasoning_is_stopped_as_reasoning():
    decisions: list[Decision] = []
    stage = LoopStage(CONFIG, decisions.append)
    stage.feed([ReasoningDelta(text=UNITS["a line"] * 100)])
    assert stage.ending is not None and "the reasoning repeated" in stage.ending[0].text
    assert decisions[0].rule == "reasoning loop"


def test_a_whole_answer_delta_is_cut_where_the_loop_was_confirmed():
    stage = LoopStage(CONFIG, lambda d: None)
    text = "Start. " + UNITS["a paragraph"] * 300
    (cut,) = stage.feed([TextDelta(text=text)])
    assert text.startswith(cut.text) and len(cut.text) < 4000


def test_a_chain_that_ended_passes_nothing_more_and_releases_nothing_at_close():
    stage = LoopStage(CONFIG, lambda d: None)
    chain = StageChain([stage])
    out = chain.feed([TextDelta(text=UNITS["a word"] * 1000)])
    assert chain.ended and out[-3:] == chain.ending
    assert chain.feed([TextDelta(text="x")]) == [] and chain.close() == []


def looping_exchange(protocol: str, stages: list) -> exchange.Exchange:
    body = {"model": "m", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    ex = exchange.Exchange(
        client_protocol=protocol, surface="front_door", body=body, stream=True, selector="m"
    )
    ex.event_stages = stages
    return ex


def client_events(protocol: str, data: bytes) -> list:
    decoder = translators.get(protocol).StreamDecoder()
    return decoder.feed(data) + decoder.close()


def looping_anthropic_chunks() -> list[bytes]:
    """A provider's Anthropic stream of a model saying one line 400 times, in 700-byte pieces."""
    encoder = translators.get("anthropic").StreamEncoder(ChatRequest(model="m"))
    texts = [TextDelta(text=t) for t in ["Let me see. ", *[UNITS["a line"]] * 400]]
    body = encoder.encode([MessageStart(id="msg_1", model="m"), *texts, Stop(reason="end_turn"), End()])
    return [body[i : i + 700] for i in range(0, len(body), 700)]


def test_the_fast_path_passes_the_providers_bytes_then_only_the_closing_events():
    ex = looping_exchange("anthropic", [LoopStage(CONFIG, lambda d: None)])
    observer = StreamObserver(translators.get("anthropic").StreamDecoder(), ex)
    chunks = looping_anthropic_chunks()
    out: list[bytes] = []
    for n, chunk in enumerate(chunks):
        got = observer(chunk)
        out += got
        if ex.cut:
            passed = chunk[: chunk.rfind(b"\n\n") + 2]
            assert got[0].startswith(passed), "the provider's bytes pass untouched up to the cut"
            break
    assert ex.cut and n < len(chunks) // 3
    assert observer(chunks[n + 1]) == [] and observer(b"") == [], "what follows the cut is dropped"
    events = client_events("anthropic", b"".join(out))
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.startswith("Let me see. ") and NOTE in text
    assert Stop(reason="end_turn") in events and isinstance(events[-1], End)


def test_a_translated_stream_ends_in_the_clients_protocol_and_marks_the_exchange_cut():
    ex = looping_exchange("openai-chat", [LoopStage(CONFIG, lambda d: None)])
    encoder = translators.get("openai-chat").StreamEncoder(ex.canonical())
    translator = StreamTranslator(translators.get("anthropic").StreamDecoder(), encoder, ex)
    out = b""
    for chunk in looping_anthropic_chunks():
        out += b"".join(translator(chunk))
        if ex.cut:
            break
    assert ex.cut
    out += b"".join(translator(b""))
    assert out.rstrip().endswith(b"data: [DONE]") and out.count(b"[DONE]") == 1
    events = client_events("openai-chat", out)
    assert NOTE in "".join(e.text for e in events if isinstance(e, TextDelta))
    assert any(isinstance(e, Stop) and e.reason == "end_turn" for e in events)
