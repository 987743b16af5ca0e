from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.socketio import (
    SocketIODecoder,
    SocketIOState,
    event_frames,
    parse_sio,
)
from devconsole.model import Opcode
from tests.conftest import running_proxy, wait_until
from tests.factories import make_handshake
from tests.protocol_servers import aiohttp_server, decoding_viewer

SIO = SocketIODecoder()


def dec(payload: bytes | str, side: str = "client", state: Any = None, seq: int = 1) -> Any:
    p = payload.encode() if isinstance(payload, str) else payload
    op = Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY
    return decode_message(SIO, p, op, side, state if state is not None else SIO.new_state(), seq)  # type: ignore[arg-type]


def test_event_with_ack_summary_and_fields() -> None:
    d = dec('4212["chat",{"text":"hi"}]')
    assert d.ok and d.summary == 'sio "chat" {"text":"hi"} ack 12'
    [p] = d.packets
    assert p.fields == {
        "type": "event",
        "namespace": "/",
        "event": "chat",
        "args": [{"text": "hi"}],
        "ack": 12,
    }
    assert (p.key, p.role, p.method) == ("ack:/:12", "request", "chat")
    reply = dec('43/admin,12["ok"]', "server").packets[0]
    assert reply.fields == {"type": "ack", "namespace": "/admin", "ack": 12, "args": ["ok"]}
    assert reply.role == "reply"


def test_engine_packets_and_negotiated_heartbeat() -> None:
    d = dec('0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}', "server")
    [p] = d.packets
    assert p.fields["type"] == "open" and p.fields["data"]["sid"] == "abc"
    assert p.heartbeat == ({"side": "server", "interval": 25.0, "timeout": 20.0},)
    assert d.summary == "eio open sid=abc ping 25s timeout 20s"
    assert dec("2", "server").packets[0].role == "ping"
    assert dec("3").packets[0].role == "pong"
    probe = dec("2probe").packets[0]
    assert probe.fields == {"type": "ping", "data": "probe"} and probe.role is None
    assert dec("5").packets[0].fields == {"type": "upgrade"}
    assert dec("6").packets[0].fields == {"type": "noop"}


def test_v3_client_pings_and_binary_prefix() -> None:
    hs = make_handshake(path="/socket.io/", query=[("EIO", "3"), ("transport", "websocket")])
    state = SIO.new_state(hs)
    assert state.eio == 3
    d = dec('0{"sid":"a","pingInterval":1000,"pingTimeout":500}', "server", state)
    assert d.packets[0].heartbeat[0]["side"] == "client"
    dec('451-["up",{"_placeholder":true,"num":0}]', "client", state, 7)
    joined = dec(b"\x04\x00\xff", "client", state, 8)
    assert joined.packets[0].fields["args"] == [b"\x00\xff"] and joined.joined_to == 7
    assert [f[1] for f in SIO.encode(joined.packets[0].fields, state)][1] == b"\x04\x00\xff"


def test_binary_attachments_join_in_order() -> None:
    st_ = SIO.new_state()
    first = dec(
        '452-3["file",{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}}]',
        "client",
        st_,
        10,
    )
    assert first.pending and first.note == "waiting for 2 binary attachments"
    mid = dec(b"one", "client", st_, 11)
    assert not mid.packets and mid.note == "binary attachment 1 of 2" and mid.joined_to == 10
    # the server's own binary message does not steal the client's attachment
    other = dec(b"srv", "server", st_, 12)
    assert other.packets[0].fields == {"type": "message", "data": b"srv"}
    last = dec(b"two", "client", st_, 13)
    f = last.packets[0].fields
    assert f["args"] == [b"one", {"b": b"two"}] and f["ack"] == 3 and last.joined_to == 10


def test_malformed_packets_give_reasons_not_exceptions() -> None:
    for bad, why in [
        ("9", "not an Engine.IO packet"),
        ("42[oops", "bad JSON"),
        ('42{"a":1}', "[name, ...args]"),
        ('45["x"]', "attachment count"),
        ("48", "unknown Socket.IO packet type"),
    ]:
        d = dec(bad)
        assert d.error is not None and why in d.error, (bad, d.error)
    assert "not UTF-8" in (dec(b"\xff", state=None).error or "") or dec(b"\xff").ok


