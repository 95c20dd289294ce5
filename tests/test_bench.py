"""The benchmark (``scripts/bench.py``) keeps working: a smoke run, and the pieces it trusts.

No timing is asserted anywhere: these tests only make sure the benchmark cannot rot.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import translators
from scripts import bench, fakeprovider
from translators.canonical import TextDelta, UsageUpdate

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(out.read_text())


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_reports_every_path(quick_report: dict[str, Any]) -> None:
    assert list(quick_report["paths"]) == list(bench.PATHS)


@pytest.mark.parametrize("path", ["a", "b", "c", "d", "e"])
def test_quick_run_gives_every_metric_a_number(quick_report: dict[str, Any], path: str) -> None:
    result = quick_report["paths"][path]
    if not result["available"]:  # only wire capture may be missing, and it says so
        assert path == "e" and result["reason"] == "n/a (llm_capture not available)"
        return
    metrics, reference = result["metrics"], quick_report["paths"]["b"]["metrics"]
    assert set(metrics) == set(bench.METRICS)
    for name, value in metrics.items():
        if path == "a" and name in bench.PROXY_METRICS:
            assert value is None, f"{name}: path a has no proxy"
            continue
        assert is_number(value), f"{path}.{name} = {value!r}"
        if reference[name]:  # a few quick requests may cost b less CPU than one clock tick
            assert is_number(result["ratio_to_b"][name]), f"{path}.{name} has no ratio to b"


def test_quick_run_judges_every_target(quick_report: dict[str, Any]) -> None:
    verdicts = {v["name"]: v["result"] for v in quick_report["targets"]}
    assert set(verdicts) == {t.name for t in bench.TARGETS}
    assert set(verdicts.values()) <= {"PASS", "FAIL", "n/a"}
    assert is_number(quick_report["translation_us_per_event"])


@pytest.mark.parametrize(
    ("protocol", "path"), [("openai-chat", b"/v1/chat/completions"), ("anthropic", b"/v1/messages")]
)
def test_fake_stream_is_real_protocol_with_the_requested_events_and_usage(protocol: str, path: bytes) -> None:
    stream = fakeprovider.Answers().get(path, "bench-n25", stream=True)
    assert isinstance(stream, fakeprovider.Stream)
    body = bench.dechunk(stream.whole.partition(b"\r\n\r\n")[2])
    decoder = translators.get(protocol).StreamDecoder()
    events = decoder.feed(body) + decoder.close()
    assert sum(isinstance(e, TextDelta) for e in events) == 25
    assert any(isinstance(e, UsageUpdate) and e.usage.output_tokens == 25 for e in events)


@pytest.mark.parametrize(
    ("protocol", "path"), [("openai-chat", b"/v1/chat/completions"), ("anthropic", b"/v1/messages")]
)
def test_fake_whole_answer_parses_as_the_provider_response(protocol: str, path: bytes) -> None:
    answer = fakeprovider.Answers().get(path, "bench", stream=False)
    assert isinstance(answer, bytes)
    parsed = translators.get(protocol).parse_response(json.loads(answer.partition(b"\r\n\r\n")[2]))
    assert parsed.usage is not None and parsed.usage.output_tokens == 6


class Transport:
    def write(self, data: bytes) -> None:
        pass


@pytest.mark.parametrize("piece", [1, 7, 4096])
async def test_load_generator_reads_a_chunked_stream_cut_anywhere(piece: int) -> None:
    stream = fakeprovider.Answers().get(b"/v1/messages", "bench-n40", stream=True)
    assert isinstance(stream, fakeprovider.Stream)
    client = bench.Client()
    client.transport = Transport()  # type: ignore[assignment]
    done = client.send(b"request", keep=True)
    for at in range(0, len(stream.whole), piece):
        assert not done.done()
        client.data_received(stream.whole[at : at + piece])
    reply = await asyncio.wait_for(done, 1)
    assert reply.status == 200 and reply.chunked
    assert reply.events() == 40 + 5  # message_start, block start and stop, message_delta, message_stop


async def test_load_generator_reads_a_content_length_body_then_the_next_reply() -> None:
    answer = fakeprovider.Answers().get(b"/v1/chat/completions", "bench", stream=False)
    assert isinstance(answer, bytes)
    client = bench.Client()
    client.transport = Transport()  # type: ignore[assignment]
    for _ in range(2):
        done = client.send(b"request", keep=True)
        client.data_received(answer[:10])
        client.data_received(answer[10:])
        reply = await asyncio.wait_for(done, 1)
        assert reply.status == 200 and b"".join(reply.parts) == answer.partition(b"\r\n\r\n")[2]
