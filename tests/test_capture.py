"""Wire capture (``--set llm_capture=DIR``) and the capture tool ``scripts/captures.py``.

Unit tests pin the file format (an append-only CBOR sequence that survives a crash mid-record,
rotation, never reopening a file), redaction and the stream wrapper. The end-to-end tests drive a
real mitmdump whose clients use the configured provider keys as their own credentials, then read
what it wrote, with the library and with the tool.
"""

from __future__ import annotations

import io
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow, tutils
from support.fakes import ANTHROPIC_KEY, GEMINI_KEY, OPENAI_KEY, Fakes
from support.proxy import Proxy

import translators
from addons import capture_format, exchange
from addons.capture import Capture, redact_headers, redact_url, scrub
from addons.capture_format import Reader, Record, Writer, capture_files, read_file
from addons.settings import Settings
from scripts import captures
from translators.assemble import response_from_events

KEYS = (OPENAI_KEY, ANTHROPIC_KEY, GEMINI_KEY)
MB = 1024 * 1024


def unchanged(record: Record) -> Record:
    return record


def chunk_record(i: int, size: int = 40) -> Record:
    return {"v": 1, "kind": "chunk", "flow": "f1", "t": 1000.0 + i, "data": bytes([65 + i % 26]) * size}


def record_offsets(data: bytes) -> list[int]:
    """Where each CBOR item starts, found with cbor2 alone (independent of the Reader)."""
    fp = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(fp)
    offsets = []
    while fp.tell() < len(data):
        offsets.append(fp.tell())
        decoder.decode()
    return offsets


def read_bytes(data: bytes) -> tuple[list[Record], int | None]:
    reader = Reader(io.BytesIO(data))
    return list(reader), reader.damage_offset


def assert_every_cut_in_the_last_record_keeps_the_earlier_ones(data: bytes) -> None:
    whole, damage = read_bytes(data)
    assert damage is None and len(whole) >= 2
    last = record_offsets(data)[-1]
    for cut in range(last + 1, len(data)):
        records, damage = read_bytes(data[:cut])
        assert (records, damage) == (whole[:-1], last), f"cut at byte {cut}"


# -- the file format -------------------------------------------------------------------------------


def test_records_read_back_in_the_order_they_were_written(tmp_path: Path):
    writer = Writer(tmp_path, rotate_bytes=MB, redact=unchanged)
    written = [chunk_record(i) for i in range(5)]
    for record in written:
        writer.put(record)
    writer.close()
    [file] = capture_files(tmp_path)
    assert read_file(file) == (written, None)


def test_a_file_cut_at_any_byte_of_its_last_record_still_yields_every_earlier_record(tmp_path: Path):
    writer = Writer(tmp_path, rotate_bytes=MB, redact=unchanged)
    for i in range(4):
        writer.put(chunk_record(i, size=300))  # records of more than 256 bytes: multi-byte lengths
    writer.close()
    [file] = capture_files(tmp_path)
    assert_every_cut_in_the_last_record_keeps_the_earlier_ones(file.read_bytes())


def test_the_reader_stops_at_garbage_and_says_where_it_starts():
    good = cbor2.dumps(chunk_record(0)) + cbor2.dumps(chunk_record(1))
    data = good + b"\xff\xfe not cbor" + cbor2.dumps(chunk_record(2))
    assert read_bytes(data) == ([chunk_record(0), chunk_record(1)], len(good))


def test_a_cbor_item_that_is_not_a_capture_record_counts_as_damage():
    first = cbor2.dumps(chunk_record(0))
    assert read_bytes(first + cbor2.dumps([1, 2, 3])) == ([chunk_record(0)], len(first))


def test_a_new_file_begins_when_the_next_record_would_pass_the_rotation_size(tmp_path: Path):
    size = len(cbor2.dumps(chunk_record(0)))
    writer = Writer(tmp_path, rotate_bytes=3 * size, redact=unchanged)
    written = [chunk_record(i) for i in range(7)]
    for record in written:
        writer.put(record)
    writer.close()
    files = capture_files(tmp_path)
    assert [f.stat().st_size for f in files] == [3 * size, 3 * size, size]
    assert files == writer.files  # names sort in the order the files were written
    assert [r for f in files for r in read_file(f)[0]] == written


