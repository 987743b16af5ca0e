"""devconsole.testing.Proxy from synchronous code and from an async test: a real proxy in
a child process, a real websockets server and client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect as aconnect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from devconsole.testing import Proxy, ProxyCommandError, ProxyStartError


@pytest.fixture
def echo_server() -> Iterator[str]:
    """A websockets echo server on its own thread: its http:// URL."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    stop = asyncio.Event()

    async def echo(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for m in ws:
                await ws.send(m)

    async def main() -> None:
        async with serve(echo, "127.0.0.1", 0) as srv:
            port.append(srv.sockets[0].getsockname()[1])
            ready.set()
            await stop.wait()

    t = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(10)


def test_proxy_from_sync_code(echo_server: str) -> None:
    with Proxy(echo_server) as proxy:
        assert proxy.url.startswith("ws://127.0.0.1:")
        pid = proxy._proc.pid  # type: ignore[union-attr]
        with connect(proxy.url + "/chat") as ws:
            conn = proxy.wait_for_connection("/chat")
            assert conn.id and conn.path == "/chat" and conn.state == "open"
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            proxy.wait_until(lambda p: len(p.messages(conn)) == 2)
            assert [(m.side, m.payload) for m in proxy.messages(conn.id)] == [
                ("client", b"hello"),
                ("server", b"hello"),
            ]
            proxy.inject(conn, "client", text="from the proxy")
            assert ws.recv(timeout=5) == "from the proxy"
            proxy.shape(conn, to="client", latency="150ms")
            t0 = time.monotonic()
            ws.send("slow")
            assert ws.recv(timeout=5) == "slow"
            assert time.monotonic() - t0 >= 0.14
            proxy.shape(conn)  # no condition: lifted
            proxy.kill(conn, code=4000, reason="bye")
            with pytest.raises(ConnectionClosed) as exc:
                ws.recv(timeout=5)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 4000
        with pytest.raises(TimeoutError):
            proxy.wait_for_connection("/chat", timeout=0.3)  # already returned
        with pytest.raises(ProxyCommandError, match="closed"):
            proxy.abort(conn)
        with connect(proxy.url + "/chat"):
            again = proxy.wait_for_connection("/chat")
        assert again.id != conn.id
        delays = proxy.reconnect_delays("/chat")
        assert len(delays) == 1 and 0 <= delays[0] < 5
        assert proxy.report()["endpoints"][0]["path"] == "/chat"
    assert proxy._stopped
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_half_open_release_and_abort(echo_server: str) -> None:
    with Proxy(echo_server) as proxy, connect(proxy.url + "/x") as ws:
        c = proxy.wait_for_connection()
        proxy.half_open(c)
        ws.send("lost")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        proxy.release(c)
        ws.send("found")
        assert ws.recv(timeout=5) == "found"
        proxy.abort(c, rst=True)
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_rules(echo_server: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "r.toml"
    rules.write_text(
        '[[rule]]\nmatch = "from:server secret"\nrewrite = { regex = "secret", replace = "***" }\n'
    )
    with Proxy(echo_server, rules=rules) as proxy, connect(proxy.url + "/r") as ws:
        ws.send("my secret")
        assert ws.recv(timeout=5) == "my ***"
        assert proxy.load_rules('[[rule]]\nmatch = "from:client x"\ndrop = true\n') == 1
        with pytest.raises(ProxyCommandError, match=r"rules:2:10:"):
            proxy.load_rules('[[rule]]\nmatch = "(x"\ndrop = true\n')
        ws.send("x")
        ws.send("y")
        assert ws.recv(timeout=5) == "y"


async def test_proxy_from_an_async_test(echo_server: str) -> None:
    with Proxy(echo_server) as proxy:
        async with aconnect(proxy.url + "/a") as ws:
            conn = await proxy.wait_for_connection_async("/a")
            await ws.send("ping?")
            assert await ws.recv() == "ping?"
            proxy.kill(conn)
            with pytest.raises(ConnectionClosed) as exc:
                await asyncio.wait_for(ws.recv(), 5)
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001


def test_a_proxy_that_cannot_start_says_why() -> None:
    with pytest.raises(ProxyStartError, match=r"address already in use|cannot listen"):
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            Proxy("http://127.0.0.1:9", listen=f"127.0.0.1:{s.getsockname()[1]}")
        finally:
            s.close()
    with pytest.raises(ValueError, match="http"):
        Proxy("ftp://example.test")
