"""Read the LLM suite's wire captures (``mitmdump … --set llm_capture=DIR``).

    python scripts/captures.py list DIR_OR_FILE
    python scripts/captures.py show DIR_OR_FILE FLOW_ID
    python scripts/captures.py export DIR_OR_FILE [-o out.jsonl]
    python scripts/captures.py resend DIR_OR_FILE FLOW_ID [--proxy http://127.0.0.1:8000]

A FLOW_ID may be abbreviated to any unique prefix (``list`` shows the first 8 characters). A file
damaged by a crash is read up to the damage; "<file>: damaged at byte N" goes to stderr.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import http.client
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

# Runnable as a plain script from a checkout: the suite's packages live beside scripts/.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import translators  # noqa: E402
from addons.capture_format import (  # noqa: E402
    CREDENTIAL_HEADERS,
    REDACTED,
    Record,
    capture_files,
    read_file,
)
from translators.assemble import response_from_events  # noqa: E402
from translators.canonical import ChatResponse, StreamError  # noqa: E402
from translators.errors import ProxyError  # noqa: E402

# Client headers a re-sent request must not carry: credentials (the proxy has its own) and framing.
RESEND_DROPPED = CREDENTIAL_HEADERS | {"host", "content-length", "transfer-encoding", "connection"}
CONNECTIONS = {"http": http.client.HTTPConnection, "https": http.client.HTTPSConnection}
UNREADABLE = (ValueError, KeyError, ProxyError)  # bad JSON, unknown protocol, body of the wrong shape


@dataclass
class Flow:
    """One flow's records, gathered across files (rotation may split a flow)."""

    id: str
    request: Record | None = None
    response: Record | None = None
    chunks: list[Record] = field(default_factory=list)
    end: Record | None = None

    def add(self, record: Record) -> None:
        if record["kind"] == "chunk":
            self.chunks.append(record)
        else:
            setattr(self, record["kind"], record)

    @property
    def started(self) -> float | None:
        return self.request["t"] if self.request else None

    @property
    def backend_protocol(self) -> str | None:
        target = self.request.get("target") if self.request else None
        return target["protocol"] if target else self.value("request", "protocol")

    def value(self, kind: str, key: str) -> Any:
        record = getattr(self, kind)
        return record.get(key) if record else None


@dataclass
class Capture:
    flows: dict[str, Flow]
    damage: list[tuple[Path, int]]


def load(path: Path) -> Capture:
    flows: dict[str, Flow] = {}
    damage = []
    for file in capture_files(path):
        records, offset = read_file(file)
        for record in records:
            flow_id = record["flow"]
            flows.setdefault(flow_id, Flow(flow_id)).add(record)
        if offset is not None:
            damage.append((file, offset))
    return Capture(flows, damage)


def find(capture: Capture, flow_id: str) -> Flow:
    matches = [f for key, f in capture.flows.items() if key.startswith(flow_id)]
    if len(matches) != 1:
        problem = "no flow" if not matches else f"{len(matches)} flows"
        raise SystemExit(f"{problem} with an id starting with {flow_id!r}")
    return matches[0]


# -- list ----------------------------------------------------------------------------------------