def test_a_record_larger_than_the_rotation_size_gets_a_file_of_its_own(tmp_path: Path):
    writer = Writer(tmp_path, rotate_bytes=100, redact=unchanged)
    for record in (chunk_record(0, 10), chunk_record(1, 500), chunk_record(2, 10)):
        writer.put(record)
    writer.close()
    assert [len(read_file(f)[0]) for f in capture_files(tmp_path)] == [1, 1, 1]


def test_an_existing_file_is_never_opened_for_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A restart under the same pid in the same second would compute the same names.
    monkeypatch.setattr(capture_format, "file_name", lambda now, pid, seq: f"llm-same-{seq:04d}.cbor")
    first = Writer(tmp_path, rotate_bytes=MB, redact=unchanged)
    first.put(chunk_record(0))
    first.close()
    before = first.files[0].read_bytes()
    second = Writer(tmp_path, rotate_bytes=MB, redact=unchanged)
    second.put(chunk_record(1))
    second.close()
    assert first.files[0].read_bytes() == before
    assert second.files[0] != first.files[0] and read_file(second.files[0]) == ([chunk_record(1)], None)


def test_with_a_taint_check_only_records_holding_a_secret_are_redacted(tmp_path: Path):
    """Encoded first, searched, redacted only when needed: the file holds the same records as
    redacting all of them would have written, lone surrogates made valid as redaction makes them."""
    secret = b"sk-secret-0001"
    redacted: list[Record] = []

    def redact(record: Record) -> Record:
        redacted.append(record)
        return scrub(record, lambda data: data.replace(secret, b"[redacted]"))

    writer = Writer(tmp_path, rotate_bytes=MB, redact=redact, tainted=lambda data: secret in data)
    clean = chunk_record(0)
    holding = {**chunk_record(1), "data": b"key " + secret}
    broken = {**chunk_record(2), "note": "half a pair \udcff"}
    after = chunk_record(3)  # the encoder still works after a record it could not encode
    for record in (clean, holding, broken, after):
        writer.put(record)
    writer.close()
    [file] = capture_files(tmp_path)
    records, damage = read_file(file)
    assert damage is None
    assert records == [
        clean,
        {**holding, "data": b"key [redacted]"},
        {**broken, "note": "half a pair \ufffd"},
        after,
    ]
    assert redacted == [holding, broken]


def test_putting_a_record_never_waits_for_the_writer(tmp_path: Path):
    release = threading.Event()

    def slow_redact(record: Record) -> Record:
        release.wait()
        return record

    writer = Writer(tmp_path, rotate_bytes=MB, redact=slow_redact)
    for i in range(100):
        writer.put(chunk_record(i))  # returns at once although nothing can be written yet
    assert capture_files(tmp_path) == []
    release.set()
    writer.close()
    assert len(read_file(capture_files(tmp_path)[0])[0]) == 100


def test_a_disk_error_is_logged_once_and_turns_capture_off(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    writer = Writer(tmp_path / "vanished", rotate_bytes=MB, redact=unchanged)
    for i in range(3):
        writer.put(chunk_record(i))
    writer.close()
    assert writer.failed
    errors = [r for r in caplog.records if "LLM capture stopped" in r.getMessage()]
    assert len(errors) == 1


# -- redaction -------------------------------------------------------------------------------------


def test_credential_headers_are_redacted_whatever_their_case():
    headers = [
        ("Authorization", "Bearer a"),
        ("X-Api-Key", "b"),
        ("x-goog-api-key", "c"),
        ("Proxy-Authorization", "Basic d"),
        ("anthropic-api-key", "e"),
        ("Cookie", "f=1"),
        ("content-type", "application/json"),
    ]
    redacted = redact_headers(headers)
    assert redacted.pop("content-type") == "application/json"
    assert set(redacted.values()) == {"[redacted]"}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://h/m:generateContent?key=AIza1", "https://h/m:generateContent?key=[redacted]"),
        ("https://h/p?alt=sse&key=AIza1&x=1", "https://h/p?alt=sse&key=[redacted]&x=1"),
        ("https://h/p?monkey=1&turkey=2", "https://h/p?monkey=1&turkey=2"),
    ],
)
def test_key_parameters_are_redacted_in_urls(url: str, expected: str):
    assert redact_url(url) == expected