def test_parse_sio_namespaces_and_queries() -> None:
    assert parse_sio("1/admin") == {"type": "disconnect", "namespace": "/admin"}
    assert parse_sio("0/admin?token=x,") == {
        "type": "connect",
        "namespace": "/admin",
        "query": "token=x",
    }
    assert parse_sio('0{"token":"t"}') == {
        "type": "connect",
        "namespace": "/",
        "data": {"token": "t"},
    }


def test_event_frames_build_attachments() -> None:
    frames = event_frames("up", [b"\x00\x01", {"n": 1}], ack=4)
    assert frames == [
        (Opcode.TEXT, b'451-4["up",{"_placeholder":true,"num":0},{"n":1}]'),
        (Opcode.BINARY, b"\x00\x01"),
    ]
    assert event_frames("chat", ["hi"], namespace="/room") == [
        (Opcode.TEXT, b'42/room,["chat","hi"]')
    ]


# ----------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)
with_bytes = st.recursive(
    json_scalars | st.binary(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)
namespaces = st.sampled_from(["/", "/admin", "/a-b"])


def _has_bytes(v: Any) -> bool:
    if isinstance(v, bytes):
        return True
    if isinstance(v, dict):
        return any(_has_bytes(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_bytes(x) for x in v)
    return False


def _count(v: Any) -> int:
    if isinstance(v, bytes):
        return 1
    if isinstance(v, dict):
        return sum(_count(x) for x in v.values())
    if isinstance(v, list):
        return sum(_count(x) for x in v)
    return 0


@st.composite
def sio_fields(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["event", "ack", "connect", "disconnect", "connect_error", "engine"])
    )
    nsp = draw(namespaces)
    if kind == "engine":
        t = draw(st.sampled_from(["close", "ping", "pong", "upgrade", "noop", "message"]))
        f: dict[str, Any] = {"type": t}
        if t in ("ping", "pong") and draw(st.booleans()):
            f["data"] = "probe"
        if t == "message":
            f["data"] = draw(st.binary(max_size=10) | st.text(alphabet="abc xyz", max_size=10))
        return f
    if kind in ("event", "ack"):
        args = draw(st.lists(with_bytes, max_size=3))
        f = {"type": kind, "namespace": nsp}
        if kind == "event":
            f["event"] = draw(st.text(max_size=8))
        f["args"] = args
        ack = draw(st.none() | st.integers(0, 10**6))
        if ack is not None or kind == "ack":
            f["ack"] = ack if ack is not None else 0
        if _has_bytes(args):
            f["type"] = "binary_" + kind
            f["attachments"] = _count(args)
        return f
    f = {"type": kind, "namespace": nsp}
    if kind != "disconnect":
        data = draw(st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3))
        if data is not None:
            f["data"] = data
    return f


def _roundtrip(fields: dict[str, Any], eio: int) -> dict[str, Any]:
    state = SocketIOState(eio)
    frames = SIO.encode(fields, state)
    result = None
    for i, (op, payload) in enumerate(frames):
        d = decode_message(SIO, payload, op, "client", state, i + 1)
        assert d.ok, (fields, frames, d.error)
        if not d.pending and d.packets:
            result = d.packets[0].fields
    assert result is not None
    return result


@given(sio_fields(), st.sampled_from([3, 4]))
def test_decode_encode_roundtrip(fields: dict[str, Any], eio: int) -> None:
    assert _roundtrip(fields, eio) == fields


