"""FakeGemini: generateContent, streamGenerateContent and countTokens (docs/wire.md §4)."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from typing import Any

from aiohttp import web

from .common import (
    BODY,
    STREAM_FAILED,
    Answer,
    FakeProvider,
    Invalid,
    Json,
    Script,
    Stream,
    compact,
    expect_dict,
    expect_list,
    json_response,
    require,
    script_pieces,
    sse,
    text_pieces,
    words,
)

GEMINI_VERSIONS = ("v1beta", "v1")
GEMINI_USAGE_START = {"promptTokenCount": 17, "totalTokenCount": 17}
GEMINI_COUNT_TOKENS = 19
GEMINI_USAGE = {"promptTokenCount": 17, "candidatesTokenCount": 3, "totalTokenCount": 20}
GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
GEMINI_FIELDS = words(
    "contents systemInstruction tools toolConfig generationConfig safetySettings cachedContent model"
)
GEMINI_CONFIG_FIELDS = words(
    "temperature topP topK candidateCount maxOutputTokens stopSequences presencePenalty frequencyPenalty seed"
    " responseMimeType responseSchema responseJsonSchema responseModalities responseLogprobs logprobs"
    " mediaResolution speechConfig thinkingConfig imageConfig enableEnhancedCivicAnswers"
)
GEMINI_DATA = words(
    "text inlineData fileData functionCall functionResponse executableCode codeExecutionResult"
)
GEMINI_PART_META = words("thought thoughtSignature videoMetadata mediaResolution partMetadata")
GEMINI_DECLARATION_FIELDS = words(
    "name description parameters parametersJsonSchema response responseJsonSchema behavior"
)
# Function schemas: `parameters` takes the OpenAPI subset, `parametersJsonSchema` the documented
# JSON Schema subset.
GEMINI_OPENAPI_KEYS = words(
    "type format title description nullable enum maxItems minItems properties required minProperties"
    " maxProperties minLength maxLength pattern example anyOf propertyOrdering items minimum maximum"
)
GEMINI_JSON_SCHEMA_KEYS = words(
    "$id $defs $ref $anchor type format title description enum items prefixItems minItems maxItems minimum"
    " maximum anyOf oneOf properties additionalProperties required propertyOrdering"
)
GEMINI_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
GEMINI_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,127}$")
# Gemini 3 models attach a thought signature to their first function call and demand it back.
GEMINI_THINKING_PREFIX = "gemini-3"
GEMINI_SIGNATURE = b"fake-gemini-thought-signature"
GEMINI_SIGNATURE_B64 = base64.b64encode(GEMINI_SIGNATURE).decode()
GEMINI_SKIP_SIGNATURES = frozenset(
    {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}
)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def get(obj: Json, camel: str, default: Any = None) -> Any:
    """Google's parser takes camelCase and the snake_case proto name alike (the SDK sends both)."""
    return obj.get(camel, obj.get(snake(camel), default))


def camel_keys(obj: Json) -> set[str]:
    return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key) for key in obj}


