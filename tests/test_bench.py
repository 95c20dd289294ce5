"""The benchmark (``scripts/bench.py``) keeps working: a smoke run, and the pieces it trusts.

No timing is asserted anywhere: these tests only make sure the benchmark cannot rot — that every
path runs without errors, that the table and the PASS/FAIL lines have their shape, and that the
requests, the fake provider's answers and the load generator's reading of them are what the
benchmark claims they are.
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
from policies.base import Call, Context
from policies.dangerous_commands import SHELL_TOOLS, DangerousCommands
from scripts import bench, fakeprovider
from translators.canonical import TextDelta, ToolCall, ToolCallDelta, ToolCallStart, UsageUpdate

REPO = Path(__file__).resolve().parents[1]
CHAT, MESSAGES = b"/v1/chat/completions", b"/v1/messages"
PROTOCOLS = [("openai-chat", CHAT), ("anthropic", MESSAGES)]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    """The report and the printed output of one ``--quick`` run."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        check=False,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return json.loads(out.read_text()), done.stdout


@pytest.fixture(scope="module")
def report(quick_run: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return quick_run[0]


def plan_of(report: dict[str, Any]) -> bench.Plan:
    plan = report["plan"]
    return bench.Plan(**plan | {"concurrencies": tuple(plan["concurrencies"])})


def dechunk(data: bytes) -> bytes:
    """An HTTP/1.1 chunked body's data."""
    out, pos = bytearray(), 0
    while (eol := data.find(b"\r\n", pos)) >= 0 and (size := int(data[pos:eol].split(b";")[0], 16)):
        out += data[eol + 2 : eol + 2 + size]
        pos = eol + 4 + size
    return bytes(out)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_run_measures_every_path_without_errors(report: dict[str, Any]) -> None:
    assert list(report["paths"]) == list(bench.PATHS)
    for key, result in report["paths"].items():
        if not result["available"]:  # only wire capture may be missing, and it says so
            assert key == "capture" and result["reason"] == "n/a (llm_capture not available)"
            continue
        assert result["details"]["errors"] == 0, f"{key}: {result['details']}"
        assert not result["details"].get("hold_failures"), key


@pytest.mark.parametrize("key", list(bench.PATHS))
def test_quick_run_gives_every_row_of_a_path_a_number(report: dict[str, Any], key: str) -> None:
    result, spec = report["paths"][key], bench.PATHS[key]
    if not result["available"]:
        return
    for row in bench.rows(plan_of(report)):
        value = result["metrics"][row.key]
        runs = spec.streams if row.stream else spec.whole
        no_proxy = spec.proxy == "none" and (row.key.startswith(("cpu_", "rss_")) or row.key == "hold_errors")
        if not runs or no_proxy:
            assert value is None, f"{key}.{row.key} = {value!r}: this path does not measure it"
            continue
        assert is_number(value), f"{key}.{row.key} = {value!r}"
        reference = report["paths"][bench.BASELINE[row.stream]]["metrics"][row.key]
        if reference and row.key not in bench.NO_RATIO:  # a quick run may cost less CPU than a tick
            assert is_number(result["ratio"][row.key]), f"{key}.{row.key} has no ratio to bare mitmdump"


def test_quick_run_prints_the_table_with_its_baselines(quick_run: tuple[dict[str, Any], str]) -> None:
    report, stdout = quick_run
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    assert header.split()[:2] == ["metric", "baseline"]
    assert all(title in header for title, _, _ in bench.COLUMNS)
    for row in bench.rows(plan_of(report)):
        line = next((line for line in lines if line.startswith(row.title + "  ")), None)
        assert line is not None, f"no table line for {row.title!r}"
        assert bench.BASELINE_TITLE[row.stream] in line
    assert "mitmdump --mode reverse:" in stdout and "--set stream_large_bodies=1" in stdout


def test_quick_run_prints_pass_or_fail_for_every_target(quick_run: tuple[dict[str, Any], str]) -> None:
    report, stdout = quick_run
    chosen = bench.targets(plan_of(report))
    assert [v["title"] for v in report["targets"]] == [t.title for t in chosen]
    assert {v["result"] for v in report["targets"]} <= {"PASS", "FAIL"}
    printed = stdout.split("\ntargets:\n", 1)[1].splitlines()[: len(chosen)]
    for line, target, verdict in zip(printed, chosen, report["targets"], strict=True):
        assert line.split()[0] == verdict["result"] and target.title in line, line


def test_quick_run_reports_the_translation_alone_and_the_upstream_bodies(report: dict[str, Any]) -> None:
    figures = report["in_process"]
    assert is_number(figures["translation_us_per_event"]) and is_number(
        figures["request_translation_ms_per_mb"]
    )
    for key, result in report["paths"].items():
        received, expected = (
            result["details"].get("upstream_bytes"),
            result["details"].get("expected_upstream_bytes"),
        )
        if bench.PATHS[key].whole and result["available"]:
            assert set(received) == set(bench.SIZES)
            for size, got in received.items():
                assert abs(got / expected[size] - 1) <= bench.UPSTREAM_TOLERANCE, (key, size, got)
    assert not [w for w in report["warnings"] if "provider received" in w]


# --- the requests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", list(bench.SIZES.values()))
@pytest.mark.parametrize("shell", [False, True])
def test_agent_body_has_the_exact_size_and_is_always_the_same(size: int, shell: bool) -> None:
    body = bench.agent_body(size, "anthropic:bench-n500-callBash", stream=True, shell=shell)
    assert len(bench.compact(body)) == size
    assert body == bench.agent_body(size, "anthropic:bench-n500-callBash", stream=True, shell=shell)
    translators.get("openai-chat").parse_request(body, model="bench", stream=True)  # a valid request


@pytest.mark.parametrize("size", [200 * bench.KB, 2 * bench.MB])
def test_large_agent_bodies_carry_what_agents_send(size: int) -> None:
    body = bench.agent_body(size, "bench")
    assert 20 <= len(body["tools"]) <= 30
    assert all(t["function"]["parameters"]["type"] == "object" for t in body["tools"])
    assert len(body["messages"][0]["content"]) >= 10 * bench.KB  # the system prompt
    history = body["messages"][2:]
    assert len(history) >= 20 and [m["role"] for m in history[:4]] == ["assistant", "tool"] * 2
    assert all(m["tool_call_id"] == a["tool_calls"][0]["id"] for a, m in zip(history[::2], history[1::2]))


@pytest.mark.parametrize("size", list(bench.SIZES.values()))
def test_only_the_policy_body_offers_a_shell_tool(size: int) -> None:
    def names(shell: bool) -> set[str]:
        return {t["function"]["name"] for t in bench.agent_body(size, "bench", shell=shell)["tools"]}

    assert not names(False) & set(SHELL_TOOLS)
    assert "Bash" in names(True)


@pytest.mark.parametrize("size", list(bench.SIZES.values()))
@pytest.mark.parametrize("shell", [False, True])
def test_anthropic_body_is_the_same_conversation(size: int, shell: bool) -> None:
    chat = bench.agent_body(size, "anthropic:bench", stream=True, shell=shell)
    anthropic = bench.anthropic_body(chat)
    ours = translators.get("openai-chat").parse_request(chat, model="bench", stream=True)
    theirs = translators.get("anthropic").parse_request(anthropic, model="bench", stream=True)
    conversation = {"model", "system", "messages", "tools", "max_tokens", "stream"}
    assert ours.model_dump(include=conversation) == theirs.model_dump(include=conversation)


# --- the fake provider -----------------------------------------------------------------------------
@pytest.mark.parametrize(("protocol", "path"), PROTOCOLS)
def test_fake_stream_is_real_protocol_with_the_requested_events_and_usage(protocol: str, path: bytes) -> None:
    stream = fakeprovider.Answers().get(path, "bench-n25", stream=True)
    assert isinstance(stream, fakeprovider.Stream)
    body = dechunk(stream.whole.partition(b"\r\n\r\n")[2])
    decoder = translators.get(protocol).StreamDecoder()
    events = decoder.feed(body) + decoder.close()
    assert sum(isinstance(e, TextDelta) for e in events) == 25
    assert any(isinstance(e, UsageUpdate) and e.usage.output_tokens == 25 for e in events)


@pytest.mark.parametrize(("protocol", "path"), PROTOCOLS)
def test_fake_stream_ends_with_the_named_tool_call(protocol: str, path: bytes) -> None:
    stream = fakeprovider.Answers().get(path, "bench-n30-callBash", stream=True)
    assert isinstance(stream, fakeprovider.Stream)
    decoder = translators.get(protocol).StreamDecoder()
    events = decoder.feed(dechunk(stream.whole.partition(b"\r\n\r\n")[2])) + decoder.close()
    pieces = [e.arguments for e in events if isinstance(e, ToolCallDelta)]
    assert len(pieces) + sum(isinstance(e, TextDelta) for e in events) == 30
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["Bash"]
    assert json.loads("".join(pieces)) == fakeprovider.CALL_ARGUMENTS["Bash"]


@pytest.mark.parametrize(("protocol", "path"), PROTOCOLS)
@pytest.mark.parametrize("tool", ["", "read_file"])
def test_fake_whole_answer_parses_as_the_provider_response(protocol: str, path: bytes, tool: str) -> None:
    answer = fakeprovider.Answers().get(path, f"bench-call{tool}" if tool else "bench", stream=False)
    assert isinstance(answer, bytes)
    parsed = translators.get(protocol).parse_response(json.loads(answer.partition(b"\r\n\r\n")[2]))
    assert parsed.usage is not None and parsed.usage.output_tokens == 6
    calls = [part.name for part in parsed.content if isinstance(part, ToolCall)]
    assert calls == ([tool] if tool else [])


def test_the_fakes_shell_call_is_harmless_so_the_reactor_judges_and_lets_it_pass() -> None:
    call = Call("Bash", json.dumps(fakeprovider.CALL_ARGUMENTS["Bash"]))
    assert DangerousCommands().judge(call, Context()).action == "allow"


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_fake_reads_a_large_body_in_pieces_and_finds_the_model_at_its_end() -> None:
    body = bench.agent_body(2 * bench.MB, "bench")
    model = body.pop("model")
    request = bench.http_request(0, {**body, "model": model})  # the model after 2 MB of messages
    connection = fakeprovider.Connection(fakeprovider.Fake(0.0))
    connection.transport = Transport()  # type: ignore[assignment]
    for at in range(0, len(request), 65536):
        connection.data_received(request[at : at + 65536])
    assert connection.fake.last == {"path": CHAT.decode(), "bytes": 2 * bench.MB}
    assert len(connection.transport.written) == 1  # type: ignore[attr-defined]
    assert not connection.buffer


# --- the load generator ----------------------------------------------------------------------------
@pytest.mark.parametrize("piece", [1, 7, 4096])
async def test_load_generator_reads_a_chunked_stream_cut_anywhere(piece: int) -> None:
    stream = fakeprovider.Answers().get(CHAT, "bench-n40-callread_file", stream=True)
    assert isinstance(stream, fakeprovider.Stream)
    client = bench.Client()
    client.transport = Transport()  # type: ignore[assignment]
    done = client.send(b"request")
    for at in range(0, len(stream.whole), piece):
        assert not done.done()
        client.data_received(stream.whole[at : at + piece])
    reply = await asyncio.wait_for(done, 1)
    assert reply.status == 200 and reply.chunked
    # the role chunk, 32 text deltas, the call's start and 8 pieces, finish, usage, [DONE]
    assert reply.events == 1 + 32 + 1 + 8 + 3
    assert reply.ok(bench.least_events(40)) and bench.least_events(40) == 32
    assert not reply.ok(reply.events + 1)


async def test_load_generator_reads_a_content_length_body_then_the_next_reply() -> None:
    answer = fakeprovider.Answers().get(CHAT, "bench", stream=False)
    assert isinstance(answer, bytes)
    client = bench.Client()
    client.transport = Transport()  # type: ignore[assignment]
    for _ in range(2):
        done = client.send(b"request")
        client.data_received(answer[:10])
        client.data_received(answer[10:])
        reply = await asyncio.wait_for(done, 1)
        assert reply.status == 200 and reply.ok(0)
        assert reply.tail == answer.partition(b"\r\n\r\n")[2][-bench.TAIL :]


def test_a_stream_without_its_end_marker_is_a_failure() -> None:
    reply = bench.Reply(0.0, status=200, events=50, tail=b'data: {"choices":[]}\n\n\r\n0\r\n\r\n')
    assert bench.failure(reply, 40) == "no end marker"
    assert bench.failure(bench.Reply(0.0, status=502, tail=b"bad gateway"), 40).startswith("status 502")
    assert bench.failure(None, 40) == "no answer in time"
