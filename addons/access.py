"""Who is calling: the proxy key that authenticated a flow.

The key is kept beside the flow (like the Exchange), never in ``flow.metadata``, which mitmproxy
serialises with saved flows: a secret must not end up in a saved flow file.
"""

from __future__ import annotations

import weakref

from mitmproxy import http

from backends.access import ProxyKey

_KEYS: weakref.WeakKeyDictionary[http.HTTPFlow, ProxyKey] = weakref.WeakKeyDictionary()


def key_of(flow: http.HTTPFlow) -> ProxyKey | None:
    """The proxy key that authenticated this flow; None in single-user mode without keys."""
    return _KEYS.get(flow)


def remember(flow: http.HTTPFlow, key: ProxyKey) -> None:
    _KEYS[flow] = key
