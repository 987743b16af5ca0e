"""The devconsole_proxy fixture, used by a test suite of its own (pytester, in a fresh
pytest process that finds the plugin through its pytest11 entry point, as a user's
project does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.slow

USER_TESTS = '''
import asyncio, json, threading, time

import pytest
from websockets.asyncio.server import serve
from websockets.sync.client import connect


@pytest.fixture
def server():
    """The user's WebSocket server: echoes, on a thread."""
    loop = asyncio.new_event_loop()
    port = []
    stop = asyncio.Event()

    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    async def main():
        async with serve(echo, "127.0.0.1", 0) as s:
            port.append(s.sockets[0].getsockname()[1])
            await stop.wait()

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    while not port:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port[0]}"
    loop.call_soon_threadsafe(stop.set)
    t.join(5)


def test_kill_and_reconnect(devconsole_proxy, server, tmp_path):
    proxy = devconsole_proxy(server)
    other = devconsole_proxy(server)  # the factory makes as many as you like
    (tmp_path.parent / "pids").write_text(f"{proxy._proc.pid} {other._proc.pid}")
    with connect(proxy.url + "/feed") as ws:
        conn = proxy.wait_for_connection("/feed")
        proxy.kill(conn, code=1012)
        try:
            ws.recv(timeout=5)
        except Exception:
            pass
    with connect(proxy.url + "/feed"):
        proxy.wait_for_connection("/feed")
    assert len(proxy.reconnect_delays("/feed")) == 1


def test_failing_test_still_stops_its_proxies(devconsole_proxy, server, tmp_path):
    proxy = devconsole_proxy(server)
    (tmp_path.parent / "pids2").write_text(str(proxy._proc.pid))
    assert False, "the user's test fails"
'''


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_fixture_in_a_users_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    base = Path(pytester.path)
    pids = [
        int(x)
        for name in ("pids", "pids2")
        for f in base.rglob(name)
        for x in f.read_text().split()
    ]
    assert len(pids) == 3
    assert all(_gone(pid) for pid in pids)  # teardown stopped every proxy


def test_a_project_that_does_not_use_it_imports_nothing_of_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_other="""
        import sys

        def test_nothing_heavy_was_imported():
            assert "devconsole.pytest_plugin" in sys.modules  # the plugin is there
            # (textual comes with pytest-textual-snapshot, a plugin of this environment)
            for heavy in ("devconsole.testing", "mitmproxy", "websockets",
                          "devconsole.session", "devconsole.tap"):
                assert heavy not in sys.modules, heavy
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=60)
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--fixtures", "-q", timeout=60)
    assert "devconsole_proxy" in result.stdout.str()


def test_the_example_in_docs_testing_md_passes(pytester: pytest.Pytester) -> None:
    """The complete test of a client's backoff and heartbeat that docs/testing.md gives
    users to copy, run as they would run it."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "testing.md").read_text()
    blocks = [b.split("```", 1)[0] for b in doc.split("```python\n")[1:]]
    [example] = [b for b in blocks if "def test_backs_off_exponentially" in b]
    pytester.makepyfile(test_client_resilience=example)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=180)
    result.assert_outcomes(passed=3)
