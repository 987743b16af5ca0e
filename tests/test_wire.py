"""The tap codec: round trips of every Event and Command, incremental decoding, and
property tests that malformed input only ever raises WireError."""

from __future__ import annotations

import dataclasses
import tracemalloc
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devconsole import wire
from devconsole.model import (
    AbortCommand,
    Breakpoint,
    BreakpointCommand,
    BreakpointsEvent,
    CloseCommand,
    Command,
    CommandResult,
    ConnSnapshot,
    ConnState,
    ControlFrame,
    DropCommand,
    EnableBreakpointCommand,
    EndEvent,
    Event,
    ForwardCommand,
    GapEvent,
    HalfOpenCommand,
    Handshake,
    HandshakeEvent,
    InjectCommand,
    Message,
    Opcode,
    OutcomeEvent,
    ProtocolErrorEvent,
    RefusedEvent,
    ReleaseCommand,
    RemoveBreakpointCommand,
    Snapshot,
    StateEvent,
)
from tests import golden
from tests.factories import make_handshake

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def handshake(conn: str = "c1", **kw: Any) -> Handshake:
    fields: dict[str, Any] = dict(
        ts=1700000000.25,
        client="127.0.0.1:51234",
        server="échange.example:443",
        scheme="wss",
        url="wss://échange.example/ws?q=ü",
        method="GET",
        path="/ws",
        query=[("q", "ü"), ("q", "2")],
        http_version="HTTP/1.1",
        request_headers=[
            ("Host", "échange.example"),
            ("X-Emoji", "😀 ☃"),
            ("Sec-WebSocket-Protocol", "chat, v2"),
            ("Cookie", "a=1; b=2"),
        ],
        cookies=[("a", "1"), ("b", "2")],
        status=101,
        reason="Switching Protocols",
        response_headers=[("Upgrade", "websocket"), ("Sec-WebSocket-Protocol", "chat")],
        subprotocol="chat",
        extensions=["permessage-deflate"],
        ts_response=1700000000.5,
        body=b"",
        body_size=0,
        error=None,
    )
    fields.update(kw)
    return make_handshake(conn, **fields)


REFUSED = handshake(
    "r1",
    status=401,
    reason="Unauthorized",
    response_headers=[("WWW-Authenticate", 'Bearer realm="x"')],
    subprotocol=None,
    extensions=[],
    ts_response=None,
    body=b"\x00\xffnot utf-8 \xc3",
    body_size=10_000,
    error="upstream said no",
)

EVENTS: list[Event] = [
    HandshakeEvent(handshake()),
    RefusedEvent(REFUSED),
    Message(1, "c1", 1.5, "client", Opcode.TEXT, "héllo".encode(), 6, 12),
    Message(
        2,
        "c1",
        2.5,
        "server",
        Opcode.BINARY,
        bytes(range(256)) * 4,
        1 << 40,
        (1 << 40) + 14,
        frames=3,
        compressed=True,
        rsv=4,
        utf8_ok=False,
        injected=True,
        dropped=False,
        frame_sizes=(1, 2, 1 << 33),
    ),
    # every flag is true in one message and false in another, in a different pattern for
    # each flag, so that swapping any two of them changes what is decoded
    Message(
        6,
        "c2",
        2.75,
        "client",
        Opcode.TEXT,
        b"{}",
        2,
        9,
        frames=4,
        compressed=True,
        rsv=4,
        dropped=True,
    ),
    ControlFrame(3, "c1", 3.0, "server", Opcode.PING, b"", 2),
    ControlFrame(
        4, "c1", 4.0, "client", Opcode.CLOSE, b"\x03\xe8bye", 7, 1000, "bye", True, False, "bad"
    ),
    ControlFrame(7, "c2", 4.5, "server", Opcode.PONG, b"po", 4, None, "", False, True, None),
    ControlFrame(5, "c1", 5.0, "client", Opcode.CLOSE, b"", 2, None, ""),
    EndEvent("c1", 6.0, True, "client"),
    EndEvent("c1", 6, False, "proxy", "reset by peer"),
    EndEvent("c1", 6.0, False, None, None),
    ProtocolErrorEvent("c1", 7.0, "server", 123456789, "reserved opcode 0x3"),
    StateEvent("c1", 8.0, ConnState.HALF_OPEN, "by user"),
    StateEvent("c1", 8.0, "open"),
    GapEvent(12345, "tap client too slow"),
    Snapshot(
        99,
        [
            ConnSnapshot(
                handshake(),
                ConnState.OPEN,
                1,
                2,
                3,
                4,
                None,
                "",
                None,
                None,
                None,
                [],
                True,
                5,
                6,
                8,
            ),
            ConnSnapshot(
                REFUSED,
                ConnState.CLOSED,
                10,
                20,
                30,
                40,
                4001,
                "gone ☃",
                "proxy",
                9.5,
                True,
                ["client stream at byte 3: bad"],
                False,
                50,
                60,
                70,
            ),
        ],
        "127.0.0.1:8080, [::1]:8080",
        7,
    ),
    Snapshot(0, [], "", 0),
]

