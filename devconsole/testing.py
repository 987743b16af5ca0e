"""devconsole in your own tests: a real proxy in front of your WebSocket server.

    from devconsole.testing import Proxy

    with Proxy("http://127.0.0.1:9000") as proxy:     # reverse mode, a free loopback port
        client = start_my_client(proxy.url)           # ws://127.0.0.1:PORT
        conn = proxy.wait_for_connection("/feed")     # the oldest open connection not yet seen
        proxy.kill(conn, code=1012)                   # or abort / half_open / shape / inject
        proxy.wait_for_connection("/feed")            # the client came back
        assert proxy.reconnect_delays("/feed")[0] < 2

The proxy is ``devconsole proxy`` in a child process (mitmproxy is never imported here);
this object talks to it over its tap, from a background thread, so every method is a plain
blocking call that works from synchronous tests. An ``async`` test that runs its client on
its own event loop must not block that loop: it awaits ``wait_for_connection_async`` and
``wait_until_async`` instead. The pytest plugin (``devconsole.pytest_plugin``) provides
the ``devconsole_proxy`` fixture; docs/testing.md has a complete example.

Every method that takes a connection accepts the object ``wait_for_connection`` returned
or its id (a string like "3").
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from devconsole.model import (
    AbortCommand,
    CloseCommand,
    Command,
    Event,
    HalfOpenCommand,
    InjectCommand,
    Message,
    Opcode,
    ReleaseCommand,
    RulesCommand,
    ShapeCommand,
)
from devconsole.session import Session

__all__ = ["Connection", "Proxy", "ProxyCommandError", "ProxyStartError"]

T = TypeVar("T")

STOP_TIMEOUT = 5.0
_live: set[Proxy] = set()


class ProxyStartError(RuntimeError):
    """The proxy did not start (the message says why)."""


class ProxyCommandError(RuntimeError):
    """The proxy refused a command (an unknown or closed connection, a bad close code...)."""


@dataclass(frozen=True)
class Connection:
    """A WebSocket connection through the proxy, as ``wait_for_connection`` found it."""

    id: str
    path: str
    url: str
    client: str
    proxy: Proxy

    @property
    def state(self) -> str:
        """open, closing, closed, killed, half-open (now)."""
        return self.proxy._conn_attr(self.id, "state")

    @property
    def close_code(self) -> int | None:
        return self.proxy._conn_attr(self.id, "close_code")

    @property
    def ended(self) -> bool:
        return self.proxy._conn_attr(self.id, "ts_end") is not None

    def messages(self) -> list[Message]:
        return self.proxy.messages(self)

    def __str__(self) -> str:
        return self.id


ConnRef = Connection | str


def _conn_id(conn: ConnRef) -> str:
    return conn.id if isinstance(conn, Connection) else str(conn)


def _upstream(url: str) -> str:
    if url.startswith("ws://"):
        return "http://" + url[5:]
    if url.startswith("wss://"):
        return "https://" + url[6:]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"upstream must be an http(s):// or ws(s):// URL, not {url!r}")
    return url


class Proxy:
    """A real devconsole proxy (reverse mode) in front of ``upstream_url`` on a free
    loopback port, started at once. Options: ``rules`` (a rules file, docs/rules.md),
    ``listen`` ("127.0.0.1:0"), ``max_payload``, ``hold_bytes``, ``args`` (more
    ``devconsole proxy`` arguments), ``startup_timeout`` (seconds)."""

    def __init__(
        self,
        upstream_url: str,
        *,
        rules: str | os.PathLike[str] | None = None,
        listen: str = "127.0.0.1:0",
        max_payload: str = "1m",
        hold_bytes: str = "16m",
        args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        self.upstream = upstream_url
        self._dir = tempfile.mkdtemp(prefix="dcp", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.tap = os.path.join(self._dir, "tap.sock")
        self._log_path = os.path.join(self._dir, "proxy.log")
        self._seen: set[str] = set()
        self._stopped = False
        self._proc: subprocess.Popen[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._run: asyncio.Future[Any] | None = None
        self.session = Session(max_items=1_000_000, max_bytes=1 << 30)
        from devconsole.analysis.heartbeat import HeartbeatMonitor

        self._monitor = HeartbeatMonitor()
        self.session.observers.append(self._monitor.on_event)
        self.url = ""
        self.port = 0
        _live.add(self)
        try:
            self._start(_upstream(upstream_url), rules, listen, max_payload, hold_bytes, args,
                        startup_timeout)  # fmt: skip
        except BaseException:
            self.stop()
            raise

    # ------------------------------------------------------------------ lifecycle

    def _start(
        self,
        upstream: str,
        rules: str | os.PathLike[str] | None,
        listen: str,
        max_payload: str,
        hold_bytes: str,
        args: Sequence[str],
        timeout: float,
    ) -> None:
        cmd = [
            sys.executable, "-m", "devconsole", "proxy", "--listen", listen,
            "--mode", f"reverse:{upstream}", "--tap", self.tap, "--log", "quiet",
            "--max-payload", max_payload, "--hold-bytes", hold_bytes, *args,
        ]  # fmt: skip
        if rules is not None:
            cmd += ["--rules", os.fspath(rules)]
        log = open(self._log_path, "w")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        finally:
            log.close()
        line = self._first_line(timeout)
        m = re.search(r"listening on (\S+?)(?:,|;)", line)
        if m is None:
            raise ProxyStartError(self._why(line))
        addr = m.group(1)
        self.port = int(addr.rsplit(":", 1)[1])
        host = addr.rsplit(":", 1)[0]
        self.url = f"ws://{host}:{self.port}"
        ready = threading.Event()
        error: list[BaseException] = []

        def runner() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._connect())
            except BaseException as e:  # reported to the constructor
                error.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._disconnect())
            loop.close()

        self._thread = threading.Thread(target=runner, name="devconsole-proxy-tap", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise ProxyStartError("timed out attaching to the proxy's tap")
        if error:
            raise ProxyStartError(f"cannot attach to the proxy's tap: {error[0]}")

    def _first_line(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        box: list[str] = []
        t = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        t.start()
        t.join(timeout)
        if not box:
            raise ProxyStartError(f"the proxy did not start within {timeout:g} s")
        return box[0]

    def _why(self, line: str) -> str:
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        try:
            with open(self._log_path) as fh:
                lines = [x for x in fh.read().strip().splitlines() if x.strip()]
        except OSError:
            lines = []
        errs = [x for x in lines if x.startswith("devconsole:")]
        if errs:  # the proxy's own one-line error (it may wrap)
            i = lines.index(errs[-1])
            return " ".join(x.strip() for x in lines[i:])
        return lines[-1] if lines else (line.strip() or "the proxy exited")

    async def _connect(self) -> None:
        from devconsole.tap import TapClient

        self._client = TapClient(self.tap)
        await self._client.connect()
        self._run = asyncio.ensure_future(self._client.run(self._apply))
        deadline = time.monotonic() + 10
        while self.session.version == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # the Snapshot

    def _apply(self, events: list[Event]) -> None:
        self.session.apply_all(events)

    async def _disconnect(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
        if self._run is not None:
            self._run.cancel()
            with contextlib.suppress(BaseException):
                await self._run

    def stop(self) -> None:
        """Stop the proxy (it closes live connections with 1001 first) and everything
        this object started. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        _live.discard(self)
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STOP_TIMEOUT)
        p = self._proc
        if p is not None and p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p is not None and p.stdout is not None:
            p.stdout.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else self.url
        return f"<devconsole.testing.Proxy {state} -> {self.upstream}>"

    # ------------------------------------------------------------------ plumbing

    def _call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the tap's thread (where the session changes) and return its result."""
        if self._stopped or self._loop is None:
            raise ProxyCommandError("the proxy is stopped")
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:
                fut.set_exception(e)

        self._loop.call_soon_threadsafe(run)
        return fut.result(timeout)

    def _command(self, cmd: Command, timeout: float = 10.0) -> str:
        if self._stopped or self._loop is None:
            raise ProxyCommandError("the proxy is stopped")
        fut = asyncio.run_coroutine_threadsafe(self._client.command(cmd), self._loop)
        res = fut.result(timeout)
        if not res.ok:
            raise ProxyCommandError(res.error)
        return str(res.info)

    def _conn_attr(self, conn: str, name: str) -> Any:
        def get() -> Any:
            c = self.session.connections.get(conn)
            return None if c is None else getattr(c, name)

        return self._call(get)

    # ------------------------------------------------------------------ connections

    def _take(self, path: str | None) -> Connection | None:
        def find() -> Connection | None:
            for c in sorted(self.session.connections.values(), key=lambda c: c.ts_start):
                if c.id in self._seen or not c.live or c.handshake.status != 101:
                    continue
                if path is not None and c.path != path:
                    continue
                self._seen.add(c.id)
                return Connection(c.id, c.path, c.url, c.client, self)
            return None

        return self._call(find)

    def wait_for_connection(self, path: str | None = None, timeout: float = 10.0) -> Connection:
        """The oldest open connection (on ``path``, if given) that no earlier call returned,
        waiting up to ``timeout`` seconds for one to open (TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            c = self._take(path)
            if c is not None:
                return c
            if time.monotonic() > deadline:
                where = f" on {path}" if path else ""
                raise TimeoutError(f"no new connection{where} within {timeout:g} s")
            time.sleep(0.01)

    async def wait_for_connection_async(
        self, path: str | None = None, timeout: float = 10.0
    ) -> Connection:
        """``wait_for_connection`` for async tests: waits without blocking their loop."""
        deadline = time.monotonic() + timeout
        while True:
            c = self._take(path)
            if c is not None:
                return c
            if time.monotonic() > deadline:
                where = f" on {path}" if path else ""
                raise TimeoutError(f"no new connection{where} within {timeout:g} s")
            await asyncio.sleep(0.01)

    def wait_until(self, predicate: Callable[[Proxy], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(proxy)`` is true (TimeoutError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout:g} s")
            time.sleep(0.01)

    async def wait_until_async(
        self, predicate: Callable[[Proxy], bool], timeout: float = 10.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout:g} s")
            await asyncio.sleep(0.01)

    def connections(self, path: str | None = None) -> list[Connection]:
        """Every connection seen so far (on ``path``), oldest first, open or not."""

        def get() -> list[Connection]:
            return [
                Connection(c.id, c.path, c.url, c.client, self)
                for c in sorted(self.session.connections.values(), key=lambda c: c.ts_start)
                if path is None or c.path == path
            ]

        return self._call(get)

    def messages(self, conn: ConnRef) -> list[Message]:
        """The data messages of a connection so far, both directions, in order (``side``
        is who sent it; ``payload`` the bytes; text messages are UTF-8)."""
        cid = _conn_id(conn)

        def get() -> list[Message]:
            return [m for m in self.session.items(cid) if isinstance(m, Message)]

        return self._call(get)

    # ------------------------------------------------------------------ faults

    def kill(self, conn: ConnRef, code: int | None = None, reason: str = "") -> None:
        """Close the connection with close frames to both peers: ``code`` (default 1001,
        as a server going away) and ``reason``, then FIN."""
        self._command(CloseCommand(_conn_id(conn), 1001 if code is None else code, reason))

    def abort(self, conn: ConnRef, rst: bool = False) -> None:
        """Drop both TCP connections at once, no close frame (``rst``: a TCP reset)."""
        self._command(AbortCommand(_conn_id(conn), rst))

    def half_open(self, conn: ConnRef) -> None:
        """Forward nothing either way while both sockets stay open (until ``release``)."""
        self._command(HalfOpenCommand(_conn_id(conn)))

    def release(self, conn: ConnRef) -> None:
        self._command(ReleaseCommand(_conn_id(conn)))

    def inject(
        self, conn: ConnRef, to: str, text: str | None = None, data: bytes | None = None
    ) -> None:
        """Send ``text`` (a text message), ``data`` (binary) or, with neither, a ping to
        ``to`` ("client" or "server"), as if from the other peer."""
        if to not in ("client", "server"):
            raise ValueError("to is 'client' or 'server'")
        if text is not None and data is not None:
            raise ValueError("give text or data, not both")
        if text is not None:
            opcode, payload = Opcode.TEXT, text.encode()
        elif data is not None:
            opcode, payload = Opcode.BINARY, bytes(data)
        else:
            opcode, payload = Opcode.PING, b"devconsole"
        self._command(InjectCommand(_conn_id(conn), to, opcode, payload))  # type: ignore[arg-type]

    def shape(self, conn: ConnRef, to: str = "both", **conditions: Any) -> None:
        """Network conditions on the bytes going to ``to`` (client, server, both):
        ``latency="100ms"``, ``jitter``, ``rate="64kbit"``, ``slice=100``,
        ``slice_delay``, ``fragment=1000``, ``stall=True``, ``pongs="drop"`` or
        ``"delay:2s"`` (docs/shaping.md). With no condition: remove them."""
        from devconsole.model import Shape
        from devconsole.shaping import parse_shape

        if to not in ("client", "server", "both"):
            raise ValueError("to is 'client', 'server' or 'both'")
        if conditions:
            cmd = ShapeCommand(_conn_id(conn), to, parse_shape(conditions))  # type: ignore[arg-type]
        else:
            cmd = ShapeCommand(_conn_id(conn), to, Shape(), clear=True)  # type: ignore[arg-type]
        self._command(cmd)

    def load_rules(self, rules: str | os.PathLike[str]) -> int:
        """Replace the proxy's rules: a rules file's path, or its text (docs/rules.md).
        Returns how many rules are in effect; ProxyCommandError (with line and column) for
        a file with an error."""
        text = os.fspath(rules)
        name = "rules"
        if "\n" not in text and os.path.exists(text):
            name = text
            with open(text, encoding="utf-8") as fh:
                text = fh.read()
        return int(self._command(RulesCommand(text, name)))

    # ------------------------------------------------------------------ analysis

    def report(self) -> dict[str, Any]:
        """The readiness report, as ``devconsole report --json`` prints it."""
        from devconsole.analysis.readiness import build_report

        return self._call(lambda: build_report(self.session, self._monitor, time.time()))

    def reconnect_delays(self, path: str) -> list[float]:
        """Seconds between each end of a connection on ``path`` and the client's next
        attempt, in order (the report's ``reconnect_delays``)."""
        for ep in self.report()["endpoints"]:
            if ep["path"] == path:
                return list(ep["reconnect_delays"])
        return []


@atexit.register
def _stop_all() -> None:
    """A test run that forgot to stop a proxy leaves no process behind."""
    for p in list(_live):
        with contextlib.suppress(Exception):
            p.stop()