def test_scrub_removes_a_secret_from_every_text_and_bytes_value():
    def redact(b: bytes) -> bytes:
        return b.replace(b"s3cret", b"[redacted]")

    value = {"a": [b"x s3cret", "s3cret y"], "b": {"c": "s3cret"}, "n": 1, "none": None}
    assert scrub(value, redact) == {
        "a": [b"x [redacted]", "[redacted] y"],
        "b": {"c": "[redacted]"},
        "n": 1,
        "none": None,
    }


def test_undecodable_header_bytes_become_replacement_characters_cbor_can_carry():
    assert scrub("a\udcffb", lambda b: b) == "a\ufffdb"


# -- the addon, in process -------------------------------------------------------------------------

CONFIG = (
    "backends:\n"
    f'  openai: {{type: openai, base_url: "http://127.0.0.1:9/v1", api_keys: ["{OPENAI_KEY}"]}}\n'
    "default_backend: openai\n"
)


@pytest.fixture
def addon(tmp_path: Path) -> Iterator[tuple[Capture, Path]]:
    settings = Settings()
    capture = Capture(settings)
    (tmp_path / "llm.yaml").write_text(CONFIG)
    with taddons.context(settings, capture) as tctx:
        tctx.configure(settings, llm_config=str(tmp_path / "llm.yaml"))
        tctx.configure(capture, llm_capture=str(tmp_path / "captures"))
        yield capture, tmp_path / "captures"
        capture.done()


def captured_records(directory: Path) -> list[Record]:
    return [r for f in capture_files(directory) for r in read_file(f)[0]]


def llm_flow() -> Any:
    flow = tflow.tflow()
    ex = exchange.Exchange(client_protocol="openai-chat", surface="proxy", body={}, stream=True, selector="m")
    exchange.put(flow, ex)
    return flow


def test_a_stream_is_recorded_as_the_provider_sent_it_and_reaches_the_client_unchanged(addon):
    capture, directory = addon
    flow = llm_flow()
    capture.request(flow)
    flow.response = tutils.tresp()
    flow.response.stream = lambda chunk: [chunk.upper()] if chunk else [b"END"]
    capture.responseheaders(flow)
    sent = [flow.response.stream(c) for c in (b"ab", f"key {OPENAI_KEY}".encode(), b"")]
    capture.response(flow)
    capture.done()
    assert sent == [[b"AB"], [f"KEY {OPENAI_KEY}".upper().encode()], [b"END"]]
    records = captured_records(directory)
    assert [r["kind"] for r in records] == ["request", "response", "chunk", "chunk", "end"]
    assert [r["data"] for r in records if r["kind"] == "chunk"] == [b"ab", b"key [redacted]"]
    assert records[0]["key"] is None  # no proxy keys configured (the key's name: tests/test_e2e_access.py)


def test_a_chunk_is_on_disk_while_its_stream_is_still_running(addon):
    capture, directory = addon
    flow = llm_flow()
    capture.request(flow)
    flow.response = tutils.tresp()
    flow.response.stream = lambda chunk: [chunk] if chunk else []
    capture.responseheaders(flow)
    flow.response.stream(b"first")
    deadline = time.monotonic() + 5
    while not any(r["kind"] == "chunk" for r in captured_records(directory)):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_plain_streamed_body_is_recorded_and_passed_on(addon):
    capture, directory = addon
    flow = llm_flow()
    capture.request(flow)
    flow.response = tutils.tresp()
    flow.response.stream = True
    capture.responseheaders(flow)
    assert [flow.response.stream(c) for c in (b"ab", b"")] == [[b"ab"], []]
    capture.done()
    assert [r["data"] for r in captured_records(directory) if r["kind"] == "chunk"] == [b"ab"]