COMMANDS: list[Command] = [
    CloseCommand("c1", 4000, "bye ☃", "client", 7),
    CloseCommand("c1", 1000),
    AbortCommand("c1", True, 8),
    AbortCommand("c2"),
    HalfOpenCommand("c1", 9),
    ReleaseCommand("c1", 10),
    InjectCommand("c1", "server", Opcode.BINARY, b"\x00\x01\xff", 11),
    InjectCommand("c1", "client", Opcode.PING, b"", 0),
    BreakpointCommand("json:op=buy", "c7", 2.5, "drop", True, 12),
    BreakpointCommand("x"),
    RemoveBreakpointCommand(3, 13),
    EnableBreakpointCommand(4, False, 14),
    ForwardCommand(5, "c8", b"\x00edited", Opcode.BINARY, 15),
    ForwardCommand(0, "", None, 0, 16),
    DropCommand(6, "c9", 17),
]

BP1 = Breakpoint(1, "from:client json:a.b=1", "c3", 30.5, "drop", True, False)
BP2 = Breakpoint(2, "ping", "", 120, "forward", False, True)
HELD_MSG = Message(
    41, "c2", 41.5, "client", Opcode.TEXT, b"held", 4, 10,
    held=7, breakpoint=2, outcome="edited", edited=b"\xffnew", edited_opcode=2, edited_size=9,
)  # fmt: skip
HELD_CTL = ControlFrame(
    42, "c2", 42.5, "server", Opcode.PING, b"p", 3, held=8, breakpoint=1, outcome=""
)
# The intercept additions: new events, and optional trailing fields on old ones. Every
# field has its own value, so a swap of two fields cannot go unnoticed.
INTERCEPT_EVENTS: list[Event] = [
    HELD_MSG,
    HELD_CTL,
    OutcomeEvent("c2", 50.5, 41, 7, "edited", Opcode.BINARY, b"\xffnew", 9),
    OutcomeEvent("c2", 51.5, 42, 8, "dropped"),
    BreakpointsEvent([BP1, BP2]),
    BreakpointsEvent([]),
    Snapshot(60, [], "p", 3, [BP1], [HELD_MSG, HELD_CTL]),
]


def through_the_wire(kind: int, body: Any) -> Any:
    d = wire.Decoder()
    d.feed(wire.pack(kind, body))
    frames = list(d.frames())
    assert len(frames) == 1 and frames[0][0] == kind
    return frames[0][1]


