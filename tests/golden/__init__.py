"""Golden encodings of the tap protocol and the capture-file format (version 1).

Each ``Golden`` is one Event, Command or CommandResult written out field by field, with
the exact msgpack bytes this version of devconsole produced for it. ``tests/test_wire.py``
decodes the bytes and compares every field, and checks that the encoder still produces
those bytes; ``tests/test_store_capture.py`` opens ``capture-v1.dcap`` (a capture file
holding all of them) the same way.

The rule these tests enforce (also in docs/store.md, "Format evolution"):

- the formats evolve only by **appending optional trailing fields** to a record (an
  event, a command, a handshake, a snapshot's connection) or by **new tags**;
- a field is never removed, reordered or retyped, and an appended field has a default,
  which older encodings decode to;
- so the bytes below must keep decoding to these values forever (old capture files keep
  opening), and the encoder's output, cut back to the fields listed here, must stay
  byte-identical to them.

Appending a field therefore needs no change here: the old bytes decode with the new
field at its default, and the encoder's extra trailing element is ignored by the byte
comparison. Anything else fails these tests, so a format change is a deliberate act:
bump ``wire.PROTOCOL_VERSION`` / the capture ``VERSION`` and add new golden data next to
this one (never rewrite the bytes below).

Neighbouring fields of the same type have distinct values (and each flag is true in one
fixture and false in another), so swapping two fields in an encoder or a decoder changes
what is decoded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devconsole.model import (
    AbortCommand,
    BacklogEnd,
    Breakpoint,
    BreakpointCommand,
    BreakpointsEvent,
    CloseCommand,
    CommandResult,
    ConnSnapshot,
    ControlFrame,
    DropCommand,
    EnableBreakpointCommand,
    EndEvent,
    ForwardCommand,
    GapEvent,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    InstanceEvent,
    Message,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    ReleaseCommand,
    RemoveBreakpointCommand,
    RuleEvent,
    RulesCommand,
    Shape,
    ShapeCommand,
    ShapeEvent,
    Snapshot,
    StateEvent,
)

HERE = Path(__file__).resolve().parent
CAPTURE_V1 = HERE / "capture-v1.dcap"
CAPTURE_V1_CREATED = 1700000000.0
CAPTURE_V1_PROXY = "127.0.0.1:8080, [::1]:8080"

HS_OPEN = Handshake(
    conn="7",
    ts=1700000000.25,
    client="127.0.0.1:51234",
    server="échange.example:443",
    scheme="wss",
    url="wss://échange.example/ws?q=ü&n=2",
    method="GET",
    path="/ws",
    query=[("q", "ü"), ("n", "2")],
    http_version="HTTP/1.1",
    request_headers=[
        ("Host", "échange.example"),
        ("Cookie", "a=1; b=2"),
        ("Sec-WebSocket-Protocol", "chat, v2"),
    ],
    cookies=[("a", "1"), ("b", "2")],
    status=101,
    reason="Switching Protocols",
    response_headers=[("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", "chat")],
    subprotocol="chat",
    extensions=["permessage-deflate", "x-ext"],
    ts_response=1700000000.5,
    body=b"",
    body_size=0,
    error=None,
)

HS_REFUSED = Handshake(
    conn="8",
    ts=1700000001.75,
    client="[::1]:40000",
    server="api.test:8443",
    scheme="ws",
    url="ws://api.test:8443/live?ticket=t",
    method="POST",
    path="/live",
    query=[("ticket", "t")],
    http_version="HTTP/2.0",
    request_headers=[("Upgrade", "websocket")],
    cookies=[],
    status=401,
    reason="Unauthorized",
    response_headers=[("WWW-Authenticate", 'Bearer realm="x"')],
    subprotocol=None,
    extensions=[],
    ts_response=1700000002.125,
    body=b'{"error":"no ticket"}\xff',
    body_size=4242,
    error="upstream said no",
)

HS_CONNECTING = Handshake(
    conn="9",
    ts=1700000003,  # an int timestamp is valid too
    client="127.0.0.1:1",
    server="127.0.0.1:2",
    scheme="ws",
    url="ws://127.0.0.1:2/",
    method="GET",
    path="/",
    query=[],
    http_version="HTTP/1.0",
    request_headers=[],
    cookies=[],
    status=None,
    reason="",
    response_headers=[],
    subprotocol=None,
    extensions=[],
    ts_response=None,
    body=b"",
    body_size=0,
    error=None,
)


@dataclass(frozen=True)
class Golden:
    name: str
    value: Any  # the Event / Command / CommandResult, built from explicit field values
    hex: str  # its msgpack encoding (whitespace ignored)

    @property
    def data(self) -> bytes:
        return bytes.fromhex(self.hex)


# ------------------------------------------------------------------ values

EVENT_VALUES: list[tuple[str, Any]] = [
    ("handshake", HandshakeEvent(HS_OPEN)),
    ("refused", RefusedEvent(HS_REFUSED)),
    (
        "message-text",
        Message(
            seq=11,
            conn="7",
            ts=1700000004.125,
            side="client",
            opcode=1,
            payload="héllo".encode(),
            size=6,
            wire_size=14,
            frames=2,
            compressed=True,
            rsv=4,
            utf8_ok=True,
            injected=False,
            dropped=True,
            frame_sizes=(2, 4),
        ),
    ),
    (
        "message-binary",
        Message(
            seq=12,
            conn="8",
            ts=1700000005.5,
            side="server",
            opcode=2,
            payload=b"\x00\x01\xfe\xff",
            size=1 << 40,
            wire_size=(1 << 40) + 14,
            frames=3,
            compressed=True,
            rsv=5,
            utf8_ok=False,
            injected=True,
            dropped=False,
            frame_sizes=(1, 1 << 33, 7),
        ),
    ),
    (
        "message-plain",
        Message(
            seq=13,
            conn="9",
            ts=1700000006,
            side="client",
            opcode=1,
            payload=b"{}",
            size=2,
            wire_size=8,
            frames=1,
            compressed=False,
            rsv=0,
            utf8_ok=True,
            injected=True,
            dropped=False,
            frame_sizes=(),
        ),
    ),
    (
        "ping",
        ControlFrame(
            seq=21,
            conn="7",
            ts=1700000007.25,
            side="server",
            opcode=9,
            payload=b"pi",
            wire_size=4,
            code=None,
            reason="",
            injected=True,
            dropped=False,
            error=None,
        ),
    ),
    (
        "close",
        ControlFrame(
            seq=22,
            conn="8",
            ts=1700000008.5,
            side="client",
            opcode=8,
            payload=b"\x0f\xa1bye",
            wire_size=11,
            code=4001,
            reason="bye",
            injected=False,
            dropped=True,
            error="close frame from the server was not masked",
        ),
    ),
    ("end-clean", EndEvent(conn="7", ts=1700000009.75, clean=True, closed_by="client", error=None)),
    (
        "end-killed",
        EndEvent(conn="8", ts=1700000010, clean=False, closed_by="proxy", error="reset by peer"),
    ),
    ("end-unknown", EndEvent(conn="9", ts=1700000011.5, clean=False, closed_by=None, error=None)),
    (
        "protocol-error",
        ProtocolErrorEvent(
            conn="7", ts=1700000012.25, side="server", offset=123456789, error="reserved opcode 3"
        ),
    ),
    (
        "state",
        StateEvent(conn="8", ts=1700000013.5, state="half-open", detail="forwarding nothing"),
    ),
    ("gap", GapEvent(missed=12345, reason="tap client too slow")),
    (
        "snapshot",
        Snapshot(
            seq=99,
            connections=[
                ConnSnapshot(
                    handshake=HS_OPEN,
                    state="half-open",
                    msgs_in=1,
                    msgs_out=2,
                    bytes_in=3,
                    bytes_out=4,
                    close_code=None,
                    close_reason="",
                    closed_by=None,
                    ts_end=None,
                    clean=None,
                    errors=[],
                    half_open=True,
                    largest_message=5,
                    injected=6,
                    dropped=8,
                ),
                ConnSnapshot(
                    handshake=HS_REFUSED,
                    state="closed",
                    msgs_in=10,
                    msgs_out=20,
                    bytes_in=30,
                    bytes_out=40,
                    close_code=4001,
                    close_reason="gone ☃",
                    closed_by="proxy",
                    ts_end=1700000014.5,
                    clean=True,
                    errors=["client stream at byte 3: bad", "server stream at byte 9: worse"],
                    half_open=False,
                    largest_message=50,
                    injected=60,
                    dropped=70,
                ),
                ConnSnapshot(
                    handshake=HS_CONNECTING,
                    state="connecting",
                    msgs_in=0,
                    msgs_out=0,
                    bytes_in=0,
                    bytes_out=0,
                    close_code=None,
                    close_reason="",
                    closed_by="server",
                    ts_end=1700000015,
                    clean=False,
                    errors=[],
                    half_open=False,
                    largest_message=0,
                    injected=0,
                    dropped=0,
                ),
            ],
            proxy="127.0.0.1:8080, [::1]:8080",
            evicted_messages=77,
        ),
    ),
    ("snapshot-empty", Snapshot(seq=0, connections=[], proxy="", evicted_messages=0)),
    # Added after version 1 as a new tag (20): the marker after the backlog, sent only to
    # a viewer whose hello asks for it, never in a capture file.
    ("backlog-end", BacklogEnd(seq=4242)),
]

COMMAND_VALUES: list[tuple[str, Any]] = [
    ("close", CloseCommand(conn="7", code=4000, reason="bye ☃", to="client", id=31)),
    ("close-both", CloseCommand(conn="8", code=1001, reason="", to="both", id=0)),
    ("abort-rst", AbortCommand(conn="7", rst=True, id=32)),
    ("abort", AbortCommand(conn="8", rst=False, id=33)),
    ("half-open", HalfOpenCommand(conn="7", id=34)),
    ("release", ReleaseCommand(conn="8", id=35)),
    ("inject", InjectCommand(conn="7", to="server", opcode=2, payload=b"\x00\x01\xff", id=36)),
    ("inject-ping", InjectCommand(conn="8", to="client", opcode=9, payload=b"", id=37)),
]

RESULT_VALUES: list[tuple[str, Any]] = [
    ("ok", CommandResult(id=41, ok=True, error="")),
    ("failed", CommandResult(id=2**40, ok=False, error="no such connection ☃")),
]


# ------------------------------------------------------------------ bytes (never rewrite)
EVENT_HEX: dict[str, str] = {
    "handshake": """
        92 01 dc 00 15 a1 37 cb 41 d9 54 fc 40 10 00 00 af 31 32 37 2e 30 2e 30 2e 31 3a
        35 31 32 33 34 b4 c3 a9 63 68 61 6e 67 65 2e 65 78 61 6d 70 6c 65 3a 34 34 33 a3
        77 73 73 d9 22 77 73 73 3a 2f 2f c3 a9 63 68 61 6e 67 65 2e 65 78 61 6d 70 6c 65
        2f 77 73 3f 71 3d c3 bc 26 6e 3d 32 a3 47 45 54 a3 2f 77 73 92 92 a1 71 a2 c3 bc
        92 a1 6e a1 32 a8 48 54 54 50 2f 31 2e 31 93 92 a4 48 6f 73 74 b0 c3 a9 63 68 61
        6e 67 65 2e 65 78 61 6d 70 6c 65 92 a6 43 6f 6f 6b 69 65 a8 61 3d 31 3b 20 62 3d
        32 92 b6 53 65 63 2d 57 65 62 53 6f 63 6b 65 74 2d 50 72 6f 74 6f 63 6f 6c a8 63
        68 61 74 2c 20 76 32 92 92 a1 61 a1 31 92 a1 62 a1 32 65 b3 53 77 69 74 63 68 69
        6e 67 20 50 72 6f 74 6f 63 6f 6c 73 92 92 a7 55 70 67 72 61 64 65 a9 77 65 62 73
        6f 63 6b 65 74 92 b6 53 65 63 2d 57 65 62 53 6f 63 6b 65 74 2d 50 72 6f 74 6f 63
        6f 6c a4 63 68 61 74 a4 63 68 61 74 92 b2 70 65 72 6d 65 73 73 61 67 65 2d 64 65
        66 6c 61 74 65 a5 78 2d 65 78 74 cb 41 d9 54 fc 40 20 00 00 c4 00 00 c0
    """,
    "refused": """
        92 02 dc 00 15 a1 38 cb 41 d9 54 fc 40 70 00 00 ab 5b 3a 3a 31 5d 3a 34 30 30 30
        30 ad 61 70 69 2e 74 65 73 74 3a 38 34 34 33 a2 77 73 d9 20 77 73 3a 2f 2f 61 70
        69 2e 74 65 73 74 3a 38 34 34 33 2f 6c 69 76 65 3f 74 69 63 6b 65 74 3d 74 a4 50
        4f 53 54 a5 2f 6c 69 76 65 91 92 a6 74 69 63 6b 65 74 a1 74 a8 48 54 54 50 2f 32
        2e 30 91 92 a7 55 70 67 72 61 64 65 a9 77 65 62 73 6f 63 6b 65 74 90 cd 01 91 ac
        55 6e 61 75 74 68 6f 72 69 7a 65 64 91 92 b0 57 57 57 2d 41 75 74 68 65 6e 74 69
        63 61 74 65 b0 42 65 61 72 65 72 20 72 65 61 6c 6d 3d 22 78 22 c0 90 cb 41 d9 54
        fc 40 88 00 00 c4 16 7b 22 65 72 72 6f 72 22 3a 22 6e 6f 20 74 69 63 6b 65 74 22
        7d ff cd 10 92 b0 75 70 73 74 72 65 61 6d 20 73 61 69 64 20 6e 6f
    """,
    "message-text": """
        dc 00 10 03 0b a1 37 cb 41 d9 54 fc 41 08 00 00 a6 63 6c 69 65 6e 74 01 c4 06 68
        c3 a9 6c 6c 6f 06 0e 02 c3 04 c3 c2 c3 92 02 04
    """,
    "message-binary": """
        dc 00 10 03 0c a1 38 cb 41 d9 54 fc 41 60 00 00 a6 73 65 72 76 65 72 02 c4 04 00
        01 fe ff cf 00 00 01 00 00 00 00 00 cf 00 00 01 00 00 00 00 0e 03 c3 05 c2 c3 c2
        93 01 cf 00 00 00 02 00 00 00 00 07
    """,
    "message-plain": """
        dc 00 10 03 0d a1 39 ce 65 53 f1 06 a6 63 6c 69 65 6e 74 01 c4 02 7b 7d 02 08 01
        c2 00 c3 c3 c2 90
    """,
    "ping": """
        9d 04 15 a1 37 cb 41 d9 54 fc 41 d0 00 00 a6 73 65 72 76 65 72 09 c4 02 70 69 04
        c0 a0 c3 c2 c0
    """,
    "close": """
        9d 04 16 a1 38 cb 41 d9 54 fc 42 20 00 00 a6 63 6c 69 65 6e 74 08 c4 05 0f a1 62
        79 65 0b cd 0f a1 a3 62 79 65 c2 c3 d9 2a 63 6c 6f 73 65 20 66 72 61 6d 65 20 66
        72 6f 6d 20 74 68 65 20 73 65 72 76 65 72 20 77 61 73 20 6e 6f 74 20 6d 61 73 6b
        65 64
    """,
    "end-clean": """
        96 05 a1 37 cb 41 d9 54 fc 42 70 00 00 c3 a6 63 6c 69 65 6e 74 c0
    """,
    "end-killed": """
        96 05 a1 38 ce 65 53 f1 0a c2 a5 70 72 6f 78 79 ad 72 65 73 65 74 20 62 79 20 70
        65 65 72
    """,
    "end-unknown": """
        96 05 a1 39 cb 41 d9 54 fc 42 e0 00 00 c2 c0 c0
    """,
    "protocol-error": """
        96 06 a1 37 cb 41 d9 54 fc 43 10 00 00 a6 73 65 72 76 65 72 ce 07 5b cd 15 b1 72
        65 73 65 72 76 65 64 20 6f 70 63 6f 64 65 20 33
    """,
    "state": """
        95 07 a1 38 cb 41 d9 54 fc 43 60 00 00 a9 68 61 6c 66 2d 6f 70 65 6e b2 66 6f 72
        77 61 72 64 69 6e 67 20 6e 6f 74 68 69 6e 67
    """,
    "gap": """
        93 08 cd 30 39 b3 74 61 70 20 63 6c 69 65 6e 74 20 74 6f 6f 20 73 6c 6f 77
    """,
    "snapshot": """
        95 09 63 93 dc 00 10 dc 00 15 a1 37 cb 41 d9 54 fc 40 10 00 00 af 31 32 37 2e 30
        2e 30 2e 31 3a 35 31 32 33 34 b4 c3 a9 63 68 61 6e 67 65 2e 65 78 61 6d 70 6c 65
        3a 34 34 33 a3 77 73 73 d9 22 77 73 73 3a 2f 2f c3 a9 63 68 61 6e 67 65 2e 65 78
        61 6d 70 6c 65 2f 77 73 3f 71 3d c3 bc 26 6e 3d 32 a3 47 45 54 a3 2f 77 73 92 92
        a1 71 a2 c3 bc 92 a1 6e a1 32 a8 48 54 54 50 2f 31 2e 31 93 92 a4 48 6f 73 74 b0
        c3 a9 63 68 61 6e 67 65 2e 65 78 61 6d 70 6c 65 92 a6 43 6f 6f 6b 69 65 a8 61 3d
        31 3b 20 62 3d 32 92 b6 53 65 63 2d 57 65 62 53 6f 63 6b 65 74 2d 50 72 6f 74 6f
        63 6f 6c a8 63 68 61 74 2c 20 76 32 92 92 a1 61 a1 31 92 a1 62 a1 32 65 b3 53 77
        69 74 63 68 69 6e 67 20 50 72 6f 74 6f 63 6f 6c 73 92 92 a7 55 70 67 72 61 64 65
        a9 77 65 62 73 6f 63 6b 65 74 92 b6 53 65 63 2d 57 65 62 53 6f 63 6b 65 74 2d 50
        72 6f 74 6f 63 6f 6c a4 63 68 61 74 a4 63 68 61 74 92 b2 70 65 72 6d 65 73 73 61
        67 65 2d 64 65 66 6c 61 74 65 a5 78 2d 65 78 74 cb 41 d9 54 fc 40 20 00 00 c4 00
        00 c0 a9 68 61 6c 66 2d 6f 70 65 6e 01 02 03 04 c0 a0 c0 c0 c0 90 c3 05 06 08 dc
        00 10 dc 00 15 a1 38 cb 41 d9 54 fc 40 70 00 00 ab 5b 3a 3a 31 5d 3a 34 30 30 30
        30 ad 61 70 69 2e 74 65 73 74 3a 38 34 34 33 a2 77 73 d9 20 77 73 3a 2f 2f 61 70
        69 2e 74 65 73 74 3a 38 34 34 33 2f 6c 69 76 65 3f 74 69 63 6b 65 74 3d 74 a4 50
        4f 53 54 a5 2f 6c 69 76 65 91 92 a6 74 69 63 6b 65 74 a1 74 a8 48 54 54 50 2f 32
        2e 30 91 92 a7 55 70 67 72 61 64 65 a9 77 65 62 73 6f 63 6b 65 74 90 cd 01 91 ac
        55 6e 61 75 74 68 6f 72 69 7a 65 64 91 92 b0 57 57 57 2d 41 75 74 68 65 6e 74 69
        63 61 74 65 b0 42 65 61 72 65 72 20 72 65 61 6c 6d 3d 22 78 22 c0 90 cb 41 d9 54
        fc 40 88 00 00 c4 16 7b 22 65 72 72 6f 72 22 3a 22 6e 6f 20 74 69 63 6b 65 74 22
        7d ff cd 10 92 b0 75 70 73 74 72 65 61 6d 20 73 61 69 64 20 6e 6f a6 63 6c 6f 73
        65 64 0a 14 1e 28 cd 0f a1 a8 67 6f 6e 65 20 e2 98 83 a5 70 72 6f 78 79 cb 41 d9
        54 fc 43 a0 00 00 c3 92 bc 63 6c 69 65 6e 74 20 73 74 72 65 61 6d 20 61 74 20 62
        79 74 65 20 33 3a 20 62 61 64 be 73 65 72 76 65 72 20 73 74 72 65 61 6d 20 61 74
        20 62 79 74 65 20 39 3a 20 77 6f 72 73 65 c2 32 3c 46 dc 00 10 dc 00 15 a1 39 ce
        65 53 f1 03 ab 31 32 37 2e 30 2e 30 2e 31 3a 31 ab 31 32 37 2e 30 2e 30 2e 31 3a
        32 a2 77 73 b1 77 73 3a 2f 2f 31 32 37 2e 30 2e 30 2e 31 3a 32 2f a3 47 45 54 a1
        2f 90 a8 48 54 54 50 2f 31 2e 30 90 90 c0 a0 90 c0 90 c0 c4 00 00 c0 aa 63 6f 6e
        6e 65 63 74 69 6e 67 00 00 00 00 c0 a0 a6 73 65 72 76 65 72 ce 65 53 f1 0f c2 90
        c2 00 00 00 ba 31 32 37 2e 30 2e 30 2e 31 3a 38 30 38 30 2c 20 5b 3a 3a 31 5d 3a
        38 30 38 30 4d
    """,
    "snapshot-empty": """
        95 09 00 90 a0 00
    """,
    "backlog-end": """
        92 14 cd 10 92
    """,
}

COMMAND_HEX: dict[str, str] = {
    "close": """
        96 01 a1 37 cd 0f a0 a7 62 79 65 20 e2 98 83 a6 63 6c 69 65 6e 74 1f
    """,
    "close-both": """
        96 01 a1 38 cd 03 e9 a0 a4 62 6f 74 68 00
    """,
    "abort-rst": """
        94 02 a1 37 c3 20
    """,
    "abort": """
        94 02 a1 38 c2 21
    """,
    "half-open": """
        93 03 a1 37 22
    """,
    "release": """
        93 04 a1 38 23
    """,
    "inject": """
        96 05 a1 37 a6 73 65 72 76 65 72 02 c4 03 00 01 ff 24
    """,
    "inject-ping": """
        96 05 a1 38 a6 63 6c 69 65 6e 74 09 c4 00 25
    """,
}

RESULT_HEX: dict[str, str] = {
    "ok": """
        93 29 c3 a0
    """,
    "failed": """
        93 cf 00 00 01 00 00 00 00 00 c2 b6 6e 6f 20 73 75 63 68 20 63 6f 6e 6e 65 63 74
        69 6f 6e 20 e2 98 83
    """,
}

FRAME_HEX: dict[str, str] = {
    "hello": """
        92 00 82 a7 76 65 72 73 69 6f 6e 01 a5 74 6f 6b 65 6e a3 74 30 6b
    """,
    # added after version 1: optional keys (`devconsole conns` asks for the end-of-backlog
    # marker and for the Snapshot alone), which an older proxy ignores
    "hello-backlog-end": """
        92 00 84 a7 76 65 72 73 69 6f 6e 01 a5 74 6f 6b 65 6e c0 ab 62 61 63 6b 6c 6f 67
        5f 65 6e 64 c3 a5 69 74 65 6d 73 c2
    """,
    "welcome": """
        92 01 82 a7 76 65 72 73 69 6f 6e 01 a5 70 72 6f 78 79 ae 31 32 37 2e 30 2e 30 2e
        31 3a 38 30 38 30
    """,
    "error": """
        92 02 b8 62 61 64 20 6f 72 20 6d 69 73 73 69 6e 67 20 74 61 70 20 74 6f 6b 65 6e
    """,
    "events": """
        92 03 91 93 08 cd 30 39 b3 74 61 70 20 63 6c 69 65 6e 74 20 74 6f 6f 20 73 6c 6f
        77
    """,
    "command": """
        92 04 93 03 a1 37 22
    """,
    "result": """
        92 05 93 29 c3 a0
    """,
}


# ------------------------------------------------------------------ added since
#
# Records added to version 1 by the rule (new tags, optional trailing fields), each
# deliberately, with the bytes of the devconsole that added them (never rewrite these
# either): the Redis scale-out's instance events (tag 11) and a gap's instance; the
# intercept's held items (trailing fields of messages and control frames), outcomes (tag
# 12), breakpoints (tag 13), a snapshot's breakpoints and held items, its five commands
# (tags 6-10) and a result's info. Not in capture-v1.dcap, which stays as written.

BP_A = Breakpoint(
    id=3,
    filter="from:client json:op=buy",
    conn="7",
    timeout=30.5,
    on_timeout="drop",
    control=True,
    enabled=False,
)
BP_B = Breakpoint(
    id=4, filter="ping", conn="", timeout=120, on_timeout="forward", control=False, enabled=True
)
HELD_PING = ControlFrame(
    seq=23,
    conn="9",
    ts=1700000017.25,
    side="client",
    opcode=9,
    payload=b"hb",
    wire_size=8,
    code=None,
    reason="",
    injected=False,
    dropped=False,
    error=None,
    held=6,
    breakpoint=4,
    outcome="",
)

EVENT_VALUES += [
    (
        "instance",
        InstanceEvent(name="app-1", ts=1700000021.25, state="gone", detail="no heartbeat for 10 s"),
    ),
    ("gap-instance", GapEvent(missed=678, reason="redis stream trimmed", instance="app-2")),
    (
        "message-held",
        Message(
            seq=14,
            conn="7",
            ts=1700000016.5,
            side="server",
            opcode=1,
            payload=b'{"op":"buy"}',
            size=12,
            wire_size=18,
            frames=1,
            compressed=False,
            rsv=0,
            utf8_ok=True,
            injected=False,
            dropped=False,
            frame_sizes=(),
            held=5,
            breakpoint=3,
            outcome="edited",
            edited=b'{"op":"sell"}\xff',
            edited_opcode=2,
            edited_size=70000,
        ),
    ),
    ("ping-held", HELD_PING),
    (
        "outcome-edited",
        OutcomeEvent(
            conn="7",
            ts=1700000018.75,
            seq=14,
            held=5,
            outcome="edited",
            opcode=2,
            body=b'{"op":"sell"}\xff',
            size=70000,
        ),
    ),
    (
        "outcome-timeout",
        OutcomeEvent(
            conn="9",
            ts=1700000019,
            seq=23,
            held=6,
            outcome="timeout-dropped",
            opcode=0,
            body=None,
            size=0,
        ),
    ),
    ("breakpoints", BreakpointsEvent([BP_A, BP_B])),
    ("breakpoints-none", BreakpointsEvent([])),
    (
        "snapshot-held",
        Snapshot(
            seq=24,
            connections=[],
            proxy="127.0.0.1:8080",
            evicted_messages=3,
            breakpoints=[BP_A],
            held=[HELD_PING],
        ),
    ),
]

COMMAND_VALUES += [
    (
        "breakpoint",
        BreakpointCommand(
            filter="json:op=buy", conn="7", timeout=2.5, on_timeout="drop", control=True, id=38
        ),
    ),
    (
        "breakpoint-default",
        BreakpointCommand(
            filter="from:server", conn="", timeout=120.0, on_timeout="forward", control=False, id=0
        ),
    ),
    ("remove-breakpoint", RemoveBreakpointCommand(breakpoint=3, id=39)),
    ("enable-breakpoint", EnableBreakpointCommand(breakpoint=4, enabled=False, id=40)),
    ("forward-edited", ForwardCommand(held=5, conn="7", payload=b"\x00edited", opcode=2, id=42)),
    ("forward-all", ForwardCommand(held=0, conn="", payload=None, opcode=0, id=43)),
    ("drop", DropCommand(held=6, conn="9", id=44)),
]

RESULT_VALUES += [("info", CommandResult(id=45, ok=True, error="", info="12"))]

EVENT_HEX.update(
    {
        "instance": """
        95 0b a5 61 70 70 2d 31 cb 41 d9 54 fc 45 50 00 00 a4 67 6f 6e 65 b5 6e 6f 20 68
        65 61 72 74 62 65 61 74 20 66 6f 72 20 31 30 20 73
    """,
        "gap-instance": """
        94 08 cd 02 a6 b4 72 65 64 69 73 20 73 74 72 65 61 6d 20 74 72 69 6d 6d 65 64 a5
        61 70 70 2d 32
    """,
        "message-held": """
        dc 00 16 03 0e a1 37 cb 41 d9 54 fc 44 20 00 00 a6 73 65 72 76 65 72 01 c4 0c 7b
        22 6f 70 22 3a 22 62 75 79 22 7d 0c 12 01 c2 00 c3 c2 c2 90 05 03 a6 65 64 69 74
        65 64 c4 0e 7b 22 6f 70 22 3a 22 73 65 6c 6c 22 7d ff 02 ce 00 01 11 70
    """,
        "ping-held": """
        dc 00 10 04 17 a1 39 cb 41 d9 54 fc 44 50 00 00 a6 63 6c 69 65 6e 74 09 c4 02 68
        62 08 c0 a0 c2 c2 c0 06 04 a0
    """,
        "outcome-edited": """
        99 0c a1 37 cb 41 d9 54 fc 44 b0 00 00 0e 05 a6 65 64 69 74 65 64 02 c4 0e 7b 22
        6f 70 22 3a 22 73 65 6c 6c 22 7d ff ce 00 01 11 70
    """,
        "outcome-timeout": """
        99 0c a1 39 ce 65 53 f1 13 17 06 af 74 69 6d 65 6f 75 74 2d 64 72 6f 70 70 65 64
        00 c0 00
    """,
        "breakpoints": """
        92 0d 92 97 03 b7 66 72 6f 6d 3a 63 6c 69 65 6e 74 20 6a 73 6f 6e 3a 6f 70 3d 62
        75 79 a1 37 cb 40 3e 80 00 00 00 00 00 a4 64 72 6f 70 c3 c2 97 04 a4 70 69 6e 67
        a0 78 a7 66 6f 72 77 61 72 64 c2 c3
    """,
        "breakpoints-none": """
        92 0d 90
    """,
        "snapshot-held": """
        97 09 18 90 ae 31 32 37 2e 30 2e 30 2e 31 3a 38 30 38 30 03 91 97 03 b7 66 72 6f
        6d 3a 63 6c 69 65 6e 74 20 6a 73 6f 6e 3a 6f 70 3d 62 75 79 a1 37 cb 40 3e 80 00
        00 00 00 00 a4 64 72 6f 70 c3 c2 91 dc 00 10 04 17 a1 39 cb 41 d9 54 fc 44 50 00
        00 a6 63 6c 69 65 6e 74 09 c4 02 68 62 08 c0 a0 c2 c2 c0 06 04 a0
    """,
    }
)

COMMAND_HEX.update(
    {
        "breakpoint": """
        97 06 ab 6a 73 6f 6e 3a 6f 70 3d 62 75 79 a1 37 cb 40 04 00 00 00 00 00 00 a4 64
        72 6f 70 c3 26
    """,
        "breakpoint-default": """
        97 06 ab 66 72 6f 6d 3a 73 65 72 76 65 72 a0 cb 40 5e 00 00 00 00 00 00 a7 66 6f
        72 77 61 72 64 c2 00
    """,
        "remove-breakpoint": """
        93 07 03 27
    """,
        "enable-breakpoint": """
        94 08 04 c2 28
    """,
        "forward-edited": """
        96 09 05 a1 37 c4 07 00 65 64 69 74 65 64 02 2a
    """,
        "forward-all": """
        96 09 00 a0 c0 00 2b
    """,
        "drop": """
        94 0a 06 a1 39 2c
    """,
    }
)

RESULT_HEX["info"] = """
        94 2d c3 a0 a2 31 32