@given(st.binary(max_size=64), st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
def test_fuzzed_input_never_raises(data: bytes, op: int) -> None:
    state = SIO.new_state()
    d = decode_message(SIO, data, op, "client", state, 1)
    assert d.protocol == "socket.io"
    d = decode_message(SIO, b"4" + data, Opcode.TEXT, "server", state, 2)
    assert d.protocol == "socket.io"


# ----------------------------------------------------------------- python-socketio


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transports", [["websocket"], ["polling", "websocket"]])
async def test_python_socketio_through_the_proxy(short_tmp: Any, transports: list[str]) -> None:
    """A real python-socketio server and client (aiohttp) through devconsole: events,
    acks (paired), binary attachments (joined), namespaces and Engine.IO heartbeats
    (with the negotiated interval), decoded by a tap viewer."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=1, ping_timeout=5)
    app = web.Application()
    sio.attach(app)
    got: list[Any] = []

    @sio.on("chat")  # type: ignore[misc]
    async def chat(sid: str, data: Any) -> Any:
        got.append(data)
        await sio.emit("news", {"headline": "hello"}, to=sid)
        return {"ok": True, "n": len(got)}

    @sio.on("upload", namespace="/files")  # type: ignore[misc]
    async def upload(sid: str, name: str, blob: bytes) -> Any:
        got.append((name, blob))
        return len(blob)

    @sio.on("*", namespace="/files")  # type: ignore[misc]
    async def other(event: str, sid: str, *args: Any) -> None:
        pass

    async with aiohttp_server(app) as port:
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with decoding_viewer(rp.tap) as v:
                client = socketio.AsyncClient()
                news: list[Any] = []
                client.on("news", lambda data: news.append(data))
                await client.connect(
                    f"http://127.0.0.1:{rp.port}",
                    transports=transports,
                    namespaces=["/", "/files"],
                    wait_timeout=10,
                )
                try:
                    r1 = await client.call("chat", {"text": "hi"}, timeout=10)
                    r2 = await client.call(
                        "upload", ("a.bin", b"\x00\x01\x02" * 10), namespace="/files", timeout=10
                    )
                    await wait_until(lambda: len(news) == 1)

                    def pongs() -> int:  # Engine.IO ping/pong rounds the viewer decoded
                        return sum(1 for _, f in v.packets() if f == {"type": "pong"})

                    await wait_until(lambda: pongs() >= 2, timeout=15)
                finally:
                    with contextlib.suppress(Exception):
                        await client.disconnect()
                assert r1 == {"ok": True, "n": 1} and r2 == 30

                def seen() -> bool:
                    fs = [f for _, f in v.packets()]
                    return any(
                        f.get("type") == "binary_ack"
                        or (f.get("type") == "ack" and f.get("args") == [30])
                        for f in fs
                    )

                await wait_until(seen)
                await wait_until(lambda: any(c.ts_end for c in v.session.connections.values()))
                conn = next(iter(v.session.connections))
                assert v.tracker.protocol_of(conn) == "socket.io"
                fields = [f for _, f in v.packets()]
                ev = next(f for f in fields if f.get("event") == "chat")
                assert ev["args"] == [{"text": "hi"}] and isinstance(ev["ack"], int)
                up = next(f for f in fields if f.get("event") == "upload")
                assert up["type"] == "binary_event" and up["namespace"] == "/files"
                assert up["args"] == ["a.bin", b"\x00\x01\x02" * 10]
                assert any(f.get("event") == "news" for f in fields)
                opens = [f for f in fields if f.get("type") == "open"]
                if transports == ["websocket"]:
                    assert opens and opens[0]["data"]["pingInterval"] == 1000
                else:  # the open packet came over polling; the upgrade probe is here
                    assert {"type": "ping", "data": "probe"} in fields
                    assert {"type": "upgrade"} in fields
                # pairing: both acks answered, latency recorded per event
                path = v.session.connections[conn].path
                lat = v.analysis.pairs.endpoint_report(path)
                methods = {m["method"]: m for m in lat["methods"]}
                assert methods["chat"]["count"] == 1 and methods["upload"]["count"] == 1
                assert methods["chat"]["p50"] is not None
                # Engine.IO heartbeats, with the negotiated interval when the open was seen
                rep = v.analysis.heartbeat.report(conn, now=1e12)
                eio = [p for p in rep.protocol if p.protocol == "socket.io"]
                assert eio and eio[0].side == "server" and eio[0].count >= 2
                assert eio[0].rtt_count >= 1
                if transports == ["websocket"]:
                    assert eio[0].negotiated_interval == pytest.approx(1.0)