@pytest.mark.parametrize("ev", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(ev: Event) -> None:
    got = wire.decode_event(through_the_wire(wire.EVENTS, wire.encode_event(ev)))
    assert type(got) is type(ev)
    assert got == ev


def test_a_batch_of_events_round_trips() -> None:
    d = wire.Decoder()
    d.feed(wire.pack_events(EVENTS))
    [(kind, body)] = list(d.frames())
    assert kind == wire.EVENTS
    assert wire.decode_events(body) == EVENTS


def test_decoded_fields_have_the_model_types() -> None:
    got = wire.decode_event(through_the_wire(wire.EVENTS, wire.encode_event(EVENTS[3])))
    assert isinstance(got, Message)
    assert isinstance(got.frame_sizes, tuple)
    assert isinstance(got.payload, bytes)
    snap = wire.decode_event(through_the_wire(wire.EVENTS, wire.encode_event(EVENTS[-2])))
    assert isinstance(snap, Snapshot)
    hs = snap.connections[0].handshake
    assert all(isinstance(p, tuple) for p in hs.request_headers)
    assert hs.request_header("x-emoji") == "😀 ☃"


@pytest.mark.parametrize("ev", INTERCEPT_EVENTS, ids=lambda e: type(e).__name__)
def test_intercept_events_round_trip(ev: Event) -> None:
    got = wire.decode_event(through_the_wire(wire.EVENTS, wire.encode_event(ev)))
    assert type(got) is type(ev)
    assert got == ev


def test_intercept_encodings_are_these_bytes() -> None:
    """Golden: the intercept fields on the wire (and in capture files), deliberately."""
    assert wire.encode_event(HELD_MSG) == [
        3, 41, "c2", 41.5, "client", 1, b"held", 4, 10, 1, False, 0, True, False, False, (),
        7, 2, "edited", b"\xffnew", 2, 9,
    ]  # fmt: skip
    assert wire.encode_event(HELD_CTL) == [
        4, 42, "c2", 42.5, "server", 9, b"p", 3, None, "", False, False, None, 8, 1, "",
    ]  # fmt: skip
    assert msgpack.packb(wire.encode_event(INTERCEPT_EVENTS[2])) == bytes.fromhex(
        # [12, "c2", 50.5, 41, 7, "edited", 2, b"\xffnew", 9]: tags 10 and 11 are the
        # scale-out's (Publication, InstanceEvent)
        "990ca26332cb40494000000000002907a665646974656402c404ff6e657709"
    )
    assert wire.encode_event(INTERCEPT_EVENTS[4]) == [
        13,
        [
            [1, "from:client json:a.b=1", "c3", 30.5, "drop", True, False],
            [2, "ping", "", 120, "forward", False, True],
        ],
    ]
    snap = wire.encode_event(INTERCEPT_EVENTS[6])
    assert snap[:5] == [9, 60, [], "p", 3] and len(snap) == 7
    assert snap[5] == [wire.encode_event(INTERCEPT_EVENTS[4])[1][0]]
    # a message that was never held keeps the old encoding, byte for byte
    assert len(wire.encode_event(EVENTS[2])) == 16
    assert wire.encode_command(COMMANDS[-7]) == [6, "json:op=buy", "c7", 2.5, "drop", True, 12]
    assert wire.encode_command(COMMANDS[-3]) == [9, 5, "c8", b"\x00edited", 2, 15]
    assert wire.encode_command(COMMANDS[-1]) == [10, 6, "c9", 17]
    assert wire.encode_result(CommandResult(3, True, "", "12")) == [3, True, "", "12"]
    assert wire.encode_result(CommandResult(3, True)) == [3, True, ""]


def test_a_held_message_with_a_bad_trailing_field_is_rejected() -> None:
    obj = wire.encode_event(HELD_MSG)
    for i, bad in ((16, "7"), (18, 3), (19, "bytes"), (21, None)):
        broken = list(obj)
        broken[i] = bad
        with pytest.raises(wire.WireError):
            wire.decode_event(broken)
    with pytest.raises(wire.WireError):
        wire.decode_event(obj[:-1])  # neither the old length nor the new one


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(cmd: Command) -> None:
    got = wire.decode_command(through_the_wire(wire.COMMAND, wire.encode_command(cmd)))
    assert type(got) is type(cmd)
    assert got == cmd


@pytest.mark.parametrize(
    "res",
    [
        CommandResult(1, True),
        CommandResult(2**40, False, "no such connection ☃"),
        CommandResult(5, True, "", "17"),
    ],
)
def test_command_result_round_trips(res: CommandResult) -> None:
    assert wire.decode_result(through_the_wire(wire.RESULT, wire.encode_result(res))) == res


def test_encoding_something_else_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        wire.encode_event(CloseCommand("c1", 1000))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        wire.encode_command(GapEvent(1, "x"))  # type: ignore[arg-type]


def stream_bytes() -> tuple[bytes, list[tuple[int, Any]]]:
    frames: list[tuple[int, Any]] = [
        (wire.WELCOME, {"version": 1, "proxy": "127.0.0.1:8080"}),
        (wire.EVENTS, [wire.encode_event(e) for e in EVENTS]),
        (wire.RESULT, wire.encode_result(CommandResult(3, False, "nope"))),
        (wire.ERROR, "bad token"),
    ]
    return b"".join(wire.pack(k, b) for k, b in frames), frames


def test_decoder_split_at_every_byte() -> None:
    data, _ = stream_bytes()
    d0 = wire.Decoder()
    d0.feed(data)
    expected = list(d0.frames())
    assert [k for k, _ in expected] == [wire.WELCOME, wire.EVENTS, wire.RESULT, wire.ERROR]
    for cut in range(len(data) + 1):
        d = wire.Decoder()
        d.feed(data[:cut])
        got = list(d.frames())
        d.feed(data[cut:])
        got += list(d.frames())
        assert got == expected, cut


def test_decoder_fed_one_byte_at_a_time() -> None:
    data, _ = stream_bytes()
    d = wire.Decoder()
    got: list[tuple[int, Any]] = []
    for i in range(len(data)):
        d.feed(data[i : i + 1])
        got.extend(d.frames())
    assert [k for k, _ in got] == [wire.WELCOME, wire.EVENTS, wire.RESULT, wire.ERROR]
    assert wire.decode_events(got[1][1]) == EVENTS


@pytest.mark.parametrize(
    "obj",
    [
        [1],  # no body
        [1, 2, 3],
        {"kind": 1},
        "text",
        [True, {}],  # a bool is not a kind
        [None, 1],
    ],
)
def test_decoder_rejects_frames_that_are_not_kind_body_pairs(obj: Any) -> None:
    d = wire.Decoder()
    d.feed(msgpack.packb(obj))
    with pytest.raises(wire.WireError):
        list(d.frames())


def test_decoder_rejects_an_object_larger_than_its_limit() -> None:
    d = wire.Decoder(max_object=1000)
    with pytest.raises(wire.WireError, match="too large"):
        d.feed(wire.pack(wire.EVENTS, [b"x" * 5000]))


def test_a_tiny_container_header_does_not_allocate_a_huge_list() -> None:
    # array32 header claiming 2**28-1 elements: 5 bytes that must not cost 2 GiB
    tracemalloc.start()
    try:
        d = wire.Decoder()
        with pytest.raises(wire.WireError):
            d.feed(b"\xdd\x0f\xff\xff\xff")
            list(d.frames())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_msgpack_extension_types_are_malformed() -> None:
    # ExtType is a 2-tuple: it must not pass for a list field
    d = wire.Decoder()
    d.feed(msgpack.packb([wire.EVENTS, [msgpack.ExtType(3, b"ab")]]))
    with pytest.raises(wire.WireError):
        list(d.frames())


def valid_message_fields() -> list[Any]:
    return wire.encode_event(EVENTS[2])


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (1, True),  # seq as bool
        (1, "1"),
        (2, 5),  # conn as int
        (3, "yesterday"),  # ts
        (4, "both"),  # side
        (6, "text"),  # payload as str
        (7, None),
        (15, ["1"]),  # frame sizes
        (15, [True]),
    ],
)
def test_message_with_a_bad_field_is_rejected(index: int, value: Any) -> None:
    obj = valid_message_fields()
    obj[index] = value
    with pytest.raises(wire.WireError):
        wire.decode_event(obj)