def _time(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _route(flow: Flow) -> str:
    request = flow.request or {}
    client = request.get("protocol") or request.get("surface") or "?"
    target = request.get("target")
    return f"{client} → {target['instance']}:{target['model']}" if target else f"{client} → (local)"


def _tokens(flow: Flow) -> str:
    usage = flow.value("end", "usage") or {}
    if not usage:
        return "-"
    return f"{usage.get('input_tokens', '?')}/{usage.get('output_tokens', '?')}"


def _duration(flow: Flow) -> str:
    timings = flow.value("end", "timings")
    if not timings or timings.get("started") is None:
        return "-"
    return f"{timings['ended'] - timings['started']:.3f}s"


def _status(flow: Flow) -> str:
    status = flow.value("end", "status") or flow.value("response", "status")
    if flow.end is None:
        return f"{status or '-'} (unfinished)"
    return str(status or flow.end.get("flow_error") or "-")


COLUMNS: dict[str, Callable[[Flow], str]] = {
    "time (UTC)": lambda f: _time(f.started),
    "id": lambda f: f.id[:8],
    "route": _route,
    "status": _status,
    "tokens in/out": _tokens,
    "duration": _duration,
}


def list_flows(capture: Capture, out: TextIO) -> None:
    rows = [list(COLUMNS)] + [[column(f) for column in COLUMNS.values()] for f in capture.flows.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


# -- show ----------------------------------------------------------------------------------------


def _pretty(data: bytes | None) -> str:
    if not data:
        return "(empty)"
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return data.decode("utf-8", "replace")


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")


PART_VIEWS: dict[str, Callable[[Any], str]] = {
    "text": lambda p: p.text,
    "image": lambda p: f"[image {p.media_type or p.url or ''}]",
    "tool_call": lambda p: f"[tool call {p.name} {p.arguments} id={p.id}]",
    "tool_result": lambda p: (
        f"[tool result {p.tool_call_id}{' (error)' if p.is_error else ''}: "
        + " ".join(PART_VIEWS[c.type](c) for c in p.content)
        + "]"
    ),
    "reasoning": lambda p: f"[reasoning{' (redacted)' if p.redacted else ''}] {p.text}",
}


def _message_lines(role: str, parts: list[Any]) -> Iterator[str]:
    for part in parts:
        yield f"{role}: {_indent(PART_VIEWS[part.type](part))}"


def _conversation(flow: Flow) -> Iterator[str]:
    request = flow.request or {}
    body = (request.get("client") or {}).get("body")
    try:
        parsed = translators.get(request["protocol"]).parse_request(
            json.loads(body or b""), model=request.get("selector"), stream=request.get("stream")
        )
    except UNREADABLE:
        yield _pretty(body)
        return
    yield from _message_lines("system", parsed.system)
    for message in parsed.messages:
        yield from _message_lines(message.role, message.content)
    if parsed.tools:
        yield "tools: " + ", ".join(tool.name for tool in parsed.tools)


def _answer_lines(answer: ChatResponse) -> Iterator[str]:
    yield from _message_lines("assistant", answer.content)
    usage = answer.usage.model_dump(exclude_none=True)
    yield f"stop: {answer.stop_reason or '-'}   usage: {usage or '-'}"


def _streamed_answer(flow: Flow) -> Iterator[str]:
    data = [chunk["data"] for chunk in flow.chunks]
    yield f"── answer (reassembled from {len(data)} provider chunks) ──"
    try:
        decoder = translators.get(flow.backend_protocol or "").StreamDecoder()
        events = [event for chunk in data for event in decoder.feed(chunk)] + decoder.close()
    except UNREADABLE:
        events = []
    answer = response_from_events(events)
    if answer.content:
        yield from _answer_lines(answer)
    else:
        yield _pretty(b"".join(data))  # a stream of another framing (Gemini's JSON array)
    for event in events:
        if isinstance(event, StreamError):
            yield f"stream error: {event.error.get('code')}: {event.error.get('message')}"


def _whole_answer(flow: Flow) -> Iterator[str]:
    end = flow.end or {}
    body = end.get("upstream_body")
    yield "── answer ──"
    if body and (end.get("upstream_status") or 0) < 400:
        try:
            answer = translators.get(flow.backend_protocol or "").parse_response(json.loads(body))
        except UNREADABLE:
            pass
        else:
            yield from _answer_lines(answer)
            return
    if body is not None:
        yield f"upstream answered ({end.get('upstream_status')}): {_pretty(body)}"
    yield f"client got ({end.get('status')}): {_pretty(end.get('client_body'))}"


def _summary(flow: Flow) -> Iterator[str]:
    request = flow.request or {}
    yield f"flow {flow.id}  {_time(flow.started)} UTC  {_route(flow)}"
    for name in ("client", "upstream"):
        if message := request.get(name):
            yield f"{name}: {message['method']} {message['url']}"
    if request.get("passthrough"):
        yield "passthrough: the provider speaks the client's protocol"
    end = flow.end or {}
    yield f"status: {_status(flow)}   tokens in/out: {_tokens(flow)}   duration: {_duration(flow)}"
    for attempt in end.get("attempts") or []:
        outcome = attempt.get("status") or attempt.get("error")
        yield f"attempt: {attempt['instance']}:{attempt['model']} → {outcome}"
    if error := end.get("error"):
        yield f"error: {error.get('code')}: {error.get('message')}"


def show(flow: Flow, out: TextIO) -> None:
    lines = [*_summary(flow), "── request ──", *_conversation(flow)]
    lines += _streamed_answer(flow) if flow.chunks else _whole_answer(flow)
    print("\n".join(lines), file=out)


# -- export --------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Bytes as UTF-8 text where they decode, else ``{"base64": …}``."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def _fields(record: Record | None) -> Record | None:
    return {k: v for k, v in record.items() if k not in ("v", "kind", "flow")} if record else None


def export(capture: Capture, out: TextIO) -> None:
    for flow in capture.flows.values():
        item = {
            "id": flow.id,
            "request": _fields(flow.request),
            "response": _fields(flow.response),
            "chunks": [{"t": c["t"], "data": c["data"]} for c in flow.chunks],
            "end": _fields(flow.end),
        }
        print(json.dumps(jsonable(item), ensure_ascii=False, separators=(",", ":")), file=out)


# -- resend --------------------------------------------------------------------------------------


def resend(flow: Flow, proxy: str, out: TextIO) -> int:
    """Send the captured client request to a running proxy; print the status line and the answer
    as it arrives. Exit status 0 when the proxy answered below 400."""
    if flow.request is None:
        raise SystemExit(f"flow {flow.id}: its request record is missing")
    client = flow.request["client"]
    url = urlsplit(client["url"])
    query = urlencode([(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if v != REDACTED])
    headers = {k: v for k, v in client["headers"].items() if k.lower() not in RESEND_DROPPED}
    path = url.path + (f"?{query}" if query else "")
    target = urlsplit(proxy)
    connection = CONNECTIONS[target.scheme](target.netloc, timeout=300)
    try:
        connection.request(client["method"], path, client["body"], headers)
        response = connection.getresponse()
        print(f"{response.status} {response.reason}", file=out)
        text = codecs.getincrementaldecoder("utf-8")("replace")  # chunks may split characters
        while chunk := response.read1(65536):
            out.write(text.decode(chunk))
            out.flush()
    finally:
        connection.close()
    print(file=out)
    return 0 if response.status < 400 else 1


# -- command line --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captures.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one line per flow").add_argument("path", type=Path)
    for name, help_text in (("show", "one flow as readable text"), ("resend", "send a flow's request again")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("path", type=Path)
        sub.add_argument("flow_id")
    resend_parser = commands.choices["resend"]
    resend_parser.add_argument("--proxy", default="http://127.0.0.1:8000", help="the proxy's front door URL")
    export_parser = commands.add_parser("export", help="one JSON object per flow (JSON Lines)")
    export_parser.add_argument("path", type=Path)
    export_parser.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    return parser


def _run(args: argparse.Namespace, capture: Capture) -> int:
    out = sys.stdout
    match args.command:
        case "list":
            list_flows(capture, out)
        case "show":
            show(find(capture, args.flow_id), out)
        case "export" if args.output:
            with args.output.open("w", encoding="utf-8") as file:
                export(capture, file)
        case "export":
            export(capture, out)
        case "resend":
            return resend(find(capture, args.flow_id), args.proxy, out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.path.exists():
        raise SystemExit(f"{args.path}: no such file or directory")
    capture = load(args.path)
    for file, offset in capture.damage:
        print(f"{file}: damaged at byte {offset}", file=sys.stderr)
    if capture.damage and not capture.flows:
        return 1
    return _run(args, capture)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # output piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
