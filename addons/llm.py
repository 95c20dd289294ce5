"""Entry script of the LLM suite: ``mitmdump -s addons/llm.py``.

The addons run in pipeline order: configuration, listeners, the proxy's own endpoints, the front
door that recognises LLM calls, routing, the policies' request stage, the egress, and the
translation of answers (through the event stages) back to the client's protocol, then the
observers. The order matters in every hook; docs/architecture.md says why, and
tests/test_addon_order.py pins it.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

# mitmproxy puts only addons/ on sys.path; the suite's packages live beside it.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from addons.access import Access  # noqa: E402
from addons.capture import Capture  # noqa: E402
from addons.counting import CountTokens  # noqa: E402
from addons.diagnostics import Diagnostics  # noqa: E402
from addons.egress import Egress  # noqa: E402
from addons.fallback import Fallback  # noqa: E402
from addons.frontdoor import FrontDoor  # noqa: E402
from addons.limits import KeyLimits  # noqa: E402
from addons.listeners import Listeners  # noqa: E402
from addons.metrics import Metrics, MetricsEndpoint  # noqa: E402
from addons.models import ModelCatalog  # noqa: E402
from addons.policies import Policies  # noqa: E402
from addons.responses_extra import ResponsesExtra, StoredResponses  # noqa: E402
from addons.router import RouteRequests  # noqa: E402
from addons.sessions import Sessions  # noqa: E402
from addons.settings import Settings  # noqa: E402
from addons.translate import TranslateResponses  # noqa: E402
from addons.usage import UsageEndpoint, UsageLog  # noqa: E402
from addons.verifier import Verifier  # noqa: E402
from addons.views import KeepStreams, register  # noqa: E402

register()  # the LLM contentviews for mitmweb and mitmdump's flow detail
# What is loaded by now lives as long as the process: frozen, the collector's full collections no
# longer walk it (19% less CPU for a 2 MB translated request; docs/architecture.md, "Performance").
gc.freeze()
settings = Settings()
egress = Egress(settings)
metrics = Metrics(settings)
limits = KeyLimits(settings)


def counted(row) -> None:
    """Each usage row feeds the metrics' token counters and the keys' limit windows."""
    metrics.count_tokens(row)
    limits.count(row)


usage = UsageLog(settings, on_row=counted)
policies = Policies(settings, egress.relay.fetch)
verifier = Verifier(settings, egress.relay, policies.record)
sessions = Sessions(settings)

addons = [
    settings,
    Listeners(),
    Access(settings),
    Diagnostics(
        settings,
        {
            "policy_decisions": policies.diagnostics,
            "verifier": verifier.diagnostics,
            "sessions": sessions.diagnostics,
            "keys": limits.diagnostics,
        },
    ),
    UsageEndpoint(usage, limits.use),
    MetricsEndpoint(metrics),
    StoredResponses(settings, egress.relay),
    FrontDoor(settings),
    ModelCatalog(settings, egress.relay.fetch_json),
    sessions,
    RouteRequests(settings),
    limits,
    policies,
    verifier,
    ResponsesExtra(settings),
    CountTokens(settings),
    egress,
    Fallback(),
    TranslateResponses(settings),
    KeepStreams(),
    usage,
    metrics,
    Capture(settings),
]
