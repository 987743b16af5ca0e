"""Action Cable: hand-built frames from the Action Cable protocol (as Rails sends them);
no Rails server runs here."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from devconsole.decoders.actioncable import ActionCableDecoder
from devconsole.decoders.base import decode_message
from devconsole.model import Opcode
from tests.factories import make_handshake

CABLE = ActionCableDecoder()
IDENT = json.dumps({"channel": "ChatChannel", "room": "1"})


def dec(text: str, side: str = "client") -> Any:
    return decode_message(CABLE, text.encode(), Opcode.TEXT, side, None)  # type: ignore[arg-type]


def test_subscription_pairs_and_pings_beat() -> None:
    sub = dec(json.dumps({"command": "subscribe", "identifier": IDENT}))
    assert sub.summary == "cable subscribe ChatChannel"
    assert (sub.packets[0].key, sub.packets[0].role) == (f"sub:{IDENT}", "request")
    ok = dec(json.dumps({"identifier": IDENT, "type": "confirm_subscription"}), "server")
    assert (ok.packets[0].key, ok.packets[0].role) == (f"sub:{IDENT}", "reply")
    ping = dec('{"type":"ping","message":1700000000}', "server").packets[0]
    assert ping.role == "beat" and ping.summary == "cable ping"
    speak = dec(
        json.dumps(
            {
                "command": "message",
                "identifier": IDENT,
                "data": json.dumps({"action": "speak", "text": "hi"}),
            }
        )
    )
    assert speak.summary == 'cable ChatChannel speak {"action":"speak","text":"hi"}'
    bcast = dec(json.dumps({"identifier": IDENT, "message": {"text": "hi"}}), "server")
    assert bcast.summary == 'cable ChatChannel {"text":"hi"}'
    assert dec('{"type":"welcome"}', "server").ok


def test_detection_and_errors() -> None:
    hs = make_handshake(
        path="/cable",
        request_headers=[
            ("Sec-WebSocket-Protocol", "actioncable-v1-json, actioncable-unsupported")
        ],
    )
    assert CABLE.detect(hs) == 1.0
    assert CABLE.detect(make_handshake(path="/cable")) == 0.8
    assert dec('{"command":"shout"}').error == "unknown command 'shout'"
    assert dec('{"hello":1}').error == "neither a command, a type nor a broadcast"


@given(
    st.one_of(
        st.fixed_dictionaries(
            {
                "command": st.sampled_from(["subscribe", "unsubscribe"]),
                "identifier": st.text(max_size=8),
            }
        ),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["welcome", "ping", "confirm_subscription"]),
                "message": st.integers(),
            }
        ),
        st.fixed_dictionaries(
            {
                "identifier": st.text(max_size=8),
                "message": st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            }
        ),
    )
)
def test_decode_encode_roundtrip(fields: dict[str, Any]) -> None:
    [(_op, raw)] = CABLE.encode(fields)
    assert dec(raw.decode()).packets[0].fields == fields


@given(st.binary(max_size=64))
def test_fuzzed_input_never_raises(data: bytes) -> None:
    assert decode_message(CABLE, data, Opcode.TEXT, "client", None).protocol == "actioncable"


def test_only_action_cables_own_welcome_and_ping_are_sniffed() -> None:
    d = CABLE
    assert d.sniff(b'{"type":"welcome"}', Opcode.TEXT, "server") > 0.5
    assert d.sniff(b'{"type":"welcome","sid":"abc"}', Opcode.TEXT, "server") > 0.5
    assert d.sniff(b'{"type":"ping","message":1700000000}', Opcode.TEXT, "server") > 0.5
    # a chat app's own messages of those types are not Action Cable
    for payload in (
        b'{"type":"welcome","id":42,"motd":"hi ada","online":3}',
        b'{"type":"ping","message":"hello"}',
        b'{"type":"ping","message":1,"from":"bob"}',
        b'{"type":"welcome"',
    ):
        assert d.sniff(payload, Opcode.TEXT, "server") == 0.0, payload
