"""The data model: opcodes, handshake helpers, message/control-frame properties, close codes."""

from __future__ import annotations

import pytest

from devconsole.model import (
    CLOSE_CODES,
    Connection,
    ConnState,
    ControlFrame,
    Handshake,
    Message,
    Opcode,
    close_code_meaning,
    valid_close_code,
)
from tests import factories


def make_handshake(**kw: object) -> Handshake:
    fields: dict[str, object] = dict(
        url="ws://example.com/chat?x=1", path="/chat", query=[("x", "1")], request_headers=[]
    )
    fields.update(kw)
    return factories.make_handshake(**fields)  # type: ignore[arg-type]


def test_control_opcodes_are_control_and_data_opcodes_are_not() -> None:
    assert {op for op in Opcode if op.is_control} == {Opcode.CLOSE, Opcode.PING, Opcode.PONG}
    assert not Opcode.CONTINUATION.is_control


def test_header_lookup_is_case_insensitive_and_returns_the_first_value() -> None:
    hs = make_handshake(
        request_headers=[("Origin", "https://a"), ("origin", "https://b")],
        response_headers=[("Sec-WebSocket-Accept", "abc")],
    )
    assert hs.request_header("ORIGIN") == "https://a"
    assert hs.response_header("sec-websocket-accept") == "abc"
    assert hs.request_header("cookie") is None
    assert hs.response_header("origin") is None


def test_requested_subprotocols_and_extensions_are_split_across_repeated_headers() -> None:
    hs = make_handshake(
        request_headers=[
            ("Sec-WebSocket-Protocol", "chat, superchat"),
            ("sec-websocket-protocol", " v2.json ,"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ]
    )
    assert hs.requested_subprotocols == ["chat", "superchat", "v2.json"]
    assert hs.requested_extensions == ["permessage-deflate; client_max_window_bits"]
    assert make_handshake().requested_subprotocols == []


def test_message_truncation_and_text_flag() -> None:
    m = Message(1, "c1", 1.0, "client", Opcode.TEXT, b"hello", 5, 11)
    assert not m.truncated
    assert m.is_text
    big = Message(2, "c1", 1.0, "server", Opcode.BINARY, b"x" * 10, 1000, 1010)
    assert big.truncated
    assert not big.is_text


def test_control_frame_size_is_its_payload_length() -> None:
    f = ControlFrame(1, "c1", 1.0, "server", Opcode.CLOSE, b"\x03\xe8bye", 7, 1000, "bye")
    assert f.size == 5


def test_close_code_meanings() -> None:
    assert close_code_meaning(None) == "no status code"
    assert close_code_meaning(1000) == "Normal Closure"
    assert close_code_meaning(1006) == "Abnormal Closure"
    assert "registered" in close_code_meaning(3000)
    assert "private" in close_code_meaning(4999)
    assert "reserved" in close_code_meaning(2000)
    assert close_code_meaning(999) == "invalid"
    assert close_code_meaning(5000) == "invalid"
    assert all(close_code_meaning(c) == n for c, n in CLOSE_CODES.items())


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4000, 4999])
def test_codes_a_peer_may_send(code: int) -> None:
    assert valid_close_code(code)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_codes_a_peer_must_not_send(code: int) -> None:
    assert not valid_close_code(code)


def test_conn_state_values_are_plain_strings() -> None:
    # Connection.state travels over the tap and into JSON output as a plain string.
    assert ConnState.HALF_OPEN == "half-open"
    assert str(ConnState.REFUSED) == "refused"


def test_a_connection_is_killed_by_state_or_by_the_proxy_closing_it() -> None:
    hs = make_handshake(status=101)
    assert not Connection("c1", hs).killed
    assert Connection("c1", hs, state=ConnState.KILLED).killed
    assert Connection("c1", hs, state=ConnState.CLOSING, closed_by="proxy").killed
    assert not Connection("c1", hs, state=ConnState.CLOSED, closed_by="server").killed


def test_a_kill_records_the_close_code_devconsole_sent() -> None:
    from devconsole.model import SERVER, EndEvent, HandshakeEvent, StateEvent
    from devconsole.session import Session

    s = Session()
    s.apply(HandshakeEvent(make_handshake(status=101)))
    s.apply(StateEvent("c1", 2.0, ConnState.KILLED))  # the addon sends the state first
    s.apply(ControlFrame(1, "c1", 2.0, SERVER, Opcode.CLOSE, b"\x03\xf4", 4, 1012, "", True))
    s.apply(EndEvent("c1", 2.1, clean=False, closed_by="proxy"))
    c = s.connections["c1"]
    assert c.killed and c.close_code == 1012 and c.closed_by == "proxy"
