"""The tap: TapServer and TapClient over real Unix sockets and TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from devconsole import wire
from devconsole.model import (
    AbortCommand,
    BacklogEnd,
    CloseCommand,
    Command,
    CommandResult,
    ConnState,
    EndEvent,
    Event,
    GapEvent,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
    ReleaseCommand,
    Side,
    Snapshot,
)
from devconsole.session import Session
from devconsole.source import SourceError
from devconsole.tap import (
    FoundTap,
    FrameReader,
    TapAddress,
    TapClient,
    TapError,
    TapServer,
    collect,
    default_tap,
    discover_tap,
    find_taps,
    parse_tap,
)
from tests.conftest import Viewer, wait_until
from tests.factories import make_handshake

pytestmark = pytest.mark.timeout(30)


def hs(conn: str = "c1") -> Handshake:
    return make_handshake(
        conn,
        server="127.0.0.1:9000",
        url=f"ws://127.0.0.1:9000/{conn}",
        request_headers=[("Host", "127.0.0.1:9000")],
        reason="",
        ts_response=None,
    )


def msg(seq: int, conn: str = "c1", payload: bytes = b"m" * 64) -> Message:
    side: Side = "client" if seq % 2 else "server"
    return Message(seq, conn, float(seq), side, Opcode.TEXT, payload, len(payload), 0)


class Commands:
    """A command handler that records what it ran."""

    def __init__(self) -> None:
        self.seen: list[Command] = []
        self.done: list[Command] = []

    async def __call__(self, cmd: Command) -> CommandResult:
        self.seen.append(cmd)
        if isinstance(cmd, AbortCommand):
            raise RuntimeError("boom")
        if isinstance(cmd, CloseCommand) and cmd.code == 4999:
            await asyncio.sleep(0.3)  # a slow command
        self.done.append(cmd)
        return CommandResult(cmd.id, False, f"ran {type(cmd).__name__} on {cmd.conn}")


class Proxy:
    """The proxy side: a Session and a TapServer, fed like the Capture addon feeds them."""

    def __init__(self, session: Session | None = None, max_queue: int = 200_000) -> None:
        self.session = session or Session()
        self.commands = Commands()
        self.server = TapServer(
            self.session, self.commands, lambda: "127.0.0.1:8080", max_queue=max_queue
        )
        self.seq = 0

    def emit(self, ev: Event) -> None:
        self.session.apply(ev)
        self.server.publish(ev)

    def messages(self, n: int, conn: str = "c1") -> None:
        for _ in range(n):
            self.seq += 1
            self.emit(msg(self.seq, conn))


@contextlib.asynccontextmanager
async def tap_server(
    addr: TapAddress, session: Session | None = None, max_queue: int = 200_000
) -> AsyncIterator[Proxy]:
    p = Proxy(session, max_queue)
    await p.server.start(addr)
    try:
        yield p
    finally:
        await p.server.stop()


@contextlib.asynccontextmanager
async def attached(tap: str | TapAddress, token: str | None = None) -> AsyncIterator[Viewer]:
    v = Viewer(str(tap), token)
    await v.start()
    try:
        yield v
    finally:
        await v.close()


def sock_path(tmp: Path) -> TapAddress:
    return TapAddress(path=str(tmp / "tap.sock"))


def seq_of(ev: Event) -> int | None:
    return getattr(ev, "seq", None) if isinstance(ev, Message) else None


def hello(token: str | None = None) -> bytes:
    return wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION, "token": token})


class RawClient:
    """A tap client on a plain non-blocking socket: reads only when told to."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.decoder = wire.Decoder()
        self.frames: list[tuple[int, Any]] = []
        self.events: list[Event] = []

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_until(self, cond: Any, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while not cond(self):
            left = deadline - time.monotonic()
            assert left > 0, "timed out reading the tap"
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), left)
            except TimeoutError:
                continue
            if not data:
                raise AssertionError("tap closed the connection")
            self.decoder.feed(data)
            for kind, body in self.decoder.frames():
                self.frames.append((kind, body))
                if kind == wire.EVENTS:
                    self.events.extend(wire.decode_events(body))

    async def read_to_eof(self, timeout: float = 5) -> None:
        """Read (and keep) whatever comes until the server closes the connection."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "the tap did not close the connection"
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 1 << 16), left)
            except ConnectionResetError:
                return
            if not data:
                return
            self.decoder.feed(data)
            self.frames.extend(self.decoder.frames())

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------ FrameReader


async def test_frame_reader_delivers_good_frames_before_reporting_garbage() -> None:
    r = asyncio.StreamReader()
    r.feed_data(wire.pack(wire.WELCOME, {"version": 1}) + wire.pack(wire.ERROR, "x")[:2])
    r.feed_data(wire.pack(wire.ERROR, "x")[2:] + wire.pack(wire.RESULT, [1, True, ""]))
    r.feed_data(wire.pack(wire.EVENTS, []) + b"\xc1 junk")
    r.feed_eof()
    fr = FrameReader(r)
    got = [await fr.next() for _ in range(4)]
    assert [k for k, _ in got] == [wire.WELCOME, wire.ERROR, wire.RESULT, wire.EVENTS]  # type: ignore[misc]
    with pytest.raises(wire.WireError):
        await fr.next()


async def test_frame_reader_returns_none_at_eof() -> None:
    r = asyncio.StreamReader()
    r.feed_data(wire.pack(wire.WELCOME, {}))
    r.feed_eof()
    fr = FrameReader(r)
    assert await fr.next() == (wire.WELCOME, {})
    assert await fr.next() is None


# ------------------------------------------------------------------ addresses


def test_parse_tap_default_is_a_private_socket_in_the_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, short_tmp: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    a = parse_tap(None)
    assert a == parse_tap("") == TapAddress(path=str(short_tmp / "devconsole" / "tap.sock"))
    assert default_tap() == a.path
    assert not a.is_tcp


def test_parse_tap_falls_back_to_tmp_without_a_usable_runtime_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent/dir")
    assert parse_tap(None).path == f"/tmp/devconsole-{os.getuid()}/tap.sock"


def test_parse_tap_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/tmp")
    assert parse_tap("x/tap.sock") == TapAddress(path="/tmp/x/tap.sock")
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse_tap("~/tap.sock").path == "/home/someone/tap.sock"


@pytest.mark.parametrize(
    ("spec", "host", "port", "text"),
    [
        ("tcp://127.0.0.1:9000", "127.0.0.1", 9000, "tcp://127.0.0.1:9000"),
        ("tcp://localhost:0", "localhost", 0, "tcp://localhost:0"),
        ("tcp://[::1]:65535", "::1", 65535, "tcp://[::1]:65535"),
    ],
)
def test_parse_tap_tcp(spec: str, host: str, port: int, text: str) -> None:
    a = parse_tap(spec)
    assert a.is_tcp
    assert (a.host, a.port, a.path) == (host, port, None)
    assert str(a) == text
    assert parse_tap(str(a)) == a


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("tcp://", "HOST:PORT"),
        ("tcp://127.0.0.1", "HOST:PORT"),
        ("tcp://:9000", "HOST:PORT"),
        ("tcp://[]:9000", "HOST:PORT"),  # would listen on every interface
        ("tcp://127.0.0.1:", "number"),
        ("tcp://127.0.0.1:http", "number"),
        ("tcp://127.0.0.1:-1", "number"),
        ("tcp://127.0.0.1: 80", "number"),
        ("tcp://127.0.0.1:65536", "range"),
        ("http://127.0.0.1:9000", "tcp://HOST:PORT"),
        ("unix:///tmp/x.sock", "socket path"),
    ],
)
def test_parse_tap_rejects_bad_specs(spec: str, why: str) -> None:
    with pytest.raises(TapError, match=why) as ei:
        parse_tap(spec)
    assert repr(spec) in str(ei.value)


# ------------------------------------------------------------------ unix socket server


async def test_unix_socket_is_private_and_removed_on_stop(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    p = Proxy()
    assert await p.server.start(addr) == addr
    try:
        st = os.stat(addr.path)  # type: ignore[arg-type]
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
    finally:
        await p.server.stop()
    assert not os.path.exists(addr.path)  # type: ignore[arg-type]


async def test_runtime_dir_is_created_private(
    monkeypatch: pytest.MonkeyPatch, short_tmp: Path
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    async with tap_server(parse_tap(None)):
        d = short_tmp / "devconsole"
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "tap.sock").stat().st_mode) == 0o600


async def test_a_second_server_on_a_live_socket_is_refused(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as first:
        second = Proxy()
        with pytest.raises(TapError, match="in use") as ei:
            await second.server.start(addr)
        assert str(addr.path) in str(ei.value) and "--tap" in str(ei.value)
        # the first one still works
        first.emit(HandshakeEvent(hs()))
        async with attached(addr) as v:
            await v.wait_for(lambda v: "c1" in v.session.connections)


async def test_a_stale_socket_file_is_replaced(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(addr.path)  # type: ignore[arg-type]
    dead.close()  # the file stays, nobody listens: a crashed proxy's leftover
    assert stat.S_ISSOCK(os.stat(addr.path).st_mode)  # type: ignore[arg-type]
    async with tap_server(addr) as p:
        p.emit(HandshakeEvent(hs()))
        async with attached(addr) as v:
            await v.wait_for(lambda v: "c1" in v.session.connections)


async def test_a_file_that_is_not_a_socket_is_left_alone(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    Path(addr.path).write_text("precious")  # type: ignore[arg-type]
    with pytest.raises(TapError, match="not a socket"):
        await Proxy().server.start(addr)
    assert Path(addr.path).read_text() == "precious"  # type: ignore[arg-type]


async def test_listening_in_a_missing_directory_is_a_tap_error(short_tmp: Path) -> None:
    with pytest.raises(TapError, match="cannot listen"):
        await Proxy().server.start(TapAddress(path=str(short_tmp / "nope" / "tap.sock")))


async def test_attaching_to_nothing_is_a_source_error(short_tmp: Path) -> None:
    with pytest.raises(SourceError, match="no devconsole tap"):
        await TapClient(str(short_tmp / "missing.sock")).connect()


async def test_a_tap_that_never_answers_is_a_source_error(short_tmp: Path) -> None:
    path = str(short_tmp / "mute.sock")
    conns: list[asyncio.StreamWriter] = []

    async def mute(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        conns.append(w)

    srv = await asyncio.start_unix_server(mute, path=path)
    try:
        with pytest.raises(SourceError, match="did not answer"):
            # bounded: it gives up by itself, long before its default 5 s would
            await asyncio.wait_for(TapClient(path, timeout=0.3).connect(), 4)
    finally:
        for w in conns:
            w.close()
        srv.close()


# ------------------------------------------------------------------ streaming


async def test_late_attach_gets_snapshot_then_backlog_then_live_events(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr, Session(max_items=30)) as p:
        p.emit(HandshakeEvent(hs("c1")))
        p.messages(50)  # 20 of them already evicted from the proxy's buffer
        async with attached(addr) as v:
            assert v.client.proxy == "127.0.0.1:8080"
            # live events right away, while the backlog is still on its way
            p.emit(HandshakeEvent(hs("c2")))
            p.messages(25, "c2")
            p.emit(EndEvent("c2", 99.0, clean=True, closed_by="server"))
            p.messages(25, "c1")
            await v.wait_for(lambda v: v.session.last_seq == 100)
            await v.wait_for(lambda v: v.session.connections["c2"].state == ConnState.CLOSED)

        snap = v.events[0]
        assert isinstance(snap, Snapshot)
        assert snap.seq == 50
        assert snap.proxy == "127.0.0.1:8080"
        assert snap.evicted_messages == 20
        assert [c.handshake.conn for c in snap.connections] == ["c1"]
        seqs = [s for s in map(seq_of, v.events) if s is not None]
        assert seqs == list(range(21, 101))  # backlog, then live, strictly increasing
        assert not any(isinstance(e, GapEvent) for e in v.events)
        # the viewer's counters match the proxy's, evicted messages included
        for cid in ("c1", "c2"):
            assert v.session.connections[cid].snapshot() == p.session.connections[cid].snapshot()
        assert v.session.total_messages == p.session.total_messages == 100
        assert v.session.evicted == 20


async def test_two_viewers_see_the_same_stream(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p, attached(addr) as a:
        p.emit(HandshakeEvent(hs()))
        p.messages(10)
        async with attached(addr) as b:
            p.messages(3000)  # more than one batch
            for v in (a, b):
                await v.wait_for(lambda v: v.session.last_seq == 3010)
                assert v.session.connections["c1"].msgs_in + v.session.connections[
                    "c1"
                ].msgs_out == (3010)
        assert [seq_of(e) for e in a.events if seq_of(e)] == list(range(1, 3011))


async def test_stop_is_prompt_with_viewers_attached(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    p = Proxy()
    await p.server.start(addr)
    p.emit(HandshakeEvent(hs()))
    async with attached(addr) as v:
        await v.wait_for(lambda v: "c1" in v.session.connections)
        await p.server.stop()  # how long it takes: bench/timings.py
        # the viewer sees the end of the stream, and its commands now fail at once
        await wait_until(lambda: v._task is not None and v._task.done(), 5)
        with pytest.raises(SourceError):
            await asyncio.wait_for(v.client.command(HalfOpenCommand("c1")), 2)


# ------------------------------------------------------------------ commands


async def test_commands_round_trip_and_results_come_back_by_id(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p, attached(addr) as v:
        cmds: list[Command] = [
            CloseCommand("slow", 4999, "bye", "client"),
            ReleaseCommand("r"),
            HalfOpenCommand("h"),
            InjectCommand("i", "server", Opcode.BINARY, b"\x00\xff"),
        ]
        results = await asyncio.gather(*(v.client.command(c) for c in cmds))
        # the slow one finished last, yet every caller got its own answer
        assert [r.error for r in results] == [
            "ran CloseCommand on slow",
            "ran ReleaseCommand on r",
            "ran HalfOpenCommand on h",
            "ran InjectCommand on i",
        ]
        assert [r.id for r in results] == [c.id for c in cmds]
        assert len({c.id for c in cmds}) == 4
        assert p.commands.seen == cmds
        assert p.commands.done == [*cmds[1:], cmds[0]]  # the slow one really finished last
        inj = p.commands.seen[3]
        assert isinstance(inj, InjectCommand) and inj.payload == b"\x00\xff"


async def test_a_failing_command_handler_does_not_break_the_tap(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p, attached(addr) as v:
        res = await v.client.command(AbortCommand("c1"))
        assert not res.ok
        assert "internal error" in res.error and "boom" in res.error
        res = await v.client.command(HalfOpenCommand("c1"))
        assert res.error == "ran HalfOpenCommand on c1"
        p.emit(HandshakeEvent(hs()))
        p.messages(5)
        await v.wait_for(lambda v: v.session.last_seq == 5)


async def test_a_malformed_command_gets_an_error_result(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        raw = RawClient(addr.path)  # type: ignore[arg-type]
        try:
            await raw.send(hello())
            await raw.send(wire.pack(wire.COMMAND, [99, "c1", 42]))
            await raw.read_until(lambda r: any(k == wire.RESULT for k, _ in r.frames))
            [body] = [b for k, b in raw.frames if k == wire.RESULT]
            res = wire.decode_result(body)
            assert res.id == 42 and not res.ok and "unknown command" in res.error
            assert p.commands.seen == []
        finally:
            raw.close()


# ------------------------------------------------------------------ TCP and tokens


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> Path:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    return short_tmp / "devconsole"


def stale_socket(path: Path) -> None:
    """A socket file nothing listens on: what a proxy killed with -9 leaves behind."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