def test_ordinary_intercepted_traffic_is_not_captured(addon):
    capture, directory = addon
    flow = tflow.tflow(resp=True)  # a regular-proxy flow without an exchange
    for hook in (capture.request, capture.responseheaders, capture.response):
        hook(flow)
    capture.done()
    assert captured_records(directory) == []


def test_an_end_is_recorded_once_even_when_an_error_follows_the_response(addon):
    capture, directory = addon
    flow = llm_flow()
    capture.request(flow)
    flow.response = tutils.tresp()
    capture.response(flow)
    capture.error(flow)
    capture.done()
    assert [r["kind"] for r in captured_records(directory)] == ["request", "end"]


def test_capture_is_off_by_default():
    capture = Capture(Settings())
    with taddons.context(capture):
        flow = llm_flow()
        capture.request(flow)
        assert capture.writer is None and "llm_capture" not in flow.metadata


def test_a_rotation_size_below_one_mib_is_refused():
    capture = Capture(Settings())
    with taddons.context(capture) as tctx:
        capture.running()
        with pytest.raises(exceptions.OptionsError, match="llm_capture_rotate_mb"):
            tctx.configure(capture, llm_capture_rotate_mb=0)


# -- end to end: a real mitmdump -------------------------------------------------------------------

MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
BACKEND_PROTOCOLS = {"openai": "openai-chat", "anthropic": "anthropic", "gemini": "gemini"}
USAGE = {"openai": (11, 7), "anthropic": (13, 5), "gemini": (17, 3)}  # (input, output) each fake reports
GEMINI_HOST = "https://generativelanguage.googleapis.com"


@dataclass(frozen=True)
class Case:
    client: str  # the protocol the client speaks
    backend: str
    stream: bool
    via_https_proxy: bool = False  # an unmodified client calling the provider's own host

    @property
    def id(self) -> str:
        where = "-intercepted" if self.via_https_proxy else ""
        return f"{self.client}-{'stream' if self.stream else 'whole'}-to-{self.backend}{where}"

    @property
    def prompt(self) -> str:
        return f"Say hello ({self.id}); my key is {OPENAI_KEY}"

    @property
    def selector(self) -> str:
        model = MODELS[self.backend]
        return model if self.via_https_proxy else f"{self.backend}:{model}"

    @property
    def passthrough(self) -> bool:
        return self.client == BACKEND_PROTOCOLS[self.backend]


CASES = [
    Case("openai-chat", "openai", stream=False),
    Case("openai-chat", "anthropic", stream=True),
    Case("anthropic", "gemini", stream=False),
    Case("anthropic", "anthropic", stream=True),
    Case("gemini", "openai", stream=False),
    Case("gemini", "openai", stream=True),
    Case("gemini", "gemini", stream=True, via_https_proxy=True),
]
STREAMED = [c for c in CASES if c.stream]
WHOLE = [c for c in CASES if not c.stream]


def openai_request(case: Case) -> tuple[str, dict[str, str], dict[str, Any]]:
    body: dict[str, Any] = {"model": case.selector, "messages": [{"role": "user", "content": case.prompt}]}
    if case.stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return "/v1/chat/completions", {"authorization": f"Bearer {OPENAI_KEY}"}, body


