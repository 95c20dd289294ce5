"""Test support: what tests import besides pytest fixtures (``tests/conftest.py`` holds only those).

- ``support.proxy``: the proxy process harness (also used by ``scripts/bench.py``);
- ``support.fakes``: the fake upstream providers, one module per provider;
- ``support.builders``: the SDK clients and request pieces several test modules share.
- ``support.examples``: the docs/wire.md examples the translator tests share.
- ``support.agents``: running the real coding agents through the proxy (the agent e2e tests).

Tests import it as ``support`` (pytest puts ``tests/`` on ``sys.path``, beside ``conftest.py``).
"""
