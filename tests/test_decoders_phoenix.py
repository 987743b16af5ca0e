"""Phoenix channels: hand-built frames from the Phoenix serializers (phoenix.js's v1 and
v2 JSON, and v2's binary push/reply/broadcast); no Elixir runtime runs here."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.base import decode_message
from devconsole.decoders.phoenix import PhoenixDecoder
from devconsole.model import Opcode
from tests.factories import make_handshake

PHX = PhoenixDecoder()


def dec(data: str | bytes, side: str = "client") -> Any:
    op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    raw = data.encode() if isinstance(data, str) else data
    return decode_message(PHX, raw, op, side, None)  # type: ignore[arg-type]


def test_v2_join_reply_and_heartbeat() -> None:
    join = dec('["1","1","room:lobby","phx_join",{"token":"t"}]')
    p = join.packets[0]
    assert p.fields == {
        "join_ref": "1",
        "ref": "1",
        "topic": "room:lobby",
        "event": "phx_join",
        "payload": {"token": "t"},
        "vsn": 2,
    }
    assert (p.key, p.role, p.method) == ("ref:1", "request", "phx_join")
    reply = dec('["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}]', "server")
    assert reply.summary == "phx room:lobby phx_reply ref=1 ok"
    assert (reply.packets[0].key, reply.packets[0].role) == ("ref:1", "reply")
    hb = dec('[null,"2","phoenix","heartbeat",{}]').packets[0]
    assert hb.role == "ping" and hb.key is None
    pong = dec('[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]', "server")
    assert pong.packets[0].role == "pong"
    push = dec('[null,null,"room:lobby","new_msg",{"body":"hi"}]', "server").packets[0]
    assert push.role is None and push.summary == 'phx room:lobby new_msg {"body":"hi"}'


def test_v1_objects() -> None:
    d = dec('{"topic":"room:1","event":"phx_join","payload":{},"ref":"5"}')
    assert d.packets[0].fields["vsn"] == 1 and d.packets[0].key == "ref:5"
    [(_, raw)] = PHX.encode(d.packets[0].fields)
    assert dec(raw.decode()).packets[0].fields == d.packets[0].fields


def test_v2_binary_messages() -> None:
    push = bytes([0, 1, 1, 4, 3]) + b"12roomevt" + b"\x00\x01"
    f = dec(push).packets[0].fields
    assert (f["join_ref"], f["ref"], f["topic"], f["event"], f["payload"]) == (
        "1",
        "2",
        "room",
        "evt",
        b"\x00\x01",
    )
    reply = bytes([1, 1, 1, 4, 2]) + b"12roomok" + b"\xff"
    f = dec(reply, "server").packets[0].fields
    assert f["event"] == "phx_reply" and f["payload"] == {"status": "ok", "response": b"\xff"}
    bcast = bytes([2, 4, 3]) + b"roomevt" + b"zz"
    assert dec(bcast, "server").packets[0].fields["payload"] == b"zz"
    assert dec(b"\x07").error == "unknown binary message kind 7"


def test_detection_by_url() -> None:
    hs = make_handshake(path="/socket/websocket", query=[("vsn", "2.0.0")])
    assert PHX.detect(hs) >= 0.9
    assert PHX.detect(make_handshake(path="/ws")) == 0.0


@given(
    st.none() | st.text(max_size=3),
    st.none() | st.text(max_size=3),
    st.text(max_size=6),
    st.text(max_size=6),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([1, 2]),
)
def test_decode_encode_roundtrip(
    join_ref: Any, ref: Any, topic: str, event: str, payload: Any, vsn: int
) -> None:
    fields = {
        "join_ref": join_ref,
        "ref": ref,
        "topic": topic,
        "event": event,
        "payload": payload,
        "vsn": vsn,
    }
    [(_op, raw)] = PHX.encode(fields)
    assert dec(raw.decode()).packets[0].fields == fields


@given(st.binary(max_size=64), st.sampled_from([Opcode.TEXT, Opcode.BINARY]))
def test_fuzzed_input_never_raises(data: bytes, op: int) -> None:
    assert decode_message(PHX, data, op, "client", None).protocol == "phoenix"
