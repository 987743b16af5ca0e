from __future__ import annotations

import pytest

from devconsole.decoders.base import Decoded
from devconsole.decoders.mqtt import encode_packet
from devconsole.decoders.protocols import parse_rules
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    ConnSnapshot,
    ControlFrame,
    HandshakeEvent,
    Item,
    Message,
    Opcode,
    Snapshot,
)
from tests.factories import make_handshake

_seq = 0


def msg(conn: str, payload: bytes | str, side: str = "client", op: int | None = None) -> Message:
    global _seq
    _seq += 1
    p = payload.encode() if isinstance(payload, str) else payload
    opcode = op if op is not None else (Opcode.TEXT if isinstance(payload, str) else Opcode.BINARY)
    return Message(_seq, conn, float(_seq), side, opcode, p, len(p), len(p) + 2)  # type: ignore[arg-type]


def sio_handshake(conn: str = "c1") -> HandshakeEvent:
    return HandshakeEvent(
        make_handshake(conn, path="/socket.io/", query=[("EIO", "4"), ("transport", "websocket")])
    )


def test_handshake_detection_then_decoding_in_order() -> None:
    t = ProtocolTracker()
    seen: list[tuple[Item, Decoded]] = []
    t.listeners.append(lambda it, d: seen.append((it, d)))
    t.on_event(sio_handshake())
    assert t.protocol_of("c1") == "socket.io" and t.reason_of("c1") == "URL /socket.io/"
    placeholder = msg("c1", '451-["up",{"_placeholder":true,"num":0}]')
    blob = msg("c1", b"\x01\x02")
    t.on_event(placeholder)
    assert seen == []  # pending: not handed to listeners yet
    assert t.decoded(placeholder).pending  # type: ignore[union-attr]
    t.on_event(blob)
    assert len(seen) == 1 and seen[0][0] is blob
    joined = t.decoded(placeholder)
    assert joined is not None and joined.packets[0].fields["args"] == [b"\x01\x02"]
    assert t.decoded(blob).joined_to == placeholder.seq  # type: ignore[union-attr]


def test_sniffing_gives_up_and_control_frames_are_not_decoded() -> None:
    t = ProtocolTracker(sniff_messages=3)
    t.on_event(HandshakeEvent(make_handshake("c1")))
    for _ in range(3):
        t.on_event(msg("c1", '{"type":"chat"}'))
    late = msg("c1", '{"jsonrpc":"2.0","method":"a","id":1}')
    assert t.feed(late) is None and t.protocol_of("c1") is None
    ping = ControlFrame(99, "c1", 1.0, "client", Opcode.PING, b"", 2)
    assert t.decoded(ping) is None and t.feed(ping) is None


def test_sniffing_picks_the_protocol_on_a_plain_path() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("c1")))
    first = msg("c1", '{"jsonrpc":"2.0","method":"a","id":1}')
    t.on_event(first)
    assert t.protocol_of("c1") == "jsonrpc" and t.reason_of("c1") == "content"
    assert t.decoded(first).summary == "rpc a id=1"  # type: ignore[union-attr]


def test_url_hint_confirmed_by_content_or_not() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("g", path="/graphql")))
    t.on_event(HandshakeEvent(make_handshake("h", path="/graphql")))
    t.on_event(msg("g", '{"type":"connection_init"}'))
    t.on_event(msg("h", '{"hello":"world"}'))
    assert t.protocol_of("g") == "graphql-ws" and "confirmed by content" in t.reason_of("g")
    assert t.protocol_of("h") is None


def test_override_resets_state_and_cache() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("c1")))
    m = msg("c1", "SEND\ndestination:/a\n\nx\x00")
    t.on_event(m)
    assert t.protocol_of("c1") == "stomp"
    t.set_override("c1", "none")
    assert t.protocol_of("c1") is None and t.decoded(m) is None
    t.set_override("c1", "jsonrpc")
    d = t.decoded(m)
    assert d is not None and d.protocol == "jsonrpc" and d.error is not None  # raw, with why
    assert t.override_of("c1") == "jsonrpc" and t.reason_of("c1") == "chosen for this connection"
    t.set_override("c1", None)
    assert t.override_of("c1") is None
    with pytest.raises(ValueError, match="unknown decoder"):
        t.set_override("c1", "nope")
    assert t.decode_with(m, "stomp").ok  # type: ignore[union-attr]


def test_evicted_results_are_decoded_again_on_their_own() -> None:
    t = ProtocolTracker(max_cached=2)
    t.on_event(sio_handshake())
    items = [msg("c1", f'42["e{i}"]') for i in range(5)]
    for it in items:
        t.on_event(it)
    assert t.decoded(items[0]).packets[0].fields["event"] == "e0"  # type: ignore[union-attr]


def test_mqtt_state_spans_messages_and_encode_uses_the_version() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("m", path="/mqtt", subprotocol="mqtt")))
    connect = encode_packet({"packet": "CONNECT", "version": 5, "client_id": "a", "keepalive": 10})
    t.on_event(msg("m", connect[:5]))
    d = t.feed(msg("m", connect[5:]))
    assert d is not None and d.packets[0].fields["version"] == 5
    [(_op, raw)] = t.encode("m", {"packet": "PUBLISH", "topic": "t", "qos": 0, "payload": "x"})
    assert raw == bytes([0x30, 5, 0, 1]) + b"t" + b"\x00" + b"x"  # v5: an empty property length
    with pytest.raises(ValueError, match="no known protocol"):
        t.encode("zz", {"packet": "PINGREQ"})


def test_snapshot_and_rules() -> None:
    t = ProtocolTracker(parse_rules(["/feed=jsonrpc"]))
    hs = make_handshake("s1", path="/feed")
    t.on_event(Snapshot(0, [ConnSnapshot(hs, "open", 0, 0, 0, 0, None, "", None, None)], "p", 0))
    assert t.protocol_of("s1") == "jsonrpc" and t.handshake("s1") is hs
    t.forget("s1")
    assert t.protocol_of("s1") is None


def test_unknown_proxy_choice_is_explained() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("x", decoder="protobuf:zz.Top")))
    assert t.protocol_of("x") is None and "zz.Top" in t.reason_of("x")


def test_a_protocol_sniffed_from_one_message_that_fails_the_next_ones_is_dropped() -> None:
    """A chat app's {"type":"ping","message":1} looks like Action Cable; the messages
    that follow do not decode as Action Cable, so the connection is not read as it."""
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("c1", path="/chat")))
    t.on_event(msg("c1", '{"type":"ping","message":1}'))
    assert t.protocol_of("c1") == "actioncable"
    t.on_event(msg("c1", '{"type":"chat","text":"hi"}'))
    t.on_event(msg("c1", '{"type":"chat","text":"ho"}'))
    assert t.protocol_of("c1") is None
    assert "not actioncable" in t.reason_of("c1")
    # it is not sniffed again from the same shape
    t.on_event(msg("c1", '{"type":"ping","message":2}'))
    assert t.protocol_of("c1") is None


def test_a_sniffed_protocol_that_keeps_decoding_stays() -> None:
    t = ProtocolTracker()
    t.on_event(HandshakeEvent(make_handshake("c1")))
    for i in range(8):
        t.on_event(msg("c1", f'{{"jsonrpc":"2.0","method":"a","id":{i}}}'))
    t.on_event(msg("c1", "garbage"))
    t.on_event(msg("c1", "garbage"))
    assert t.protocol_of("c1") == "jsonrpc"  # past its probation: errors are shown raw