async def test_a_viewer_without_an_address_finds_the_one_running_proxy(runtime: Path) -> None:
    """Issue 16.3: the TUI's proxy listens on tap-PID.sock beside stale sockets of dead
    ones; a viewer given no --tap must find it and clean the stale ones up."""
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = runtime / "tap-999999.sock"
    stale_socket(stale)
    stale_socket(runtime / "tap.sock")
    (runtime / "tap-notes.sock").write_text("not a socket")  # left alone
    live = TapAddress(path=str(runtime / f"tap-{os.getpid()}.sock"))
    async with tap_server(live) as p:
        p.emit(HandshakeEvent(hs("c1")))
        found = await find_taps()
        assert found == [FoundTap(live.path, "127.0.0.1:8080")]  # type: ignore[arg-type]
        assert not stale.exists() and not (runtime / "tap.sock").exists()
        assert (runtime / "tap-notes.sock").exists()
        async with attached_found() as client:
            assert client.addr == live
            assert client.description == f"tap {live.path}"
        s = await collect(None)
        assert set(s.connections) == {"c1"}


@contextlib.asynccontextmanager
async def attached_found() -> AsyncIterator[TapClient]:
    client = TapClient(None)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def test_several_running_proxies_are_listed_to_choose_from(runtime: Path) -> None:
    runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    a = TapAddress(path=str(runtime / "tap-1.sock"))
    b = TapAddress(path=str(runtime / "tap-2.sock"))
    async with tap_server(a), tap_server(b):
        with pytest.raises(SourceError) as ei:
            await discover_tap()
    msg = str(ei.value)
    assert msg.startswith("2 devconsole proxies are running, choose one with --tap: ")
    assert f"{a.path} (proxy 127.0.0.1:8080)" in msg and b.path in msg
    assert "\n" not in msg
    with pytest.raises(SourceError, match="no devconsole proxy is running"):
        await TapClient(None).connect()