@pytest.mark.parametrize(
    "obj",
    [
        [],
        None,
        42,
        [True, "c1"],  # bool tag
        [999, "x"],  # unknown tag
        [wire.T_MESSAGE],  # missing fields
        [*wire.encode_event(EVENTS[2]), 1],  # extra field
        [wire.T_HANDSHAKE],
        [wire.T_HANDSHAKE, "not a list"],
        [wire.T_HANDSHAKE, wire.encode_event(EVENTS[0])[1][:-1]],
        [wire.T_END, "c1", 1.0, True, "nobody", None],
        [wire.T_PERROR, "c1", 1.0, "up", 1, "x"],
        [wire.T_CONTROL, 1, "c1", 1.0, "sideways", 8, b"", 2, None, "", False, False, None],
        [wire.T_SNAPSHOT, 1, ["not a conn"], "", 0],
        [wire.T_SNAPSHOT, 1, [], "", True],
    ],
)
def test_malformed_events_raise_wire_error(obj: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_event(obj)


def test_handshake_with_bad_header_pairs_is_rejected() -> None:
    enc = wire.encode_event(EVENTS[0])
    for bad in ([["a"]], [["a", 1]], [[1, "b"]], ["ab"], [["a", "b", "c"]]):
        obj = [enc[0], list(enc[1])]
        obj[1][10] = bad
        with pytest.raises(wire.WireError):
            wire.decode_event(obj)
    obj = [enc[0], list(enc[1])]
    obj[1][16] = ["ok", 3]  # extensions
    with pytest.raises(wire.WireError):
        wire.decode_event(obj)


@pytest.mark.parametrize(
    "obj",
    [
        [wire.C_CLOSE, "c1", 1000, "", "nobody", 1],
        [wire.C_CLOSE, "c1", "1000", "", "both", 1],
        [wire.C_ABORT, "c1", 1, 1],  # rst must be a bool
        [wire.C_HALF_OPEN, "c1"],
        [wire.C_RELEASE, "c1", True],  # id as bool
        [wire.C_INJECT, "c1", "both", 1, b"", 1],
        [wire.C_INJECT, "c1", "server", 1, "text", 1],
        [99, "c1", 1],
        [True, "c1", 1],
        "close",
        [],
    ],
)
def test_malformed_commands_raise_wire_error(obj: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_command(obj)


@pytest.mark.parametrize("obj", [None, [1, True], [1, True, "x", 4], ["1", True, ""], {}])
def test_malformed_results_raise_wire_error(obj: Any) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_result(obj)


def test_decode_events_wants_a_list() -> None:
    with pytest.raises(wire.WireError):
        wire.decode_events({"a": 1})
    with pytest.raises(wire.WireError):
        wire.decode_events([wire.encode_event(EVENTS[2]), "junk"])


def test_fields_of_lists_dataclass_fields_in_wire_order() -> None:
    assert wire.fields_of(GapEvent) == ["missed", "reason", "instance"]
    # the intercept fields are optional trailing ones: encoded only for a held item
    # and the rules fields (rule, action) a second group after them
    held_msg = dataclasses.replace(EVENTS[2], held=3, breakpoint=1)
    held_ctl = dataclasses.replace(EVENTS[5], held=4, breakpoint=1)
    assert len(wire.fields_of(Message)) - 2 == len(wire.encode_event(held_msg)) - 1
    assert len(wire.fields_of(ControlFrame)) - 2 == len(wire.encode_event(held_ctl)) - 1
    ruled_msg = dataclasses.replace(EVENTS[2], rule="r", action="delay 1s")
    ruled_ctl = dataclasses.replace(EVENTS[5], action="pong dropped (shape)")
    assert len(wire.fields_of(Message)) == len(wire.encode_event(ruled_msg)) - 1
    assert len(wire.fields_of(ControlFrame)) == len(wire.encode_event(ruled_ctl)) - 1
    assert wire.decode_event(wire.encode_event(ruled_msg)) == ruled_msg
    assert wire.decode_event(wire.encode_event(ruled_ctl)) == ruled_ctl
    assert len(wire.encode_event(EVENTS[2])) == len(wire.fields_of(Message)) - 8 + 1
    assert len(wire.encode_event(EVENTS[5])) == len(wire.fields_of(ControlFrame)) - 5 + 1
    # source and unknown are written only for imported connections, decoder only when set
    assert len(wire.fields_of(Handshake)) == len(wire.encode_event(EVENTS[0])[1]) + 3


def test_an_imported_handshake_keeps_its_source_and_unknowns() -> None:
    hs = dataclasses.replace(
        EVENTS[0].handshake,  # type: ignore[union-attr]
        source="har:chrome",
        unknown=["control frames", "close code"],
    )
    enc = wire.encode_event(HandshakeEvent(hs))
    assert len(enc[1]) == len(wire.fields_of(Handshake)) - 1  # no decoder: not written
    back = wire.decode_event(msgpack.unpackb(msgpack.packb(enc), raw=False))
    assert back == HandshakeEvent(hs)
    # a live handshake keeps the 21 fields older devconsoles read, and decodes with defaults
    live = wire.encode_event(EVENTS[0])
    assert len(live[1]) == 21
    dec = wire.decode_event(live)
    assert dec.handshake.source == "" and dec.handshake.unknown == []  # type: ignore[union-attr]
    with pytest.raises(wire.WireError):
        wire.decode_event([live[0], [*live[1], "har:x", ["a"], "socket.io", "extra"]])
    with pytest.raises(wire.WireError):
        wire.decode_event([live[0], [*live[1], "har:x", [1]]])


# ------------------------------------------------------------------ property tests


def decode_all_ways(body: Any) -> None:
    """Every decoder a tap peer might apply to a frame body: only WireError may escape."""
    for decode in (wire.decode_events, wire.decode_event, wire.decode_command, wire.decode_result):
        try:
            decode(body)
        except wire.WireError:
            pass


@FAST
@given(st.binary(max_size=2000), st.integers(1, 50))
def test_arbitrary_bytes_only_ever_raise_wire_error(data: bytes, step: int) -> None:
    d = wire.Decoder(max_object=1 << 20)
    try:
        for i in range(0, len(data), step):
            d.feed(data[i : i + step])
            for _kind, body in d.frames():
                decode_all_ways(body)
    except wire.WireError:
        pass


@FAST
@given(st.binary(max_size=300))
def test_valid_stream_with_corrupted_tail_only_ever_raises_wire_error(tail: bytes) -> None:
    data, _ = stream_bytes()
    d = wire.Decoder()
    try:
        d.feed(data[: len(data) // 2] + tail)
        for _kind, body in d.frames():
            decode_all_ways(body)
    except wire.WireError:
        pass


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
msgpackable = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@FAST
@given(msgpackable)
def test_arbitrary_structures_only_ever_raise_wire_error(obj: Any) -> None:
    for decode in (wire.decode_event, wire.decode_command):
        try:
            got = decode(obj)
        except wire.WireError:
            continue
        # whatever decodes must re-encode to the same thing
        enc = wire.encode_event(got) if decode is wire.decode_event else wire.encode_command(got)  # type: ignore[arg-type]
        assert decode(enc) == got
    decode_all_ways(obj)
    # and the same through the framing
    d = wire.Decoder()
    d.feed(msgpack.packb([wire.EVENTS, obj], use_bin_type=True))
    for _kind, body in d.frames():
        decode_all_ways(body)


@FAST
@given(st.integers(0, 40), msgpackable, st.sampled_from(range(len(EVENTS) + len(COMMANDS))))
def test_valid_objects_with_one_field_replaced_only_ever_raise_wire_error(
    index: int, value: Any, which: int
) -> None:
    # tags with plausible arity reach far deeper into the decoders than random data
    if which < len(EVENTS):
        obj = wire.encode_event(EVENTS[which])
        decode: Any = wire.decode_event
    else:
        obj = wire.encode_command(COMMANDS[which - len(EVENTS)])
        decode = wire.decode_command
    obj = msgpack.unpackb(msgpack.packb(obj, use_bin_type=True), raw=False)
    targets: list[list[Any]] = [obj]
    for f in obj:
        if isinstance(f, list) and f:
            targets.append(f)
            targets.extend(x for x in f if isinstance(x, list) and x)
    target = targets[index % len(targets)]
    target[index % len(target)] = value
    try:
        decode(obj)
    except wire.WireError:
        pass


messages = st.builds(
    Message,
    seq=st.integers(0, 2**63 - 1),
    conn=st.text(max_size=40),
    ts=st.floats(allow_nan=False),
    side=st.sampled_from(["client", "server"]),
    opcode=st.sampled_from([Opcode.TEXT, Opcode.BINARY, 3, 0xF]),
    payload=st.binary(max_size=500),
    size=st.integers(0, 2**64 - 1),
    wire_size=st.integers(0, 2**64 - 1),
    frames=st.integers(1, 10**6),
    compressed=st.booleans(),
    rsv=st.integers(0, 7),
    utf8_ok=st.booleans(),
    injected=st.booleans(),
    dropped=st.booleans(),
    frame_sizes=st.lists(st.integers(0, 2**63), max_size=10).map(tuple),
)


@FAST
@given(st.lists(messages, min_size=1, max_size=5))
def test_generated_messages_round_trip(msgs: list[Message]) -> None:
    d = wire.Decoder()
    d.feed(wire.pack_events(list(msgs)))
    [(kind, body)] = list(d.frames())
    assert kind == wire.EVENTS
    assert wire.decode_events(body) == msgs


# ------------------------------------------------------------------ golden encodings
#
# The tap format evolves only by appending optional trailing fields to a record (older
# encodings decode with the new field at its default) or by new tags; a field is never
# removed, reordered or retyped (docs/store.md, "Format evolution"). tests/golden holds
# the bytes of version 1: they must keep decoding, field by field, to the same values,
# and the encoder's output cut back to those fields must stay byte-identical. So
# appending a field needs no change here, and any other change fails.


@pytest.mark.parametrize("g", golden.EVENTS, ids=lambda g: g.name)
def test_golden_event_bytes_decode_field_by_field(g: golden.Golden) -> None:
    got = wire.decode_event(msgpack.unpackb(g.data, raw=False))
    golden.assert_same_fields(got, g.value)


@pytest.mark.parametrize("g", golden.EVENTS, ids=lambda g: g.name)
def test_golden_event_encoding_is_unchanged(g: golden.Golden) -> None:
    encoded = wire.encode_event(g.value)
    kept = golden.trim_like(encoded, msgpack.unpackb(g.data, raw=False))
    assert msgpack.packb(kept, use_bin_type=True).hex(" ") == g.data.hex(" ")
    golden.assert_same_fields(wire.decode_event(encoded), g.value)


@pytest.mark.parametrize("g", golden.COMMANDS, ids=lambda g: g.name)
def test_golden_command_bytes_decode_field_by_field(g: golden.Golden) -> None:
    got = wire.decode_command(msgpack.unpackb(g.data, raw=False))
    golden.assert_same_fields(got, g.value)


@pytest.mark.parametrize("g", golden.COMMANDS, ids=lambda g: g.name)
def test_golden_command_encoding_is_unchanged(g: golden.Golden) -> None:
    encoded = wire.encode_command(g.value)
    kept = golden.trim_like(encoded, msgpack.unpackb(g.data, raw=False))
    assert msgpack.packb(kept, use_bin_type=True).hex(" ") == g.data.hex(" ")
    golden.assert_same_fields(wire.decode_command(encoded), g.value)


@pytest.mark.parametrize("g", golden.RESULTS, ids=lambda g: g.name)
def test_golden_command_results(g: golden.Golden) -> None:
    golden.assert_same_fields(wire.decode_result(msgpack.unpackb(g.data, raw=False)), g.value)
    kept = golden.trim_like(wire.encode_result(g.value), msgpack.unpackb(g.data, raw=False))
    assert msgpack.packb(kept, use_bin_type=True) == g.data


def test_golden_frames_of_the_tap_stream() -> None:
    gap = dict(golden.EVENT_VALUES)["gap"]
    half_open = dict(golden.COMMAND_VALUES)["half-open"]
    ok = dict(golden.RESULT_VALUES)["ok"]
    frames = {
        "hello": (wire.HELLO, {"version": 1, "token": "t0k"}),
        "welcome": (wire.WELCOME, {"version": 1, "proxy": "127.0.0.1:8080"}),
        "error": (wire.ERROR, "bad or missing tap token"),
        "events": (wire.EVENTS, [wire.encode_event(gap)]),
        "command": (wire.COMMAND, wire.encode_command(half_open)),
        "result": (wire.RESULT, wire.encode_result(ok)),
    }
    assert wire.PROTOCOL_VERSION == 1
    stream = b""
    for name, (kind, body) in frames.items():
        data = bytes.fromhex(golden.FRAME_HEX[name])
        assert wire.pack(kind, body) == data, name
        stream += data
    d = wire.Decoder()
    d.feed(stream)
    got = list(d.frames())
    assert [k for k, _ in got] == [0, 1, 2, 3, 4, 5]
    assert wire.decode_events(got[3][1]) == [gap]
    assert wire.decode_command(got[4][1]) == half_open
    assert wire.decode_result(got[5][1]) == ok


def test_golden_fixtures_give_neighbouring_fields_distinct_values() -> None:
    """The property that makes the golden tests catch swapped fields: within each record,
    fields of the same type differ, and across the fixtures of a type each flag has its
    own true/false pattern."""
    by_type: dict[type, list[Any]] = {}
    for g in [*golden.EVENTS, *golden.COMMANDS]:
        records = [g.value]
        if isinstance(g.value, Snapshot):
            records = list(g.value.connections)
        for r in records:
            by_type.setdefault(type(r), []).append(r)
    for cls, records in by_type.items():
        names = wire.fields_of(cls)
        flags = [n for n in names if all(type(getattr(r, n)) is bool for r in records)]
        patterns = [tuple(getattr(r, n) for r in records) for n in flags]
        assert len(set(patterns)) == len(patterns), (cls.__name__, flags, patterns)
        if len(records) > 1:  # a flag that never changes cannot show a swap
            assert all(len(set(p)) == 2 for p in patterns), (cls.__name__, flags, patterns)
        ints = [n for n in names if type(getattr(records[0], n)) is int]
        for r in records:
            values = [getattr(r, n) for n in ints if getattr(r, n) not in (0, 1)]
            assert len(values) == len(set(values)), (cls.__name__, ints, values)


def test_wire_encoding_of_the_scale_out_events() -> None:
    from devconsole.model import GapEvent, InstanceEvent, Publication

    p = Publication(5, "2", 1.5, "server", 1, b"hi", 2, 2, channel="chat:1")
    assert wire.decode_event(wire.encode_event(p)) == p
    ie = InstanceEvent("app-1", 2.0, "gone", "no heartbeat")
    assert wire.decode_event(wire.encode_event(ie)) == ie
    # a gap's instance is an optional trailing field: a plain gap encodes as before
    assert wire.encode_event(GapEvent(3, "slow")) == [wire.T_GAP, 3, "slow"]
    assert wire.decode_event(wire.encode_event(GapEvent(3, "r", "a"))) == GapEvent(3, "r", "a")
    with pytest.raises(wire.WireError):
        wire.decode_event([wire.T_PUBLICATION, 1, "2"])


def test_handshake_decoder_is_an_optional_trailing_field() -> None:
    """``devconsole proxy --decoder``'s choice travels in the handshake, after the
    optional source and unknown (written at their defaults when only the decoder is set):
    other handshakes encode as before and older encodings decode."""
    plain = handshake()
    enc = wire.encode_event(HandshakeEvent(plain))
    assert len(enc[1]) == 21
    back = wire.decode_event(enc)
    assert isinstance(back, HandshakeEvent) and back.handshake.decoder is None
    chosen = handshake(decoder="socket.io")
    enc = wire.encode_event(HandshakeEvent(chosen))
    assert len(enc[1]) == 24 and enc[1][21:] == ["", [], "socket.io"]
    back = wire.decode_event(msgpack.unpackb(msgpack.packb(enc), raw=False))
    assert isinstance(back, HandshakeEvent) and back.handshake == chosen
    # an imported handshake with a decoder keeps all three
    both = handshake(decoder="jsonrpc", source="har:chrome", unknown=["close"])
    enc = wire.encode_event(HandshakeEvent(both))
    assert enc[1][21:] == ["har:chrome", ["close"], "jsonrpc"]
    assert wire.decode_event(enc) == HandshakeEvent(both)
    # an imported handshake without one stops at unknown (23 fields), as before
    imported = handshake(source="har:firefox")
    assert len(wire.encode_event(HandshakeEvent(imported))[1]) == 23
    enc = wire.encode_event(HandshakeEvent(chosen))
    enc[1][-1] = 7
    with pytest.raises(wire.WireError, match="field 23"):
        wire.decode_event(enc)


def test_golden_hello_asking_for_the_backlog_end() -> None:
    """Optional keys appended to the hello (after version 1): an older proxy ignores them."""
    body = {"version": 1, "token": None, "backlog_end": True, "items": False}
    data = bytes.fromhex(golden.FRAME_HEX["hello-backlog-end"])
    assert wire.pack(wire.HELLO, body) == data
    d = wire.Decoder()
    d.feed(data)
    assert list(d.frames()) == [(wire.HELLO, body)]
