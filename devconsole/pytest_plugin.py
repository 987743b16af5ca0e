"""The ``devconsole_proxy`` pytest fixture (entry point ``pytest11``; docs/testing.md).

    def test_client_comes_back(devconsole_proxy):
        proxy = devconsole_proxy("http://127.0.0.1:9000")
        ...

A factory: each call starts a ``devconsole.testing.Proxy`` (a real devconsole proxy in
reverse mode in front of that server); every proxy it started is stopped when the test
ends, whatever the test did. Nothing is imported or started until a test asks for the
fixture, so the plugin costs nothing to test runs that do not use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def devconsole_proxy() -> Iterator[Callable[..., Any]]:
    """A factory of running proxies: ``devconsole_proxy(upstream_url, **options)`` returns
    a ``devconsole.testing.Proxy``; all of them are stopped at teardown."""
    started: list[Any] = []

    def factory(upstream_url: str, **options: Any) -> Any:
        from devconsole.testing import Proxy

        proxy = Proxy(upstream_url, **options)
        started.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in reversed(started):
            proxy.stop()
