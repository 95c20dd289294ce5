"""Prometheus metrics of LLM calls, served as ``GET /metrics``.

Counters and histograms live in a registry of their own (not prometheus-client's global one), so a
hot reload or a second instance starts clean. Requests, errors and timings are counted in the
``response``/``error`` hooks (no I/O); tokens arrive with each usage row (``count_tokens``, wired
as ``UsageLog(on_row=...)``), because estimating unreported counts is done off the event loop.

Requests and tokens carry a ``key`` label: the name of the proxy key that made the call (empty
without keys), so that a shared deployment sees who spends what. A usage row names its key as its
``client``; with ``settings`` given, a client that is a configured key's name is that key.
"""

from __future__ import annotations

from mitmproxy import http
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from addons import exchange, listeners
from addons.settings import Settings
from addons.usage import ABORTED, UsageRow, outcome

PATH = "/metrics"
# Seconds. Whole answers of reasoning models take minutes; first tokens usually come within seconds.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)


class Metrics:
    """Place it after TranslateResponses (which sets the end time, usage and errors)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        by_model = ["backend", "model"]
        self.requests = Counter(
            "llm_requests", "Finished LLM calls; status is the HTTP status the client got, or aborted.",
            [*by_model, "client_protocol", "status", "key"], registry=self.registry,
        )  # fmt: skip
        self.errors = Counter(
            "llm_errors",
            "Failed LLM calls by canonical error code.",
            [*by_model, "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "llm_upstream_latency_seconds", "From the request's arrival to the end of the answer.",
            by_model, buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "From the request's arrival to the first content token of a stream.",
            by_model, buckets=TTFT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.policy_actions = Counter(
            "llm_policy_actions", "Policy decisions other than allow, by policy and action.",
            ["policy", "action"], registry=self.registry,
        )  # fmt: skip
        self.loops = Counter(
            "llm_loops", "Answers the proxy ended because they repeated themselves (policies/loops.py).",
            [*by_model, "kind"], registry=self.registry,
        )  # fmt: skip
        self.tokens = Counter(
            "llm_tokens", "Tokens as the provider reported them, else estimated.",
            [*by_model, "direction", "key"], registry=self.registry,
        )  # fmt: skip

    def response(self, flow: http.HTTPFlow) -> None:
        self._observe(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._observe(flow)

    def _observe(self, flow: http.HTTPFlow) -> None:
        ex = exchange.get(flow)
        if ex is None or ex.target is None or ex.operation != "generate":
            return
        for decision in ex.decisions:
            self.policy_actions.labels(decision.policy, decision.action).inc()
            if decision.policy == "loop_detection":
                self.loops.labels(ex.target.instance, ex.target.model, decision.rule.split()[0]).inc()
        result = outcome(flow, ex)
        backend, model = ex.target.instance, ex.target.model
        status = ABORTED if result.status is None else str(result.status)
        key = ex.key.name if ex.key else ""
        self.requests.labels(backend, model, ex.client_protocol, status, key).inc()
        if result.error is not None:
            self.errors.labels(backend, model, result.error).inc()
        self.latency.labels(backend, model).observe(result.latency)
        if result.ttft is not None:
            self.ttft.labels(backend, model).observe(result.ttft)

    def count_tokens(self, row: UsageRow) -> None:
        """Called with each usage row, from the usage worker thread (prometheus-client is thread-safe)."""
        key = row.client if row.client in self._key_names() else ""
        for direction, count in (("input", row.input_tokens), ("output", row.output_tokens)):
            if count:
                self.tokens.labels(row.backend, row.model, direction, key).inc(count)

    def _key_names(self) -> set[str]:
        return {k.name for k in self.settings.config.access.keys} if self.settings else set()

    def exposition(self) -> http.Response:
        return http.Response.make(200, generate_latest(self.registry), {"content-type": CONTENT_TYPE_LATEST})


class MetricsEndpoint:
    """``GET /metrics`` at the front door and the Anthropic port. Place it before FrontDoor."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def request(self, flow: http.HTTPFlow) -> None:
        request = flow.request
        if flow.response or request.method != "GET" or request.path.partition("?")[0] != PATH:
            return
        if listeners.surface(flow) != "proxy":
            flow.response = self.metrics.exposition()