async def test_tcp_tap_with_a_private_token_file(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        addr = p.server.address
        assert addr is not None and addr.port
        tf = runtime / f"tap-{addr.port}.token"
        assert addr.token_file() == tf
        assert stat.S_IMODE(tf.stat().st_mode) == 0o600
        assert tf.read_text().strip() == p.server.token
        assert p.server.token and len(p.server.token) >= 32
        p.emit(HandshakeEvent(hs()))
        p.messages(3)
        # the client finds the token by itself
        async with attached(f"tcp://127.0.0.1:{addr.port}") as v:
            await v.wait_for(lambda v: v.session.last_seq == 3)
            res = await v.client.command(ReleaseCommand("c1"))
            assert res.error == "ran ReleaseCommand on c1"
    assert not tf.exists()


async def test_tcp_tap_refuses_a_wrong_token(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        assert p.server.address is not None
        with pytest.raises(SourceError, match="token"):
            await TapClient(p.server.address, token="not-the-token").connect()
        assert p.server.clients == set()


async def test_tcp_tap_refuses_a_missing_token(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        assert p.server.address is not None
        p.server.address.token_file().unlink()
        with pytest.raises(SourceError, match="token"):
            await TapClient(p.server.address).connect()
        # a hello without any token field at all
        r, w = await asyncio.open_connection("127.0.0.1", p.server.address.port)
        w.write(wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION}))
        d = wire.Decoder()
        d.feed(await asyncio.wait_for(r.read(), 5))
        assert list(d.frames()) == [(wire.ERROR, "bad or missing tap token")]
        w.close()


async def test_tcp_port_in_use_is_a_tap_error(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        assert p.server.address is not None
        with pytest.raises(TapError, match="in use"):
            await Proxy().server.start(p.server.address)


# ------------------------------------------------------------------ misbehaving clients


async def test_bad_hellos_are_refused_with_a_reason(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        for data, reason in [
            (wire.pack(wire.COMMAND, []), "expected a hello"),
            (wire.pack(wire.HELLO, "hi"), "expected a hello"),
            (wire.pack(wire.HELLO, {"version": 99}), "version 99"),
        ]:
            raw = RawClient(addr.path)  # type: ignore[arg-type]
            try:
                await raw.send(data)
                await raw.read_until(lambda r: bool(r.frames))
                kind, body = raw.frames[0]
                assert kind == wire.ERROR and reason in body
            finally:
                raw.close()
        assert p.server.clients == set()


async def test_garbage_from_clients_does_not_hurt_the_server(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p, attached(addr) as good:
        p.emit(HandshakeEvent(hs()))
        garbage = [
            b"\xc1" * 64,  # never-used msgpack byte
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            bytes(range(256)),
            b"\xdd\x0f\xff\xff\xff",  # a 5-byte header claiming 2**28 elements
        ]
        for junk, after_hello in [(g, False) for g in garbage] + [(g, True) for g in garbage]:
            raw = RawClient(addr.path)  # type: ignore[arg-type]
            try:
                await raw.send((hello() if after_hello else b"") + junk)
                await raw.read_to_eof()  # the server hangs up on it ...
            finally:
                raw.close()
            # ... after a welcome if the hello was fine, never with a crash
            assert [k for k, _ in raw.frames][:1] == ([wire.WELCOME] if after_hello else []), junk
        await wait_until(lambda: len(p.server.clients) == 1, 5)  # only the good one
        p.messages(10)
        await good.wait_for(lambda v: v.session.last_seq == 10)
        async with attached(addr) as late:
            await late.wait_for(lambda v: v.session.total_messages == 10)


async def test_a_client_that_vanishes_mid_stream_is_dropped(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p, attached(addr) as good:
        p.emit(HandshakeEvent(hs()))
        raw = RawClient(addr.path)  # type: ignore[arg-type]
        await raw.send(hello())
        await wait_until(lambda: len(p.server.clients) == 2, 5)
        p.messages(100)
        await raw.read_until(lambda r: any(seq_of(e) for e in r.events))
        # gone without a goodbye: reset the connection
        raw.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        raw.close()
        for _ in range(20):
            p.messages(500)
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(p.server.clients) == 1, 5)
        await good.wait_for(lambda v: v.session.last_seq == 10_100)
        assert not any(isinstance(e, GapEvent) for e in good.events)


async def test_a_slow_client_neither_slows_publish_nor_grows_without_bound(
    short_tmp: Path,
) -> None:
    addr = sock_path(short_tmp)
    max_queue = 1_000
    async with tap_server(addr, Session(max_items=5_000), max_queue=max_queue) as p:
        p.emit(HandshakeEvent(hs()))
        slow = RawClient(addr.path)  # type: ignore[arg-type]
        try:
            await slow.send(hello())  # ... and then it does not read
            await wait_until(lambda: len(p.server.clients) == 1, 5)
            [client] = p.server.clients
            total = 250_000
            chunk = 1_000
            events = [msg(i) for i in range(1, total + 1)]
            worst_queue = 0
            worst_buffer = 0
            for start in range(0, total, chunk):
                part = events[start : start + chunk]
                for ev in part:
                    p.session.apply(ev)
                for ev in part:
                    p.server.publish(ev)
                worst_queue = max(worst_queue, len(client.queue))
                worst_buffer = max(worst_buffer, client.writer.transport.get_write_buffer_size())
                await asyncio.sleep(0)  # let the sender run (and block on the full socket)
            # (what publish costs meanwhile is measured by bench/timings.py)
            assert worst_queue <= max_queue
            assert worst_buffer < 2 << 20
            assert client in p.server.clients  # skipped ahead, not dropped

            # Now it reads: everything it got plus what it was told it missed adds up.
            await slow.read_until(lambda r: r.events and seq_of(r.events[-1]) == total)
        finally:
            slow.close()
        kinds = [type(e).__name__ for e in slow.events]
        assert kinds[0] == "Snapshot"
        gaps = [i for i, e in enumerate(slow.events) if isinstance(e, GapEvent)]
        assert gaps, "the slow client was never told it missed events"
        for i in gaps:
            after = slow.events[i + 1]
            assert isinstance(after, Snapshot)
            assert after.connections[0].msgs_in + after.connections[0].msgs_out == after.seq
        missed = sum(e.missed for e in slow.events if isinstance(e, GapEvent))
        received = [s for s in map(seq_of, slow.events) if s is not None]
        assert received == sorted(set(received))
        assert missed > total // 2
        assert len(received) + missed == total
        # and a Session fed this stream ends up with the proxy's counters
        viewer = Session()
        viewer.apply_all(slow.events)
        assert viewer.connections["c1"].snapshot() == p.session.connections["c1"].snapshot()
        assert viewer.missed == missed


async def test_a_slow_client_does_not_hold_back_a_healthy_one(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr, max_queue=10_000) as p:
        p.emit(HandshakeEvent(hs()))
        slow = RawClient(addr.path)  # type: ignore[arg-type]
        try:
            await slow.send(hello())
            async with attached(addr) as good:
                await wait_until(lambda: len(p.server.clients) == 2, 5)
                for _ in range(60):
                    p.messages(500)
                    await asyncio.sleep(0.002)
                await good.wait_for(lambda v: v.session.last_seq == 30_000)
                assert not any(isinstance(e, GapEvent) for e in good.events)
                # the slow one was skipped ahead meanwhile, and is still attached
                assert sorted(c.missed > 0 for c in p.server.clients) == [False, True]
        finally:
            slow.close()


# ------------------------------------------------------------------ collect


async def test_collect_returns_a_session_with_everything(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        p.emit(HandshakeEvent(hs("c1")))
        p.emit(HandshakeEvent(hs("c2")))
        p.messages(40, "c1")
        p.messages(2, "c2")
        p.emit(EndEvent("c2", 5.0, clean=False, closed_by=None, error="reset"))
        s = await collect(addr.path, idle=0.1)
        assert set(s.connections) == {"c1", "c2"}
        assert s.connections["c1"].msgs_in + s.connections["c1"].msgs_out == 40
        assert s.connections["c2"].errors == ["reset"]
        assert s.total_messages == 42
        assert [it.seq for it in s.items()] == list(range(1, 43))
        assert s.proxy == "127.0.0.1:8080"
        # until= stops as soon as the condition holds
        s2 = await asyncio.wait_for(  # bounded: it does not wait for idle=5 s
            collect(addr, until=lambda s: "c1" in s.connections, idle=5), 4
        )
        assert "c1" in s2.connections


async def test_the_backlog_ends_with_a_marker_only_for_a_viewer_that_asks(short_tmp: Path) -> None:
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        p.emit(HandshakeEvent(hs("c1")))
        p.messages(30)
        asks = RawClient(addr.path)  # type: ignore[arg-type]
        old = RawClient(addr.path)  # type: ignore[arg-type]
        try:
            await asks.send(
                wire.pack(wire.HELLO, {"version": 1, "token": None, "backlog_end": True})
            )
            await old.send(hello())
            await asks.read_until(lambda c: any(isinstance(e, BacklogEnd) for e in c.events))
            p.messages(5)  # live, after the marker
            await asks.read_until(lambda c: sum(isinstance(e, Message) for e in c.events) == 35)
            await old.read_until(lambda c: sum(isinstance(e, Message) for e in c.events) == 35)
        finally:
            asks.close()
            old.close()
    kinds = [type(e).__name__ for e in asks.events]
    assert kinds[0] == "Snapshot" and kinds.count("BacklogEnd") == 1
    end = kinds.index("BacklogEnd")
    assert kinds[1:end] == ["Message"] * 30 and kinds[end + 1 :] == ["Message"] * 5
    assert asks.events[end] == BacklogEnd(30)
    assert not any(isinstance(e, BacklogEnd) for e in old.events)  # an older viewer


async def test_collect_returns_when_the_backlog_is_in_even_under_a_flood(short_tmp: Path) -> None:
    """Issue 16.4: `conns` and `report` waited for 0.3 s without events, which a flood
    never has, until their 10 s timeout. With the marker they return at once."""
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        p.emit(HandshakeEvent(hs("c1")))
        p.messages(1000)
        stop = asyncio.Event()

        async def flood() -> None:
            while not stop.is_set():  # an event every millisecond or so, never quiet
                p.messages(5)
                await asyncio.sleep(0.001)

        task = asyncio.ensure_future(flood())
        try:
            s = await asyncio.wait_for(collect(addr, idle=30, timeout=60), 20)
        finally:
            stop.set()
            await task
        c1 = s.connections["c1"]
        assert c1.msgs_in + c1.msgs_out >= 1000
        assert [it.seq for it in s.items()][:1000] == list(range(1, 1001))


async def test_collect_of_the_connections_alone_skips_the_buffer(short_tmp: Path) -> None:
    """`devconsole conns` needs the Snapshot's counters, not 100,000 buffered messages."""
    addr = sock_path(short_tmp)
    async with tap_server(addr) as p:
        p.emit(HandshakeEvent(hs("c1")))
        p.messages(500)
        client = TapClient(addr, backlog_end=True, items=False)
        got: list[Event] = []
        await client.connect()
        task = asyncio.ensure_future(client.run(got.extend))
        try:
            await wait_until(lambda: any(isinstance(e, BacklogEnd) for e in got))
        finally:
            await client.close()
            task.cancel()
        assert [type(e) for e in got] == [Snapshot, BacklogEnd]
        s = await collect(addr, items=False)
        c1 = s.connections["c1"]
        assert c1.msgs_in + c1.msgs_out == 500 and len(s.buffer) == 0


async def test_collect_reports_an_unreachable_tap(short_tmp: Path) -> None:
    with pytest.raises(SourceError):
        await collect(str(short_tmp / "nothing.sock"))


async def test_collect_reports_a_tap_sending_garbage(short_tmp: Path) -> None:
    path = str(short_tmp / "bad.sock")

    done = asyncio.Event()

    async def bad(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            w.write(wire.pack(wire.WELCOME, {"version": 1, "proxy": "x"}))
            w.write(wire.pack(wire.EVENTS, [[999, "what"]]))
            await w.drain()
            await r.read()  # until the client hangs up
        finally:
            w.close()
            done.set()

    srv = await asyncio.start_unix_server(bad, path=path)
    try:
        with pytest.raises(SourceError, match="malformed"):
            await collect(path, timeout=3)
        await asyncio.wait_for(done.wait(), 5)  # collect() hung up
    finally:
        srv.close()


async def test_a_slow_client_queue_is_bounded_by_bytes_too(short_tmp: Path) -> None:
    """Large messages evicted from the ring buffer must not stay alive in the queue of a
    viewer that does not read."""
    from devconsole.model import Message

    session = Session(max_items=10, max_bytes=1 << 20)
    server = TapServer(session, Commands(), max_queue_bytes=1 << 20)
    addr = await server.start(parse_tap(str(short_tmp / "t.sock")))
    try:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(addr))
        raw.sendall(wire.pack(wire.HELLO, {"version": wire.PROTOCOL_VERSION}))
        for _ in range(200):
            if server.clients:
                break
            await asyncio.sleep(0.01)
        [client] = server.clients
        big = b"x" * (64 << 10)
        for seq in range(1, 201):  # 12.5 MiB published, never read
            ev = Message(seq, "c1", 1.0, "client", 2, big, len(big), len(big) + 10)
            session.apply(ev)
            server.publish(ev)
            assert client.qbytes <= (1 << 20) + len(big)
        assert client.missed > 0
        raw.close()
    finally:
        await server.stop()


# ------------------------------------------------------------------ before authentication
#
# Until a client has sent a valid hello (with the token, on TCP) it may send a few KiB,
# for a bounded time, and only so many such clients are held at once: an unauthenticated
# client must not make the proxy allocate. After authentication the usual limits apply.


def bin32_header(n: int) -> bytes:
    """The start of a msgpack bin32 object claiming ``n`` bytes."""
    return b"\xc6" + n.to_bytes(4, "big")


async def open_tcp(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server hangs up within ``timeout`` (what it sent before is ignored)."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(1 << 16), left):
                return True
    except TimeoutError:
        return False
    except ConnectionError:  # reset
        return True
    return False


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
async def test_a_large_object_before_the_hello_is_cut_off(
    runtime: Path, short_tmp: Path, tcp: bool
) -> None:
    addr = TapAddress(host="127.0.0.1", port=0) if tcp else sock_path(short_tmp)
    async with tap_server(addr) as p:
        a = p.server.address
        assert a is not None
        if tcp:
            r, w = await open_tcp(a.port)  # type: ignore[arg-type]
        else:
            r, w = await asyncio.open_unix_connection(a.path)  # type: ignore[arg-type]
        try:
            # a 16 MiB object, of which 64 KiB arrive: the server must not wait for the rest
            w.write(bin32_header((16 << 20) - 64) + b"\x00" * (64 << 10))
            with contextlib.suppress(ConnectionError):
                await w.drain()
            assert await closed_by_server(r, 5), "the tap kept reading a huge pre-auth object"
        finally:
            w.close()
        assert p.server.clients == set()


async def test_a_hello_of_a_few_kib_is_still_fine(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        a = p.server.address
        assert a is not None and p.server.token is not None
        r, w = await open_tcp(a.port)  # type: ignore[arg-type]
        try:
            extra = {"client": "x" * 2000}  # readers ignore keys they do not know
            w.write(wire.pack(wire.HELLO, {"version": 1, "token": p.server.token, **extra}))
            d = wire.Decoder()
            d.feed(await asyncio.wait_for(r.read(1 << 16), 5))
            assert next(d.frames())[0] == wire.WELCOME
            # after the hello, today's limits: a command carrying 2 MiB is fine
            w.write(
                wire.pack(wire.COMMAND, [wire.C_INJECT, "c1", "client", 2, b"x" * (2 << 20), 7])
            )
            await w.drain()
            await wait_until(lambda: len(p.commands.seen) == 1, 5)
            assert len(p.commands.seen[0].payload) == 2 << 20  # type: ignore[union-attr]
        finally:
            w.close()


async def test_unauthenticated_connections_are_capped_oldest_first(runtime: Path) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        a = p.server.address
        assert a is not None and a.port
        cap = p.server.max_pending
        conns = []
        for _ in range(cap + 5):
            conns.append(await open_tcp(a.port))
            await asyncio.sleep(0.01)  # accepted in this order
        try:
            # the 5 oldest were dropped to make room, at once (not at the auth timeout)
            for r, _ in conns[:5]:
                assert await closed_by_server(r, 3)
            # a client with the token still gets in, and pushes out the next oldest
            async with attached(f"tcp://127.0.0.1:{a.port}") as v:
                await v.wait_for(lambda v: v.session.version > 0)
            assert await closed_by_server(conns[5][0], 3)
            assert not conns[-1][0].at_eof()
        finally:
            for _, w in conns:
                w.close()


async def test_a_client_that_never_says_hello_is_dropped_after_the_auth_timeout(
    runtime: Path,
) -> None:
    async with tap_server(TapAddress(host="127.0.0.1", port=0)) as p:
        a = p.server.address
        assert a is not None
        p.server.auth_timeout = 0.5
        r, w = await open_tcp(a.port)  # type: ignore[arg-type]
        try:
            w.write(wire.pack(wire.HELLO, {"version": 1, "token": "x"})[:3])  # and no more
            assert await closed_by_server(r, 5)
        finally:
            w.close()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def attack(port: int, payload: bytes, total: int, stop_at: float) -> None:
    """One unauthenticated client: ``payload`` first, then zeros up to ``total`` bytes in
    64 KiB writes, holding the connection open until ``stop_at`` (or until cut off)."""
    try:
        r, w = await asyncio.wait_for(open_tcp(port), 5)
    except (OSError, TimeoutError):
        return
    try:
        w.write(payload)
        sent = len(payload)
        chunk = b"\x00" * (64 << 10)
        while sent < total and time.monotonic() < stop_at:
            w.write(chunk)
            sent += len(chunk)
            await asyncio.wait_for(w.drain(), max(0.01, stop_at - time.monotonic()))
        while time.monotonic() < stop_at and not r.at_eof():  # hold the connection
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(r.read(1 << 16), max(0.01, stop_at - time.monotonic()))
    except (ConnectionError, TimeoutError, OSError):
        pass
    finally:
        w.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_tap_fuzzing_before_authentication_keeps_the_proxy_bounded_and_relaying(
    short_tmp: Path,
) -> None:
    """A real `devconsole proxy` with a TCP tap, attacked by many unauthenticated clients
    (garbage, and large partial msgpack objects: each would have been buffered up to the
    16 MiB object limit): its RSS stays bounded, WebSocket traffic keeps flowing through
    it, and an authenticated viewer keeps receiving every message."""
    import os
    import subprocess
    import sys

    from websockets.asyncio.client import connect

    from tests.conftest import ROOT, ws_server

    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(short_tmp))
    async with ws_server() as (_, up):
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "devconsole", "proxy", "--listen", "127.0.0.1:0",
                "--mode", f"reverse:http://127.0.0.1:{up}", "--tap", "tcp://127.0.0.1:0",
                "--confdir", str(short_tmp / "conf"), "--log", "quiet",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+); tap at tcp://127\.0\.0\.1:(\d+)", line)
            assert m, line
            port, tap_port = int(m.group(1)), int(m.group(2))
            token = (short_tmp / "devconsole" / f"tap-{tap_port}.token").read_text().strip()

            async with (
                connect(f"ws://127.0.0.1:{port}/during") as ws,
                viewer_of(f"tcp://127.0.0.1:{tap_port}", token) as v,
            ):
                await ws.send("warm up")
                assert await ws.recv() == "warm up"
                await v.wait_for(lambda v: v.session.total_messages == 2)
                base = rss_mib(proc.pid)

                huge = (16 << 20) - 64
                payloads = [
                    bin32_header(huge),  # a 16 MiB bin, never finished
                    b"\xdb" + huge.to_bytes(4, "big"),  # a 16 MiB str
                    b"\x92\x00\x81\xa5token\xdb" + huge.to_bytes(4, "big"),  # a hello's token
                    b"\xdd\x0f\xff\xff\xff",  # an array of 2**28 elements
                    os.urandom(4096),
                    b"\xc1" * 64,
                    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                ]
                peak = base
                echoed = 0
                for wave in range(3):  # 3 waves of 60 connections, 8 MiB offered by each
                    stop_at = time.monotonic() + 4
                    attackers = [
                        asyncio.ensure_future(
                            attack(tap_port, payloads[i % len(payloads)], 8 << 20, stop_at)
                        )
                        for i in range(60)
                    ]
                    sent_before = echoed
                    while not all(a.done() for a in attackers) or echoed - sent_before < 10:
                        # relaying continues meanwhile, and the viewer sees it
                        await ws.send(f"wave {wave} msg {echoed}")
                        assert await asyncio.wait_for(ws.recv(), 10) == f"wave {wave} msg {echoed}"
                        echoed += 1
                        peak = max(peak, rss_mib(proc.pid))
                        await asyncio.sleep(0.05)
                    await asyncio.gather(*attackers)
                    peak = max(peak, rss_mib(proc.pid))
                await v.wait_for(lambda v: v.session.total_messages == 2 + 2 * echoed, 20)
                # 180 clients offered 8 MiB each; before the limits, the proxy's RSS grew by
                # about that much per connection held
                assert peak - base < 48, f"proxy RSS grew from {base:.0f} to {peak:.0f} MiB"
                assert proc.poll() is None
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.asynccontextmanager
async def viewer_of(tap: str, token: str) -> AsyncIterator[Viewer]:
    v = Viewer(tap, token)
    await v.start()
    try:
        yield v
    finally:
        await v.close()