"""


# Rules and network conditions (docs/rules.md, docs/shaping.md): a message and a control
# frame that a rule or a condition acted on (rule, action: a second group of optional
# trailing fields after the intercept's), rule events (tag 14), shape events (tag 15), a
# snapshot's connection with its conditions (an optional trailing field), and the shape
# (tag 11) and rules (tag 12) commands.

SHAPE_CLIENT = Shape(
    latency=0.25,
    jitter=0.125,
    rate=8000.0,
    slice=100,
    slice_delay=0.005,
    fragment=1000,
    stall=False,
    pongs="delay",
    pong_delay=0.3,
)
SHAPE_SERVER = Shape(stall=True, pongs="drop")

EVENT_VALUES += [
    (
        "message-ruled",
        Message(
            seq=16,
            conn="7",
            ts=1700000022.5,
            side="client",
            opcode=1,
            payload=b'{"type":"chat"}',
            size=15,
            wire_size=21,
            frames=1,
            compressed=False,
            rsv=0,
            utf8_ok=True,
            injected=False,
            dropped=False,
            frame_sizes=(),
            held=0,
            breakpoint=0,
            outcome="",
            edited=None,
            edited_opcode=0,
            edited_size=0,
            rule="slow chat",
            action="delay 0.3s",
        ),
    ),
    (
        "pong-ruled",
        ControlFrame(
            seq=24,
            conn="8",
            ts=1700000023.25,
            side="server",
            opcode=10,
            payload=b"hb",
            wire_size=4,
            code=None,
            reason="",
            injected=False,
            dropped=True,
            error=None,
            held=0,
            breakpoint=0,
            outcome="",
            rule="",
            action="pong dropped (shape)",
        ),
    ),
    (
        "rule",
        RuleEvent(
            conn="9",
            ts=1700000024.75,
            rule="no deflate",
            action="request",
            detail="removed permessage-deflate from the offer",
        ),
    ),
    (
        "rule-loaded",
        RuleEvent(conn="", ts=1700000025, rule="", action="loaded", detail="slow chat, mock"),
    ),
    (
        "shape",
        ShapeEvent(
            conn="7",
            ts=1700000026.5,
            shape={"client": SHAPE_CLIENT, "server": SHAPE_SERVER},
            source="rule slow chat",
        ),
    ),
    ("shape-none", ShapeEvent(conn="8", ts=1700000027, shape={}, source="cli")),
    (
        "snapshot-shaped",
        Snapshot(
            seq=25,
            connections=[
                ConnSnapshot(
                    handshake=HS_CONNECTING,
                    state="open",
                    msgs_in=2,
                    msgs_out=3,
                    bytes_in=4,
                    bytes_out=5,
                    close_code=None,
                    close_reason="",
                    closed_by=None,
                    ts_end=None,
                    clean=None,
                    errors=[],
                    half_open=False,
                    largest_message=6,
                    injected=7,
                    dropped=8,
                    shape={"server": SHAPE_SERVER},
                )
            ],
            proxy="127.0.0.1:8080",
            evicted_messages=9,
        ),
    ),
]

COMMAND_VALUES += [
    (
        "shape",
        ShapeCommand(conn="7", to="client", shape=SHAPE_CLIENT, clear=False, path="", id=46),
    ),
    (
        "shape-clear-path",
        ShapeCommand(conn="", to="both", shape=Shape(), clear=True, path="/feed*", id=47),
    ),
    ("rules", RulesCommand(text='[[rule]]\nname = "x"\n', path="rules.toml", id=48)),
    ("rules-clear", RulesCommand(text="", path="", id=49)),
]

EVENT_HEX.update(
    {
        "message-ruled": """
        dc 00 18 03 10 a1 37 cb 41 d9 54 fc 45 a0 00 00 a6 63 6c 69 65 6e 74 01 c4 0f 7b
        22 74 79 70 65 22 3a 22 63 68 61 74 22 7d 0f 15 01 c2 00 c3 c2 c2 90 00 00 a0 c0
        00 00 a9 73 6c 6f 77 20 63 68 61 74 aa 64 65 6c 61 79 20 30 2e 33 73
    """,
        "pong-ruled": """
        dc 00 12 04 18 a1 38 cb 41 d9 54 fc 45 d0 00 00 a6 73 65 72 76 65 72 0a c4 02 68
        62 04 c0 a0 c2 c3 c0 00 00 a0 a0 b4 70 6f 6e 67 20 64 72 6f 70 70 65 64 20 28 73
        68 61 70 65 29
    """,
        "rule": """
        96 0e a1 39 cb 41 d9 54 fc 46 30 00 00 aa 6e 6f 20 64 65 66 6c 61 74 65 a7 72 65
        71 75 65 73 74 d9 29 72 65 6d 6f 76 65 64 20 70 65 72 6d 65 73 73 61 67 65 2d 64
        65 66 6c 61 74 65 20 66 72 6f 6d 20 74 68 65 20 6f 66 66 65 72
    """,
        "rule-loaded": """
        96 0e a0 ce 65 53 f1 19 a0 a6 6c 6f 61 64 65 64 af 73 6c 6f 77 20 63 68 61 74 2c
        20 6d 6f 63 6b
    """,
        "shape": """
        95 0f a1 37 cb 41 d9 54 fc 46 a0 00 00 92 92 a6 63 6c 69 65 6e 74 99 cb 3f d0 00
        00 00 00 00 00 cb 3f c0 00 00 00 00 00 00 cb 40 bf 40 00 00 00 00 00 64 cb 3f 74
        7a e1 47 ae 14 7b cd 03 e8 c2 a5 64 65 6c 61 79 cb 3f d3 33 33 33 33 33 33 92 a6
        73 65 72 76 65 72 99 cb 00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00 00 00 cb 00
        00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00 00 00 00 c3 a4 64 72 6f 70 cb 00 00
        00 00 00 00 00 00 ae 72 75 6c 65 20 73 6c 6f 77 20 63 68 61 74
    """,
        "shape-none": """
        95 0f a1 38 ce 65 53 f1 1b 90 a3 63 6c 69
    """,
        "snapshot-shaped": """
        95 09 19 91 dc 00 11 dc 00 15 a1 39 ce 65 53 f1 03 ab 31 32 37 2e 30 2e 30 2e 31
        3a 31 ab 31 32 37 2e 30 2e 30 2e 31 3a 32 a2 77 73 b1 77 73 3a 2f 2f 31 32 37 2e
        30 2e 30 2e 31 3a 32 2f a3 47 45 54 a1 2f 90 a8 48 54 54 50 2f 31 2e 30 90 90 c0
        a0 90 c0 90 c0 c4 00 00 c0 a4 6f 70 65 6e 02 03 04 05 c0 a0 c0 c0 c0 90 c2 06 07
        08 91 92 a6 73 65 72 76 65 72 99 cb 00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00
        00 00 cb 00 00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00 00 00 00 c3 a4 64 72 6f
        70 cb 00 00 00 00 00 00 00 00 ae 31 32 37 2e 30 2e 30 2e 31 3a 38 30 38 30 09
    """,
    }
)

COMMAND_HEX.update(
    {
        "shape": """
        97 0b a1 37 a6 63 6c 69 65 6e 74 99 cb 3f d0 00 00 00 00 00 00 cb 3f c0 00 00 00
        00 00 00 cb 40 bf 40 00 00 00 00 00 64 cb 3f 74 7a e1 47 ae 14 7b cd 03 e8 c2 a5
        64 65 6c 61 79 cb 3f d3 33 33 33 33 33 33 c2 a0 2e
    """,
        "shape-clear-path": """
        97 0b a0 a4 62 6f 74 68 99 cb 00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00 00 00
        cb 00 00 00 00 00 00 00 00 00 cb 00 00 00 00 00 00 00 00 00 c2 a0 cb 00 00 00 00
        00 00 00 00 c3 a6 2f 66 65 65 64 2a 2f
    """,
        "rules": """
        94 0c b4 5b 5b 72 75 6c 65 5d 5d 0a 6e 61 6d 65 20 3d 20 22 78 22 0a aa 72 75 6c
        65 73 2e 74 6f 6d 6c 30
    """,
        "rules-clear": """
        94 0c a0 a0 31
    """,
    }
)

EVENTS = [Golden(name, value, EVENT_HEX[name]) for name, value in EVENT_VALUES]
COMMANDS = [Golden(name, value, COMMAND_HEX[name]) for name, value in COMMAND_VALUES]
RESULTS = [Golden(name, value, RESULT_HEX[name]) for name, value in RESULT_VALUES]

# what capture-v1.dcap holds after its header, in order: a recording starts with a Snapshot
CAPTURE_V1_EVENTS = [
    "snapshot",
    "handshake",
    "refused",
    "message-text",
    "message-binary",
    "message-plain",
    "ping",
    "close",
    "protocol-error",
    "state",
    "gap",
    "end-clean",
    "end-killed",
    "end-unknown",
    "snapshot-empty",
]


def record_fields(value: Any) -> list[tuple[str, Any]]:
    """(name, value) of each field of a dataclass, in declaration (= wire) order."""
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


def assert_same_fields(got: Any, want: Any, path: str = "") -> None:
    """``got == want``, compared field by field (recursing into nested records and lists
    of records), so a failure names the field: ``Snapshot.connections[1].injected``."""
    where = path or type(want).__name__
    assert type(got) is type(want), f"{where}: got a {type(got).__name__}"
    if dataclasses.is_dataclass(want):
        for name, value in record_fields(want):
            assert_same_fields(getattr(got, name), value, f"{where}.{name}")
    elif isinstance(want, list) and want and dataclasses.is_dataclass(want[0]):
        assert len(got) == len(want), f"{where}: {len(got)} records, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_fields(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: got {got!r}, want {want!r}"


def trim_like(encoded: Any, golden: Any) -> Any:
    """``encoded`` cut back to the shape of ``golden``: every list (a record, or a list of
    records) to the golden's length, recursively. What remains must equal the golden
    exactly; what was cut are fields appended since (optional by the rule above)."""
    if isinstance(encoded, list | tuple) and isinstance(golden, list | tuple):
        return [trim_like(e, g) for e, g in zip(encoded, golden, strict=False)]
    return encoded