def anthropic_request(case: Case) -> tuple[str, dict[str, str], dict[str, Any]]:
    body: dict[str, Any] = {
        "model": case.selector,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": case.prompt}],
        "stream": case.stream,
    }
    return "/v1/messages", {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"}, body


def gemini_request(case: Case) -> tuple[str, dict[str, str], dict[str, Any]]:
    method = "streamGenerateContent?alt=sse&" if case.stream else "generateContent?"
    body = {"contents": [{"role": "user", "parts": [{"text": case.prompt}]}]}
    return f"/v1beta/models/{case.selector}:{method}key={GEMINI_KEY}", {}, body


# Each client uses a configured provider key as its own credential: the capture must not keep it.
REQUESTS: dict[str, Callable[[Case], tuple[str, dict[str, str], dict[str, Any]]]] = {
    "openai-chat": openai_request,
    "anthropic": anthropic_request,
    "gemini": gemini_request,
}


@dataclass
class Run:
    proxy: Proxy
    directory: Path
    sent: dict[Case, dict[str, Any]]  # the JSON body each case sent
    answers: dict[Case, bytes]  # what each client received
    flows: dict[Case, captures.Flow]
    others: dict[str, captures.Flow]  # OTHER_REQUESTS' flows


def client_for(case: Case, proxy: Proxy) -> httpx.Client:
    if case.via_https_proxy:
        trust = ssl.create_default_context(cafile=str(proxy.ca_cert))
        return httpx.Client(
            base_url=GEMINI_HOST, proxy=proxy.proxy_url, verify=trust, trust_env=False, timeout=20
        )
    return httpx.Client(base_url=proxy.front_url, trust_env=False, timeout=20)


def wait_for_flows(directory: Path, done: Callable[[captures.Capture], bool]) -> captures.Capture:
    """Records are written on the proxy's writer thread: wait until they are on disk."""
    deadline = time.monotonic() + 10
    while not done(capture := captures.load(directory)):
        assert time.monotonic() < deadline, f"captured so far: {list(capture.flows)}"
        time.sleep(0.05)
    return capture


# Flows besides the cases, sent to the front door: label -> (path, body, expected status).
HI = [{"role": "user", "content": "Hi"}]
OTHER_REQUESTS: dict[str, tuple[str, dict[str, Any], int]] = {
    "unknown path": ("/v1/nothing-here", {}, 404),
    "unroutable": ("/v1/chat/completions", {"model": "openrouter:some-model", "messages": HI}, 404),
    "broken stream": (
        "/v1/chat/completions",
        {"model": "anthropic:drop-midstream", "stream": True, "messages": HI},
        200,
    ),
}


def other_of(flow: captures.Flow) -> str:
    selectors = {body.get("model"): label for label, (_, body, _) in OTHER_REQUESTS.items()}
    return selectors[flow.request["selector"]]


def case_of(flow: captures.Flow) -> Case | None:
    body = (flow.request or {}).get("client", {}).get("body") or b""
    return next((c for c in CASES if f"({c.id})".encode() in body), None)


@pytest.fixture(scope="module")
def run(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp("captures")
    options = ["--set", f"llm_capture={directory}"]
    proxy = Proxy(tmp_path_factory.mktemp("proxy"), fakes.llm_yaml(), options).start()
    sent, answers = {}, {}
    for case in CASES:
        path, headers, body = REQUESTS[case.client](case)
        with client_for(case, proxy) as client:
            answer = client.post(path, json=body, headers=headers)
        assert answer.status_code == 200, (case, answer.text)
        sent[case], answers[case] = body, answer.content
    with httpx.Client(base_url=proxy.front_url, trust_env=False, timeout=20) as client:
        for path, body, status in OTHER_REQUESTS.values():
            assert client.post(path, json=body).status_code == status
    expected = len(CASES) + len(OTHER_REQUESTS)
    capture = wait_for_flows(
        directory, lambda c: len(c.flows) == expected and all(f.end for f in c.flows.values())
    )
    flows = {case: flow for flow in capture.flows.values() if (case := case_of(flow))}
    others = {other_of(flow): flow for flow in capture.flows.values() if case_of(flow) is None}
    yield Run(proxy, directory, sent, answers, flows, others)
    proxy.stop()


def fake_base_url(fakes: Fakes, backend: str) -> str:
    return getattr(fakes, backend).base_url


def redacted(text: str) -> str:
    return text.replace(OPENAI_KEY, "[redacted]")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_request_is_recorded_as_the_client_sent_it_and_as_it_went_upstream(
    run: Run, fakes: Fakes, case: Case
):
    request = run.flows[case].request
    assert request["protocol"] == case.client
    assert request["surface"] == ("proxy" if case.via_https_proxy else "front_door")
    assert request["target"] == {
        "instance": case.backend,
        "model": MODELS[case.backend],
        "protocol": BACKEND_PROTOCOLS[case.backend],
    }
    assert request["passthrough"] == case.passthrough
    client = request["client"]
    assert json.loads(client["body"]) == json.loads(redacted(json.dumps(run.sent[case])))
    upstream = request["upstream"]
    assert upstream["method"] == "POST"
    assert upstream["url"].startswith(fake_base_url(fakes, case.backend))
    upstream_body = json.loads(upstream["body"])
    assert ("contents" in upstream_body) == (case.backend == "gemini")
    assert redacted(case.prompt) in upstream["body"].decode()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_outcome_is_recorded_with_status_usage_attempts_and_timings(run: Run, case: Case):
    flow = run.flows[case]
    assert flow.response["status"] == 200
    end = flow.end
    assert end["status"] == 200 and end["error"] is None and end["flow_error"] is None
    usage = USAGE[case.backend]
    assert (end["usage"]["input_tokens"], end["usage"]["output_tokens"]) == usage
    assert all(len(attempt.pop("leg")) == 16 for attempt in end["attempts"])  # the proxy's leg id
    assert end["attempts"] == [
        {
            "instance": case.backend,
            "model": MODELS[case.backend],
            "url": flow.request["upstream"]["url"],
            "status": 200,
            "error": None,
        }
    ]
    timings = end["timings"]
    assert timings["started"] <= timings["first_byte"] <= timings["ended"]
    if case.stream:  # a whole answer's "first token" is only known once it was read
        assert timings["first_byte"] <= timings["first_token"] <= timings["ended"]


@pytest.mark.parametrize("case", STREAMED, ids=lambda c: c.id)
def test_a_streamed_answer_is_recorded_chunk_by_chunk_as_it_arrived(run: Run, case: Case):
    flow = run.flows[case]
    times = [chunk["t"] for chunk in flow.chunks]
    assert times and times == sorted(times)
    timings = flow.end["timings"]
    assert timings["first_byte"] <= times[0] and times[-1] <= timings["ended"]
    decoder = translators.get(BACKEND_PROTOCOLS[case.backend]).StreamDecoder()
    events = [e for chunk in flow.chunks for e in decoder.feed(chunk["data"])] + decoder.close()
    assert response_from_events(events).content[0].text == f"Hello from {case.backend}!"
    assert flow.end["upstream_body"] is None and flow.end["client_body"] is None


@pytest.mark.parametrize("case", WHOLE, ids=lambda c: c.id)
def test_a_whole_answer_is_recorded_as_the_provider_sent_it_and_as_the_client_got_it(run: Run, case: Case):
    end = run.flows[case].end
    answer = translators.get(BACKEND_PROTOCOLS[case.backend]).parse_response(json.loads(end["upstream_body"]))
    assert answer.content[0].text == f"Hello from {case.backend}!"
    assert end["upstream_status"] == 200
    assert end["client_body"] == run.answers[case]
    assert run.flows[case].chunks == []


def test_flows_the_proxy_answered_itself_are_recorded_too(run: Run):
    unknown_path = run.others["unknown path"]
    assert unknown_path.request["protocol"] is None and unknown_path.request["surface"] == "front_door"
    assert unknown_path.request["client"]["url"].endswith("/v1/nothing-here")
    assert unknown_path.end["status"] == 404
    unroutable = run.others["unroutable"]
    assert unroutable.request["target"] is None and unroutable.request["upstream"] is None
    assert unroutable.end["status"] == 404 and unroutable.end["error"]["code"] == "not_found"


def test_a_stream_that_broke_off_keeps_its_chunks_and_its_error(run: Run):
    broken = run.others["broken stream"]
    decoder = translators.get("anthropic").StreamDecoder()
    events = [e for chunk in broken.chunks for e in decoder.feed(chunk["data"])]
    assert response_from_events(events).content[0].text == "Hel"
    assert "broke off" in broken.end["error"]["message"]


def test_no_configured_key_appears_in_any_capture_byte(run: Run):
    data = b"".join(f.read_bytes() for f in capture_files(run.directory))
    for key in KEYS:
        assert key.encode() not in data
    openai_flow = run.flows[CASES[0]]
    assert openai_flow.request["client"]["headers"]["authorization"] == "[redacted]"
    gemini_flow = run.flows[CASES[-1]]
    assert "key=[redacted]" in gemini_flow.request["client"]["url"]


def test_a_real_capture_cut_anywhere_in_its_last_record_keeps_every_earlier_record(run: Run):
    [file] = capture_files(run.directory)
    assert_every_cut_in_the_last_record_keeps_the_earlier_ones(file.read_bytes())


# -- the capture tool ------------------------------------------------------------------------------


def test_list_shows_each_flow_with_route_status_tokens_and_duration(
    run: Run, capsys: pytest.CaptureFixture[str]
):
    assert captures.main(["list", str(run.directory)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "id"]
    assert len(lines) == 1 + len(CASES) + len(OTHER_REQUESTS)
    for case, flow in run.flows.items():
        [line] = [line for line in lines if flow.id[:8] in line]
        route = f"{case.client} → {case.backend}:{MODELS[case.backend]}"
        assert route in line and " 200 " in line and "{}/{}".format(*USAGE[case.backend]) in line
        assert line.endswith("s")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_show_prints_the_conversation_and_the_reassembled_answer(
    run: Run, case: Case, capsys: pytest.CaptureFixture[str]
):
    flow = run.flows[case]
    assert captures.main(["show", str(run.directory), flow.id[:8]]) == 0
    out = capsys.readouterr().out
    assert f"user: {redacted(case.prompt)}" in out
    assert f"assistant: Hello from {case.backend}!" in out
    assert ("reassembled from" in out) == case.stream


def test_export_writes_one_json_object_per_flow(run: Run, tmp_path: Path):
    out = tmp_path / "flows.jsonl"
    assert captures.main(["export", str(run.directory), "-o", str(out)]) == 0
    exported = {item["id"]: item for item in map(json.loads, out.read_text().splitlines())}
    assert set(exported) == {f.id for f in [*run.flows.values(), *run.others.values()]}
    streamed = exported[run.flows[STREAMED[0]].id]
    provider_stream = "".join(chunk["data"] for chunk in streamed["chunks"])
    assert "Hel" in provider_stream
    assert streamed["end"]["usage"]["output_tokens"] == USAGE[STREAMED[0].backend][1]
    whole = exported[run.flows[WHOLE[0]].id]
    assert json.loads(whole["end"]["client_body"]) == json.loads(run.answers[WHOLE[0]])


def test_export_keeps_undecodable_bytes_as_base64():
    assert captures.jsonable({"data": b"\xff\x00"}) == {"data": {"base64": "/wA="}}


def test_the_tool_reads_a_damaged_capture_up_to_the_damage(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    [file] = capture_files(run.directory)
    data = file.read_bytes()
    offsets = record_offsets(data)
    damaged = tmp_path / file.name
    damaged.write_bytes(data[: offsets[-1] + 5])
    assert captures.main(["list", str(damaged)]) == 0
    printed = capsys.readouterr()
    assert printed.err.strip() == f"{damaged}: damaged at byte {offsets[-1]}"
    assert len(printed.out.splitlines()) == 1 + len(run.flows) + len(run.others)
    assert "(unfinished)" in printed.out  # the flow whose end record was cut off


def test_the_tool_fails_on_a_file_with_nothing_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    garbage = tmp_path / "llm-garbage.cbor"
    garbage.write_bytes(b"\xff\xff\xff")
    assert captures.main(["list", str(garbage)]) == 1
    assert "damaged at byte 0" in capsys.readouterr().err


def test_resend_replays_a_captured_request_through_the_running_proxy_without_credentials(
    run: Run, capsys: pytest.CaptureFixture[str]
):
    case = WHOLE[-1]  # a Gemini client that sent its key as ?key=
    before = {f.id for f in [*run.flows.values(), *run.others.values()]}
    flow_id = run.flows[case].id
    assert captures.main(["resend", str(run.directory), flow_id[:8], "--proxy", run.proxy.front_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("200 OK") and f"Hello from {case.backend}!" in out
    capture = wait_for_flows(
        run.directory, lambda c: any(f.end for key, f in c.flows.items() if key not in before)
    )
    [replayed] = [f for key, f in capture.flows.items() if key not in before]
    client = replayed.request["client"]
    assert "key=" not in client["url"]
    assert json.loads(client["body"]) == json.loads(run.flows[case].request["client"]["body"])