def check_unknown(obj: Json, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(camel_keys(obj) - allowed)
    require(
        not unknown,
        f'Invalid JSON payload received. Unknown name "{unknown[0] if unknown else ""}" at {where!r}',
    )


def check_gemini(body: Json, model: str) -> None:
    check_unknown(body, GEMINI_FIELDS, "request")
    config = get(body, "generationConfig") or {}
    check_unknown(config, GEMINI_CONFIG_FIELDS, "generation_config")
    require(
        not (get(config, "responseSchema") and get(config, "responseJsonSchema")),
        "generation_config: response_schema and response_json_schema are mutually exclusive",
    )
    require(
        not get(config, "responseJsonSchema") or get(config, "responseMimeType"),
        "generation_config.response_json_schema requires response_mime_type",
    )
    if (system := get(body, "systemInstruction")) is not None:
        check_gemini_parts("system_instruction", system)
    for i, tool in enumerate(body.get("tools") or []):
        for j, declaration in enumerate(get(tool, "functionDeclarations") or []):
            check_gemini_declaration(f"tools[{i}].function_declarations[{j}]", declaration)
    check_gemini_search(model, body.get("tools") or [])
    contents = expect_list(body.get("contents"), "contents is not specified")
    check_gemini_turns(contents)
    if model.startswith(GEMINI_THINKING_PREFIX):
        check_gemini_signatures(contents)


def check_gemini_search(model: str, tools: list[Any]) -> None:
    """Gemini 2.x models refuse Google Search beside function declarations."""
    searching = any(isinstance(t, dict) and get(t, "googleSearch") is not None for t in tools)
    declaring = any(isinstance(t, dict) and get(t, "functionDeclarations") for t in tools)
    require(
        not (searching and declaring) or model.startswith("gemini-3"),
        "Tool use with function calling is unsupported",
    )


def check_gemini_parts(where: str, content: Any) -> list[Json]:
    parts = expect_list(
        expect_dict(content, f"{where}: expected an object").get("parts"),
        f"{where}.parts: must contain at least one part",
    )
    for k, part in enumerate(parts):
        check_gemini_part(f"{where}.parts[{k}]", part)
    return parts


def check_gemini_part(where: str, part: Any) -> None:
    require(isinstance(part, dict), f"{where}: expected an object")
    check_unknown(part, GEMINI_DATA | GEMINI_PART_META, where)
    data = camel_keys(part) & GEMINI_DATA
    require(len(data) == 1, f"{where}: a part must hold exactly one data field, got {sorted(data)}")
    if "text" in part:
        require(isinstance(part["text"], str), f"{where}.text: expected a string")
        require(
            part["text"] or get(part, "thoughtSignature"),
            f"{where}: Unable to submit request because it has an empty text parameter.",
        )
    if (call := get(part, "functionCall")) is not None:
        require(
            isinstance(call, dict) and isinstance(call.get("name"), str),
            f"{where}.function_call.name: required",
        )
        require(isinstance(call.get("args", {}), dict), f"{where}.function_call.args: expected an object")
    if (result := get(part, "functionResponse")) is not None:
        require(
            isinstance(result, dict) and result.get("name"),
            f"{where}.function_response.name: Name cannot be empty.",
        )
        require(
            isinstance(result.get("response"), dict),
            f"{where}.function_response.response: expected an object",
        )
    if (inline := get(part, "inlineData")) is not None:
        require(
            get(inline, "mimeType") and isinstance(inline.get("data"), str),
            f"{where}.inline_data: mime_type and data required",
        )


def check_gemini_turns(contents: list[Any]) -> None:
    """Roles user/model; a user turn after a call turn answers every call, one functionResponse part each."""
    called: list[str] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        require(role in ("user", "model"), f"contents[{i}].role: Please use a valid role: user, model.")
        parts = check_gemini_parts(f"contents[{i}]", content)
        calls = [get(p, "functionCall")["name"] for p in parts if get(p, "functionCall") is not None]
        answers = [
            get(p, "functionResponse")["name"] for p in parts if get(p, "functionResponse") is not None
        ]
        require(role == "model" or not calls, f"contents[{i}]: function calls belong in a model turn")
        require(role == "user" or not answers, f"contents[{i}]: function responses belong in a user turn")
        if role == "user" and (called or answers):
            require(
                len(answers) == len(called),
                "Please ensure that the number of function response parts is equal to the number of function"
                " call parts of the function call turn.",
            )
            require(
                Counter(answers) == Counter(called),
                f"contents[{i}]: function response names {answers} do not match the calls {called}",
            )
        called = calls if role == "model" else []


def check_gemini_signatures(contents: list[Json]) -> None:
    """Gemini 3: the first function call of each model turn in the current turn carries our signature back."""
    starts = [i for i, c in enumerate(contents) if c.get("role", "user") == "user" and not gemini_answers(c)]
    for i, content in enumerate(contents[max(starts, default=0) :], max(starts, default=0)):
        calls = [p for p in content["parts"] if get(p, "functionCall") is not None]
        if content.get("role") == "model" and calls:
            require(
                valid_signature(get(calls[0], "thoughtSignature")),
                f"contents[{i}].parts: Function call is missing a thought_signature in functionCall parts.",
            )


def gemini_answers(content: Json) -> list[Json]:
    return [r for p in content["parts"] if (r := get(p, "functionResponse")) is not None]


def valid_signature(signature: Any) -> bool:
    """Ours (either base64 alphabet, padding optional) or a documented placeholder, raw or base64-encoded."""
    if not isinstance(signature, str):
        return False
    if signature in GEMINI_SKIP_SIGNATURES:
        return True
    try:
        decoded = base64.urlsafe_b64decode(
            signature.replace("+", "-").replace("/", "_") + "=" * (-len(signature) % 4)
        )
    except ValueError:
        return False
    return decoded == GEMINI_SIGNATURE or decoded.decode("latin-1") in GEMINI_SKIP_SIGNATURES


def check_gemini_declaration(where: str, declaration: Any) -> None:
    require(isinstance(declaration, dict), f"{where}: expected an object")
    check_unknown(declaration, GEMINI_DECLARATION_FIELDS, where)
    name = declaration.get("name")
    require(
        isinstance(name, str) and GEMINI_FUNCTION_NAME.match(name),
        f"{where}.name: Invalid function name {name!r}",
    )
    openapi, json_schema = get(declaration, "parameters"), get(declaration, "parametersJsonSchema")
    require(
        openapi is None or json_schema is None,
        f"{where}: parameters and parameters_json_schema are mutually exclusive",
    )
    if openapi is not None:
        check_schema(f"{where}.parameters", openapi, GEMINI_OPENAPI_KEYS, openapi=True)
    if json_schema is not None:
        check_schema(f"{where}.parameters_json_schema", json_schema, GEMINI_JSON_SCHEMA_KEYS, openapi=False)


def check_schema(where: str, schema: Any, allowed: frozenset[str], openapi: bool) -> None:
    require(isinstance(schema, dict), f"{where}: expected an object")
    check_unknown(schema, allowed, where)
    if openapi and "type" in schema:
        require(str(schema["type"]).upper() in GEMINI_TYPES, f"{where}.type: invalid type {schema['type']!r}")
    if openapi and "enum" in schema:
        require(
            all(isinstance(v, str) for v in schema["enum"]), f"{where}.enum: only string values are allowed"
        )
    for name, sub in {**schema.get("properties", {}), **schema.get("$defs", {})}.items():
        check_schema(f"{where}.properties[{name}]", sub, allowed, openapi)
    for key in ("items", "additionalProperties"):
        if isinstance(sub := get(schema, key), dict):
            check_schema(f"{where}.{key}", sub, allowed, openapi)
    for key in ("anyOf", "oneOf", "prefixItems"):
        for k, sub in enumerate(get(schema, key) or []):
            check_schema(f"{where}.{key}[{k}]", sub, allowed, openapi)


def gemini_result_text(response: Json) -> str:
    output = response.get("output")
    return output if isinstance(output, str) else compact(response)


class FakeGemini(FakeProvider):
    """POST /v1beta/models/{model}:generateContent | :streamGenerateContent, GET /v1beta/models (+ /v1)."""

    name = "gemini"

    def routes(self) -> list[web.RouteDef]:
        """Both API versions, like Google: google-genai 3.6.1 calls /v1 by default, other clients /v1beta."""
        return [
            route
            for version in GEMINI_VERSIONS
            for route in (
                web.post(f"/{version}/models/{{target}}", self.generate),
                web.get(f"/{version}/models", self.models),
            )
        ]

    def key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def check_auth(self, request: web.Request) -> web.Response | None:
        given = self.key_of(request)
        if self.accepts(given):
            return None
        if not given:
            return self.error(
                403, "fake gemini: Method doesn't allow unregistered callers. Please use an API key."
            )
        return self.error(
            400, "fake gemini: API key not valid. Please pass a valid API key.", reason="API_KEY_INVALID"
        )

    def error(
        self, status: int, message: str, headers: dict[str, str] | None = None, reason: str | None = None
    ) -> web.Response:
        error: Json = {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "UNKNOWN")}
        if reason:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                }
            ]
        if status == 429:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}]
        return json_response({"error": error}, headers, status)

    async def models(self, request: web.Request) -> web.Response:
        ids = ["gemini-fake-1", "gemini-3-fake"]
        data = [
            {
                "name": f"models/{i}",
                "baseModelId": i,
                "version": "001",
                "displayName": i.title(),
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for i in ids
        ]
        return json_response({"models": data})

    async def generate(self, request: web.Request) -> web.StreamResponse:
        model, _, action = request.match_info["target"].rpartition(":")
        if action == "countTokens" and model:
            return self.count_tokens(request[BODY])
        if action not in ("generateContent", "streamGenerateContent") or not model:
            raise web.HTTPNotFound()
        body = request[BODY]
        check_gemini(body, model)
        return await self.respond(request, model, self.answer(model, body), action == "streamGenerateContent")

    @staticmethod
    def count_tokens(body: Json) -> web.Response:
        """countTokens takes `contents` or a whole `generateContentRequest`, never both."""
        inner = get(body, "generateContentRequest")
        if (inner is None) == (get(body, "contents") is None):
            raise Invalid("countTokens takes exactly one of contents and generateContentRequest")
        return json_response({"totalTokens": GEMINI_COUNT_TOKENS})

    def answer(self, model: str, body: Json) -> Answer:
        last_user = next((c for c in reversed(body["contents"]) if c.get("role", "user") == "user"), None)
        results = [gemini_result_text(r["response"]) for r in gemini_answers(last_user)] if last_user else []
        declared = any(get(tool, "functionDeclarations") for tool in body.get("tools") or [])
        mode = get(get(get(body, "toolConfig") or {}, "functionCallingConfig") or {}, "mode")
        tools = body.get("tools") or []
        declarations = [d for tool in tools for d in get(tool, "functionDeclarations") or []]
        names = [declaration.get("name", "") for declaration in declarations]
        return self.reply(model, results, declared and mode != "NONE", names, gemini_schema(body))

    def message(self, model: str, answer: Answer, request: web.Request) -> Json:
        return self.chunk(model, self.parts(model, answer), GEMINI_USAGE, finished=True)

    def parts(self, model: str, answer: Answer) -> list[Json]:
        if not answer.tool_call:
            return [{"text": answer.text}]
        part: Json = {"functionCall": {"name": answer.name, "args": json.loads(answer.arguments)}}
        if model.startswith(GEMINI_THINKING_PREFIX):
            part["thoughtSignature"] = GEMINI_SIGNATURE_B64
        return [part]

    @staticmethod
    def chunk(model: str, parts: list[Json], usage: Json, finished: bool) -> Json:
        candidate: Json = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finished:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model,
            "responseId": "fake-gemini-resp",
        }

    def stream(self, model: str, answer: Answer, request: web.Request) -> Stream:
        if answer.tool_call:
            chunks = [self.message(model, answer, request)]
        else:
            pieces = text_pieces(answer.text)
            chunks = [
                self.chunk(model, [{"text": p}], GEMINI_USAGE_START, finished=False) for p in pieces[:-1]
            ]
            chunks.append(self.chunk(model, [{"text": pieces[-1]}], GEMINI_USAGE, finished=True))
        failure = {"error": {"code": 500, "message": f"fake gemini: {STREAM_FAILED}", "status": "INTERNAL"}}
        if request.query.get("alt") == "sse":
            return Stream([sse(c, end="\r\n") for c in chunks], sse(failure, end="\r\n"), head=1)
        # without alt=sse: one JSON array, streamed element by element
        frames = [("[" if i == 0 else ",\r\n") + compact(c) for i, c in enumerate(chunks)] + ["]"]
        return Stream(
            [f.encode() for f in frames], f",\r\n{compact(failure)}]".encode(), 1, "application/json"
        )

    # --- scripted answers (common.Script): text parts, then one functionCall part per call ---------
    @staticmethod
    def script_calls(script: Script) -> list[Json]:
        return [{"functionCall": {"name": n, "args": json.loads(arguments)}} for n, arguments in script.calls]

    def script_message(self, model: str, script: Script, request: web.Request) -> Json:
        parts = ([{"text": script.text}] if script.text else []) + self.script_calls(script)
        return self.chunk(model, parts, GEMINI_USAGE, finished=True)

    def script_stream(self, model: str, script: Script, request: web.Request) -> Stream:
        """Text in pieces, one chunk each; the calls whole, in the final chunk (as Gemini sends them)."""
        texts = [[{"text": piece}] for piece in script_pieces(script.text)]
        calls = self.script_calls(script)
        parts = [*texts, calls] if calls else texts or [[{"text": ""}]]
        chunks = [
            self.chunk(model, p, GEMINI_USAGE if last else GEMINI_USAGE_START, finished=last)
            for p, last in zip(parts, [False] * (len(parts) - 1) + [True])
        ]
        pause_at = len(texts) if calls else 0
        if request.query.get("alt") == "sse":
            frames = [sse(c, end="\r\n") for c in chunks]
            return Stream(frames, b"", head=0, pause_at=pause_at, pause=script.pause)
        frames = [(("[" if i == 0 else ",\r\n") + compact(c)).encode() for i, c in enumerate(chunks)] + [b"]"]
        return Stream(frames, b"", 0, "application/json", pause_at=pause_at, pause=script.pause)


def gemini_schema(body: Json) -> Json | None:
    """The JSON schema the request wants the answer in (responseJsonSchema or responseSchema)."""
    config = get(body, "generationConfig") or {}
    schema = get(config, "responseJsonSchema") or get(config, "responseSchema")
    return schema if isinstance(schema, dict) else None
