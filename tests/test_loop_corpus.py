"""Ordinary answers never trigger loop detection; looping ones always do, within a bound.

``tests/data/loop_corpus/`` holds long ordinary answers of the kinds that repeat a shape without
looping: tables of constants in five languages, test parametrisations, switch statements,
accessor boilerplate, markdown tables, numbered lists, logs quoted back (with repeated lines),
JSON arrays, CSV, hex dumps, rules and separators, poems with a refrain, prose. Each is checked
as a stream (4-character deltas through the event stage) and as a whole answer, with the default
thresholds users get.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.loops import LoopStage, check_text
from policies.session_config import LoopDetectionConfig
from translators.canonical import TextDelta

CORPUS = Path(__file__).parent / "data" / "loop_corpus"
FILES = sorted(CORPUS.glob("*.md"))
CONFIG = LoopDetectionConfig()
KINDS = ("constants", "parametrize", "switch", "accessors", "table", "numbered", "log", "json", "poem", "csv")


def test_the_corpus_has_forty_long_answers_of_every_kind():
    assert len(FILES) >= 40
    assert all(len(f.read_text()) >= 2000 for f in FILES), "every answer is long enough to be looked at"
    assert all(any(f.name.startswith(kind) for f in FILES) for kind in KINDS)


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_an_ordinary_answer_never_triggers(path):
    text = path.read_text()
    assert check_text(text, CONFIG) is None
    stage = LoopStage(CONFIG, lambda d: pytest.fail(f"loop detected in {path.name}: {d}"))
    for start in range(0, len(text), 4):
        stage.feed([TextDelta(text=text[start : start + 4])])
    assert stage.ending is None


LOOPS = {
    "a sentence": "I need to check the configuration again. ",
    "a code line": "    return self.value\n",
    "a table row": "| 1 | alpha | ok | 12 |\n",
    "a json element": '{"id": 1, "name": "alpha"},\n',
    "a paragraph": (
        "Looking at the error again, the import fails because the module is not on the path. "
        "Let me add it to the path and try once more.\n\n"
    ),
    "a stanza": "And the river runs,\nThe river runs to the sea,\nAnd the river runs,\nTo the sea.\n\n",
}


@pytest.mark.parametrize("unit", list(LOOPS.values()), ids=list(LOOPS))
@pytest.mark.parametrize("path", FILES[::10], ids=[f.stem for f in FILES[::10]])
def test_an_answer_that_falls_into_a_loop_is_stopped_soon_after(path, unit):
    """An ordinary start, then the loop: stopped within min_chars plus a few copies."""
    start = path.read_text()[:3000]
    text = start + unit * 400
    stage = LoopStage(CONFIG, lambda d: None)
    for at in range(0, len(text), 4):
        stage.feed([TextDelta(text=text[at : at + 4])])
        if stage.ending is not None:
            break
    assert stage.ending is not None
    assert at - len(start) <= CONFIG.min_chars + 2 * len(unit) * CONFIG.long_repeats + CONFIG.check_every
