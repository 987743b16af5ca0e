"""Tests for devconsole.frames.

Streams are produced by independent implementations (websockets' Frame.serialize and
PerMessageDeflate, wsproto's FrameProtocol and PerMessageDeflate); the expected messages
come from what was sent, never from devconsole's own builders. Frames the libraries refuse
to produce (protocol errors) are written byte by byte with ``raw_frame``.
"""

from __future__ import annotations

import bisect
import itertools
import random
import struct
import tracemalloc
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ProtocolError
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
from websockets.frames import Close, Frame
from websockets.frames import Opcode as WsOp
from wsproto.extensions import Extension
from wsproto.extensions import PerMessageDeflate as WpDeflate
from wsproto.frame_protocol import FrameDecoder, FrameProtocol, RsvBits

from devconsole.frames import (
    Control,
    DataMessage,
    DecodeError,
    DeflateParams,
    FrameError,
    StreamDecoder,
    build_close,
    build_frame,
)

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10

# Payloads here reach 400 kB per example, so a failure must stay cheap to report: no
# explain phase (it re-runs failing examples under line tracing, which took 14 minutes on
# such payloads), one bug shrunk rather than every distinct one, and reprs and assertion
# messages that summarise payloads (``short``, ``assert_items``). Shrinking itself stays:
# it is what turns a 65 kB failing stream into a small one, and each step is a few ms.
SETTINGS = settings(
    deadline=None,
    max_examples=150,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def short(value: Any) -> str:
    """repr() with long bytes summarised: ``<65536 bytes b'abc'...b'xyz'>``."""
    if isinstance(value, bytes | bytearray) and len(value) > 48:
        return f"<{len(value)} bytes {bytes(value[:24])!r}...{bytes(value[-8:])!r}>"
    if isinstance(value, tuple):
        return "(" + ", ".join(short(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(short(v) for v in value) + "]"
    return repr(value)


class ShortRepr:
    """Dataclasses whose repr (also in Hypothesis' failing-example report) summarises
    their long bytes fields."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={short(v)}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def assert_items(got: list[tuple[Any, ...]], want: list[tuple[Any, ...]]) -> None:
    """``got == want``, with a message that names the first difference and summarises
    payloads (pytest's own diff of two lists of 64 kB payloads costs seconds per failing
    example while Hypothesis shrinks)."""
    if got == want:
        return
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            raise AssertionError(f"item {i}: got {short(g)}, want {short(w)}")
    raise AssertionError(
        f"{len(got)} items, want {len(want)}; extra: {short(got[len(want) :] or want[len(got) :])}"
    )


# --------------------------------------------------------------------------- helpers


def raw_frame(
    b0: int, payload: bytes = b"", mask: bytes | None = None, length: int | None = None
) -> bytes:
    """A frame written by hand (for frames the libraries refuse to build)."""
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n < 65536:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def wire_payload_len(frame: bytes) -> int:
    n = frame[1] & 0x7F
    if n == 126:
        return int(struct.unpack("!H", frame[2:4])[0])
    if n == 127:
        return int(struct.unpack("!Q", frame[2:10])[0])
    return n


def expect_control(op: int, p: bytes, wire: int, end: int) -> tuple[Any, ...]:
    code: int | None = None
    reason = ""
    bad = False
    if op == CLOSE:
        if len(p) >= 2:
            code = struct.unpack("!H", p[:2])[0]
            reason = p[2:].decode(errors="replace")
        if p:
            try:
                Close.parse(p)
            except (ProtocolError, UnicodeDecodeError):
                bad = True
    return ("ctl", op, p, wire, code, reason, bad, end)


def utf8_valid(b: bytes) -> bool:
    try:
        b.decode()
    except UnicodeDecodeError:
        return False
    return True


# A sent frame: wire bytes, wire opcode, fin, plaintext (fragment or control payload).
Sent = tuple[bytes, int, bool, bytes]


@dataclass
class Expected:
    stream: bytes
    items: list[tuple[Any, ...]]
    frame_ends: list[int]  # absolute offsets at frame boundaries (0 included)
    msg_bounds: list[int]  # ... and outside a fragmented message


def expectations(frames: list[Sent], max_payload: int, compressed: bool) -> Expected:
    pos = 0
    items: list[tuple[Any, ...]] = []
    fends = [0]
    mbounds = [0]
    cur: dict[str, Any] | None = None
    for wire, op, fin, plain in frames:
        pos += len(wire)
        if op >= 8:
            items.append(expect_control(op, plain, len(wire), pos))
        else:
            if op:
                assert cur is None
                cur = {"op": op, "data": [], "sizes": [], "wire": 0}
            assert cur is not None
            cur["data"].append(plain)
            cur["sizes"].append(wire_payload_len(wire))
            cur["wire"] += len(wire)
            if fin:
                payload = b"".join(cur["data"])
                sizes = tuple(cur["sizes"])
                items.append(
                    (
                        "data",
                        cur["op"],
                        payload[:max_payload],
                        len(payload),
                        cur["wire"],
                        len(sizes),
                        sizes if len(sizes) > 1 else (),
                        compressed,
                        4 if compressed else 0,
                        cur["op"] == BINARY or utf8_valid(payload),
                        pos,
                    )
                )
                cur = None
        fends.append(pos)
        if cur is None:
            mbounds.append(pos)
    return Expected(b"".join(f[0] for f in frames), items, fends, mbounds)


def norm(item: Any, base: int) -> tuple[Any, ...]:
    if isinstance(item, DataMessage):
        return (
            "data",
            item.opcode,
            item.payload,
            item.size,
            item.wire_size,
            item.frames,
            item.frame_sizes,
            item.compressed,
            item.rsv,
            item.utf8_ok,
            base + item.end,
        )
    if isinstance(item, Control):
        assert (item.error is not None) == bool(item.error)
        return (
            "ctl",
            item.opcode,
            item.payload,
            item.wire_size,
            item.code,
            item.reason,
            item.error is not None,
            base + item.end,
        )
    assert isinstance(item, DecodeError)
    return ("error", item.offset, item.error)


def chunk_sizes(rng: random.Random, total: int) -> list[int]:
    out = []
    left = total
    while left > 0:
        kind = rng.random()
        if kind < 0.05:
            n = 0
        elif kind < 0.5:
            n = rng.randint(1, 16)
        elif kind < 0.85:
            n = rng.randint(1, 3000)
        else:
            n = rng.randint(1, 100_000)
        n = min(n, left)
        out.append(n)
        left -= n
    return out


def first_in(offsets: list[int], lo: int, hi: int) -> int | None:
    k = bisect.bisect_left(offsets, lo)
    if k < len(offsets) and offsets[k] <= hi:
        return offsets[k] - lo
    return None


MODES: list[Literal["frame", "message"] | None] = [None, "frame", "message"]


def run_decoder(
    dec: StreamDecoder,
    exp: Expected,
    sizes: list[int],
    rng: random.Random | None = None,
) -> list[tuple[Any, ...]]:
    """Feed exp.stream in pieces of ``sizes``, checking boundary semantics on the way."""
    got: list[tuple[Any, ...]] = []
    pos = 0
    fends = set(exp.frame_ends)
    mbounds = set(exp.msg_bounds)
    for n in sizes:
        chunk = exp.stream[pos : pos + n]
        mode = None if rng is None else rng.choice(MODES)
        items = dec.feed(chunk, mode)
        got.extend(norm(it, pos) for it in items)
        if mode == "frame":
            assert dec.boundary_offset == first_in(exp.frame_ends, pos, pos + n)
        elif mode == "message":
            assert dec.boundary_offset == first_in(exp.msg_bounds, pos, pos + n)
        pos += n
        assert dec.at_frame_boundary == (pos in fends)
        assert dec.at_message_boundary == (pos in mbounds)
    assert pos == len(exp.stream)
    return got


# --------------------------------------------------------------------------- strategies

SIZES = st.one_of(
    st.integers(0, 130),
    st.sampled_from([125, 126, 127, 1000, 65535, 65536, 65537, 70000]),
)
SMALL_SIZES = st.integers(0, 130)
PALETTE = ["a", "b", " ", "{", "\u00e9", "\u20ac", "\U0001f600", "\u0800"]


def make_payload(kind: str, size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "text":
        return "".join(rng.choices(PALETTE, k=size // 2 + size % 2)).encode()[: max(size, 0)]
    if kind == "ascii":
        return bytes(rng.choices(b"abcdefgh {}:,", k=size))
    return rng.randbytes(size)


@dataclass(repr=False)
class Ctl(ShortRepr):
    opcode: int
    payload: bytes


@dataclass(repr=False)
class Msg(ShortRepr):
    opcode: int
    payload: bytes
    cuts: list[int]
    inter: list[list[Ctl]] = field(default_factory=list)  # controls after fragment k

    def fragments(self) -> list[bytes]:
        bounds = [0, *self.cuts, len(self.payload)]
        return [self.payload[a:b] for a, b in itertools.pairwise(bounds)]


close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from([0, 999, 1000, 1001, 1004, 1005, 1006, 1011, 1015, 2999, 3000, 4999, 5000]),
        st.one_of(st.text(max_size=20).map(lambda s: s.encode()[:40]), st.binary(max_size=20)),
    ),
)
controls = st.one_of(
    st.builds(Ctl, st.sampled_from([PING, PONG]), st.binary(max_size=125)),
    st.builds(Ctl, st.just(CLOSE), close_payloads),
)


@st.composite
def messages(draw: st.DrawFn, sizes: st.SearchStrategy[int] = SIZES) -> Msg:
    kind = draw(st.sampled_from(["text", "ascii", "binary", "badtext"]))
    payload = make_payload(kind, draw(sizes), draw(st.integers(0, 2**32)))
    op = BINARY if kind == "binary" else TEXT
    nfr = draw(st.integers(1, 4))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), min_size=nfr - 1, max_size=nfr - 1)))
    inter = [draw(st.lists(controls, max_size=2)) for _ in range(nfr - 1)]
    return Msg(op, payload, cuts, inter)


def streams(sizes: st.SearchStrategy[int] = SIZES) -> st.SearchStrategy[list[Msg | Ctl]]:
    return st.lists(st.one_of(messages(sizes), controls), max_size=6)


def ws_frames(spec: list[Msg | Ctl], mask: bool, ext: WsDeflate | None = None) -> list[Sent]:
    """Serialize with websockets (optionally compressing with its permessage-deflate)."""
    exts = [ext] if ext is not None else None
    out: list[Sent] = []

    def ctl(c: Ctl) -> None:
        out.append(
            (Frame(WsOp(c.opcode), c.payload).serialize(mask=mask), c.opcode, True, c.payload)
        )

    for item in spec:
        if isinstance(item, Ctl):
            ctl(item)
            continue
        frags = item.fragments()
        for k, frag in enumerate(frags):
            op = item.opcode if k == 0 else CONT
            fin = k == len(frags) - 1
            wire = Frame(WsOp(op), frag, fin=fin).serialize(mask=mask, extensions=exts)
            out.append((wire, op, fin, frag))
            if not fin:
                for c in item.inter[k]:
                    ctl(c)
    return out


# --------------------------------------------------------------------------- decoding


@SETTINGS
@given(
    spec=streams(),
    from_client=st.booleans(),
    max_payload=st.sampled_from([0, 1, 100, 65536, 1 << 20]),
    seed=st.integers(0, 2**32),
)
def test_random_streams_random_chunks(
    spec: list[Msg | Ctl], from_client: bool, max_payload: int, seed: int
) -> None:
    exp = expectations(ws_frames(spec, mask=from_client), max_payload, compressed=False)
    rng = random.Random(seed)
    dec = StreamDecoder(from_client, max_payload=max_payload)
    got = run_decoder(dec, exp, chunk_sizes(rng, len(exp.stream)), rng)
    assert_items(got, exp.items)
    assert not dec.failed


@settings(SETTINGS, max_examples=100)
@given(
    spec=st.lists(st.one_of(messages(SMALL_SIZES), controls), max_size=4),
    from_client=st.booleans(),
    deflate=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_byte_at_a_time(spec: list[Msg | Ctl], from_client: bool, deflate: bool, seed: int) -> None:
    ext = WsDeflate(False, False, 15, 15) if deflate else None
    exp = expectations(ws_frames(spec, mask=from_client, ext=ext), 1 << 20, compressed=deflate)
    dec = StreamDecoder(from_client, DeflateParams() if deflate else None)
    got = run_decoder(dec, exp, [1] * len(exp.stream), random.Random(seed))
    assert_items(got, exp.items)


@settings(SETTINGS, max_examples=120)
@given(
    spec=streams(),
    from_client=st.booleans(),
    no_context_takeover=st.booleans(),
    bits=st.integers(9, 15),
    max_payload=st.sampled_from([0, 50, 1 << 20]),
    seed=st.integers(0, 2**32),
)
def test_compressed_websockets(
    spec: list[Msg | Ctl],
    from_client: bool,
    no_context_takeover: bool,
    bits: int,
    max_payload: int,
    seed: int,
) -> None:
    # websockets compresses every data message; local_* = the sender's parameters
    ext = WsDeflate(False, no_context_takeover, 15, bits)
    exp = expectations(ws_frames(spec, mask=from_client, ext=ext), max_payload, compressed=True)
    if from_client:
        params = DeflateParams(
            client_no_context_takeover=no_context_takeover, client_max_window_bits=bits
        )
    else:
        params = DeflateParams(
            server_no_context_takeover=no_context_takeover, server_max_window_bits=bits
        )
    rng = random.Random(seed)
    dec = StreamDecoder(from_client, params, max_payload=max_payload)
    got = run_decoder(dec, exp, chunk_sizes(rng, len(exp.stream)), rng)
    assert_items(got, exp.items)


def wsproto_frames(
    proto: FrameProtocol, msgs: list[tuple[str | bytes, list[int], list[bytes]]]
) -> list[Sent]:
    """Each message: payload (str = text), cut points, pings to interleave after frame 0."""
    out: list[Sent] = []
    for payload, cuts, pings in msgs:
        bounds = [0, *cuts, len(payload)]
        frags = [payload[a:b] for a, b in itertools.pairwise(bounds)]
        for k, frag in enumerate(frags):
            fin = k == len(frags) - 1
            op = (TEXT if isinstance(payload, str) else BINARY) if k == 0 else CONT
            plain = frag.encode() if isinstance(frag, str) else frag
            out.append((proto.send_data(frag, fin), op, fin, plain))
            if k == 0 and not fin:
                for p in pings:
                    out.append((proto.ping(p), PING, True, p))
    return out


@settings(SETTINGS, max_examples=100)
@given(
    data=st.lists(
        st.tuples(
            st.sampled_from(["text", "binary"]),
            SIZES,
            st.integers(0, 2**32),
            st.lists(st.integers(0, 70000), max_size=3),
            st.lists(st.binary(max_size=10), max_size=2),
        ),
        min_size=1,
        max_size=5,
    ),
    from_client=st.booleans(),
    client_nct=st.booleans(),
    server_nct=st.booleans(),
    client_bits=st.integers(9, 15),
    server_bits=st.integers(9, 15),
    max_payload=st.sampled_from([10, 1 << 20]),
    seed=st.integers(0, 2**32),
)
def test_compressed_wsproto(
    data: list[tuple[str, int, int, list[int], list[bytes]]],
    from_client: bool,
    client_nct: bool,
    server_nct: bool,
    client_bits: int,
    server_bits: int,
    max_payload: int,
    seed: int,
) -> None:
    accepted = "permessage-deflate"
    if client_nct:
        accepted += "; client_no_context_takeover"
    if server_nct:
        accepted += ";server_no_context_takeover"
    accepted += f"; client_max_window_bits={client_bits}; server_max_window_bits={server_bits}"
    ext = WpDeflate()
    ext.finalize(accepted)
    proto = FrameProtocol(client=from_client, extensions=[ext])
    msgs: list[tuple[str | bytes, list[int], list[bytes]]] = []
    for kind, size, pseed, cuts, pings in data:
        payload: str | bytes
        if kind == "text":
            payload = make_payload("text", size, pseed).decode(errors="ignore")
        else:
            payload = make_payload("ascii" if pseed % 2 else "binary", size, pseed)
        msgs.append((payload, sorted(min(c, len(payload)) for c in cuts), pings))
    exp = expectations(wsproto_frames(proto, msgs), max_payload, compressed=True)
    quoted = accepted.replace(f"={server_bits}", f'="{server_bits}"')
    params = DeflateParams.from_extensions(["x-other; a=1", quoted])
    rng = random.Random(seed)
    dec = StreamDecoder(from_client, params, max_payload=max_payload)
    got = run_decoder(dec, exp, chunk_sizes(rng, len(exp.stream)), rng)
    assert_items(got, exp.items)


def test_context_takeover_is_honoured() -> None:
    """A sender keeping its context makes later messages back-reference earlier ones: a
    decoder wrongly resetting its inflater fails; one keeping it decodes."""
    text = make_payload("text", 3000, 1).decode(errors="ignore")
    ext = WpDeflate()
    ext.finalize("permessage-deflate")
    proto = FrameProtocol(client=True, extensions=[ext])
    frames = proto.send_data(text) + proto.send_data(text) + proto.send_data(text)
    assert len(frames) < len(text.encode())  # really back-referenced

    ok = StreamDecoder(True, DeflateParams(server_no_context_takeover=True))
    items = ok.feed(frames)
    assert [m.payload for m in items if isinstance(m, DataMessage)] == [text.encode()] * 3

    wrong = StreamDecoder(True, DeflateParams(client_no_context_takeover=True))
    items = wrong.feed(frames)
    assert isinstance(items[0], DataMessage)
    assert isinstance(items[-1], DecodeError)
    assert items[-1].error.startswith("inflate failed")
    assert items[-1].offset == items[0].end  # the second message's frame
    assert wrong.failed


def test_truncated_compressed_message_still_inflated_for_context() -> None:
    big = make_payload("text", 20_000, 7).decode(errors="ignore")  # within the 32 KiB window
    ext = WpDeflate()
    ext.finalize("permessage-deflate")
    proto = FrameProtocol(client=False, extensions=[ext])
    stream = proto.send_data(big) + proto.send_data(big[:5000])
    dec = StreamDecoder(False, DeflateParams(), max_payload=100)
    items: list[Any] = []
    for i in range(0, len(stream), 4096):
        items += dec.feed(stream[i : i + 4096])
    assert len(items) == 2
    first, second = items
    assert isinstance(first, DataMessage) and isinstance(second, DataMessage)
    assert first.size == len(big.encode()) and first.payload == big.encode()[:100]
    assert second.size == len(big[:5000].encode()) and second.payload == big.encode()[:100]
    assert second.wire_size < 1000  # back-references into the first message
    assert first.utf8_ok and second.utf8_ok


@pytest.mark.parametrize("compressed", [False, True])
def test_invalid_utf8_after_the_kept_part_is_flagged(compressed: bool) -> None:
    payload = b"a" * 1000 + b"\xff" + b"b" * 10
    if compressed:
        ext = WsDeflate(False, False, 15, 15)
        wire = Frame(WsOp.TEXT, payload).serialize(mask=True, extensions=[ext])
    else:
        wire = Frame(WsOp.TEXT, payload).serialize(mask=True)
    dec = StreamDecoder(True, DeflateParams() if compressed else None, max_payload=10)
    (msg,) = dec.feed(wire)
    assert isinstance(msg, DataMessage)
    assert msg.payload == b"a" * 10 and msg.size == len(payload)
    assert not msg.utf8_ok
    # truncated mid-character: still valid
    ok = "\u20ac".encode() * 100
    (msg,) = StreamDecoder(False, max_payload=4).feed(Frame(WsOp.TEXT, ok).serialize(mask=False))
    assert isinstance(msg, DataMessage)
    assert msg.utf8_ok and msg.payload == ok[:4]
    # a sequence cut by the end of the message
    (msg,) = StreamDecoder(False, max_payload=4).feed(
        Frame(WsOp.TEXT, ok[:-1]).serialize(mask=False)
    )
    assert isinstance(msg, DataMessage)
    assert not msg.utf8_ok


def test_utf8_split_across_fragments() -> None:
    euro = "\u20ac".encode()
    wire = (
        Frame(WsOp.TEXT, euro[:1], fin=False).serialize(mask=True)
        + Frame(WsOp.PING, b"x").serialize(mask=True)
        + Frame(WsOp.CONT, euro[1:2], fin=False).serialize(mask=True)
        + Frame(WsOp.CONT, euro[2:]).serialize(mask=True)
    )
    ping, msg = StreamDecoder(True).feed(wire)
    assert isinstance(ping, Control) and ping.payload == b"x"
    assert isinstance(msg, DataMessage)
    assert msg.payload == euro and msg.utf8_ok and msg.frame_sizes == (1, 1, 1)


def test_close_frames() -> None:
    def close(payload: bytes) -> Control:
        (c,) = StreamDecoder(False).feed(raw_frame(0x88, payload))
        assert isinstance(c, Control)
        return c

    c = close(b"")
    assert (c.code, c.reason, c.error) == (None, "", None)
    c = close(struct.pack("!H", 1000) + "bye \u20ac".encode())
    assert (c.code, c.reason, c.error) == (1000, "bye \u20ac", None)
    c = close(struct.pack("!H", 999))
    assert c.code == 999 and c.error == "invalid close code 999"
    c = close(struct.pack("!H", 4000) + b"\xffok")
    assert c.code == 4000 and c.reason == "\ufffdok" and c.error == "close reason not UTF-8"
    c = close(struct.pack("!H", 1005) + b"\xff")
    assert c.error is not None and "1005" in c.error and "UTF-8" in c.error
    c = close(b"\x03")
    assert c.code is None and c.error is not None


def test_mask_direction_violations_are_tolerated() -> None:
    unmasked = Frame(WsOp.BINARY, b"abc").serialize(mask=False)
    masked = Frame(WsOp.BINARY, b"abc").serialize(mask=True)
    for dec, wire in ((StreamDecoder(True), unmasked), (StreamDecoder(False), masked)):
        (msg,) = dec.feed(wire + wire)[:1]
        assert isinstance(msg, DataMessage) and msg.payload == b"abc"
        assert not dec.failed


# --------------------------------------------------------------------------- errors

K = b"\x11\x22\x33\x44"


def _prefix(mask: bool, open_message: bool = False) -> tuple[bytes, int]:
    """Valid frames before the bad one, and how many items they complete."""
    b = Frame(WsOp.TEXT, b"hello").serialize(mask=mask) + Frame(WsOp.PING, b"p").serialize(
        mask=mask
    )
    if open_message:
        b += Frame(WsOp.BINARY, b"part", fin=False).serialize(mask=mask)
    return b, 2


ERROR_CASES: list[tuple[str, bool, bool, int, bytes, str]] = [
    # id, deflate, open_message, b0, payload / special, expected error text
    ("reserved-opcode-3", False, False, 0x83, b"x", "reserved opcode 0x3"),
    ("reserved-opcode-7", False, False, 0x87, b"", "reserved opcode 0x7"),
    ("reserved-opcode-b", False, False, 0x8B, b"x", "reserved opcode 0xb"),
    ("reserved-opcode-f", False, False, 0x8F, b"x", "reserved opcode 0xf"),
    ("fragmented-ping", False, False, 0x09, b"x", "fragmented control frame"),
    ("long-ping", False, False, 0x89, b"x" * 126, "control frame payload of 126"),
    ("long-close", False, False, 0x88, b"x" * 200, "control frame payload of 200"),
    ("orphan-continuation", False, False, 0x80, b"x", "continuation frame without"),
    ("data-inside-fragmented", False, True, 0x81, b"x", "new data frame inside"),
    ("rsv1-no-deflate", False, False, 0xC1, b"x", "RSV1 set without"),
    ("rsv2", False, False, 0xA1, b"x", "RSV2/RSV3"),
    ("rsv3", False, False, 0x91, b"x", "RSV2/RSV3"),
    ("rsv2-with-deflate", True, False, 0xE2, b"x", "RSV2/RSV3"),
    ("rsv1-on-continuation", True, True, 0xC0, b"x", "RSV1 set on a continuation"),
    ("rsv1-on-ping", True, False, 0xC9, b"x", "RSV1 set on a control"),
    ("inflate-failure", True, False, 0xC2, b"\xff\xff\xff", "inflate failed"),
    ("inflate-failure-continuation", True, True, 0x80, b"\xff\xff", "inflate failed"),
]


@pytest.mark.parametrize(
    ("deflate", "open_message", "b0", "payload", "error"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
@pytest.mark.parametrize("from_client", [True, False])
@pytest.mark.parametrize("split", ["whole", "bytes", "random", "in-header"])
def test_protocol_errors(
    deflate: bool,
    open_message: bool,
    b0: int,
    payload: bytes,
    error: str,
    from_client: bool,
    split: str,
) -> None:
    prefix, n_before = _prefix(from_client, open_message)
    if deflate and open_message and b0 == 0x80:
        # a compressed fragmented message, then a continuation with garbage
        ext = WsDeflate(False, False, 15, 15)
        prefix = _prefix(from_client)[0] + Frame(WsOp.TEXT, b"part", fin=False).serialize(
            mask=from_client, extensions=[ext]
        )
    bad = raw_frame(b0, payload, K if from_client else None)
    after = Frame(WsOp.TEXT, b"after").serialize(mask=from_client)
    stream = prefix + bad + after + after
    dec = StreamDecoder(from_client, DeflateParams() if deflate else None)
    if split == "whole":
        sizes = [len(stream)]
    elif split == "bytes":
        sizes = [1] * len(stream)
    elif split == "in-header":
        sizes = [len(prefix) + 1, 1, len(stream) - len(prefix) - 2]
    else:
        sizes = chunk_sizes(random.Random(len(stream)), len(stream))
    items: list[Any] = []
    pos = 0
    for n in sizes:
        items += dec.feed(stream[pos : pos + n], "message")
        pos += n
    errors = [it for it in items if isinstance(it, DecodeError)]
    assert len(errors) == 1
    assert items[-1] is errors[0]
    assert errors[0].offset == len(prefix)
    assert error in errors[0].error
    assert len(items) == n_before + 1
    assert dec.failed and not dec.at_frame_boundary and not dec.at_message_boundary
    assert dec.feed(after, "frame") == [] and dec.boundary_offset is None


def test_64bit_length_with_msb_set() -> None:
    prefix = Frame(WsOp.TEXT, b"hi").serialize(mask=False)
    bad = bytes([0x82, 127]) + struct.pack("!Q", 1 << 63) + b"xxxx"
    dec = StreamDecoder(False)
    items = dec.feed(prefix + bad)
    assert isinstance(items[0], DataMessage)
    assert isinstance(items[1], DecodeError) and items[1].offset == len(prefix)
    assert "most significant bit" in items[1].error
    assert len(items) == 2
    # on a continuation frame too
    first = Frame(WsOp.TEXT, b"a", fin=False).serialize(mask=False)
    bad = bytes([0x80, 127]) + struct.pack("!Q", (1 << 63) + 5) + b"xxxx"
    dec = StreamDecoder(False)
    assert dec.feed(first + bad) == [DecodeError(len(first), items[1].error)]


def check_invariants(dec: StreamDecoder, stream: bytes, sizes: list[int]) -> None:
    pos = 0
    items: list[Any] = []
    for n in sizes:
        items += dec.feed(stream[pos : pos + n], "message")
        pos += n
    for it in items:
        assert isinstance(it, DataMessage | Control | DecodeError)
    errs = [i for i, it in enumerate(items) if isinstance(it, DecodeError)]
    assert len(errs) <= 1
    if errs:
        assert errs[0] == len(items) - 1
        assert dec.failed
        assert 0 <= items[-1].offset < len(stream)
        assert dec.feed(b"\x81\x00") == []
    else:
        assert not dec.failed


@settings(SETTINGS, max_examples=1000)
@given(
    data=st.binary(max_size=400),
    from_client=st.booleans(),
    deflate=st.booleans(),
    max_payload=st.sampled_from([0, 3, 1 << 20]),
    seed=st.integers(0, 2**32),
)
def test_random_bytes_never_raise(
    data: bytes, from_client: bool, deflate: bool, max_payload: int, seed: int
) -> None:
    dec = StreamDecoder(from_client, DeflateParams() if deflate else None, max_payload)
    check_invariants(dec, data, chunk_sizes(random.Random(seed), len(data)))


@settings(SETTINGS, max_examples=400)
@given(
    spec=st.lists(st.one_of(messages(SMALL_SIZES), controls), min_size=1, max_size=4),
    from_client=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1),
    seed=st.integers(0, 2**32),
)
def test_mutated_compressed_streams_never_raise(
    spec: list[Msg | Ctl], from_client: bool, flips: list[tuple[int, int]], seed: int
) -> None:
    ext = WsDeflate(False, False, 15, 15)
    stream = bytearray(b"".join(f[0] for f in ws_frames(spec, mask=from_client, ext=ext)))
    for at, x in flips:
        stream[at % len(stream)] ^= x
    dec = StreamDecoder(from_client, DeflateParams(), max_payload=50)
    check_invariants(dec, bytes(stream), chunk_sizes(random.Random(seed), len(stream)))


# --------------------------------------------------------------------------- memory


def _peak_while(feed_all: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = feed_all()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@pytest.mark.parametrize("opcode", [WsOp.TEXT, WsOp.BINARY])
def test_huge_frame_streamed_with_bounded_memory(opcode: WsOp) -> None:
    size = 16 << 20
    payload = b"0123456789abcdef" * (size // 16)
    wire = Frame(opcode, payload).serialize(mask=True)
    dec = StreamDecoder(True, max_payload=65536)
    step = 65536

    def feed_all() -> list[Any]:
        items: list[Any] = []
        for i in range(0, len(wire), step):
            items += dec.feed(wire[i : i + step])
            assert len(items) == 0 or i + step >= len(wire)
        return items

    items, peak = _peak_while(feed_all)
    (msg,) = items
    assert isinstance(msg, DataMessage)
    assert msg.size == size and msg.payload == payload[:65536] and msg.utf8_ok
    assert msg.wire_size == len(wire) and msg.frames == 1
    assert peak < 2 << 20, peak


@pytest.mark.parametrize("from_client", [True, False])
@pytest.mark.parametrize("compressed", [False, True])
def test_feeds_larger_than_the_internal_slices(from_client: bool, compressed: bool) -> None:
    """Chunks of more than 1 MiB starting at odd offsets into a frame (mask phase)."""
    payload = make_payload("text", (3 << 20) + 3, 5)
    ext = [WsDeflate(False, False, 15, 15)] if compressed else None
    frames = [
        Frame(WsOp.TEXT, payload[:1000], fin=False).serialize(mask=from_client, extensions=ext),
        Frame(WsOp.CONT, payload[1000:]).serialize(mask=from_client, extensions=ext),
    ]
    if compressed:
        assert frames[1][0] & 0x40 == 0  # RSV1 only on the first frame
    exp = expectations(
        [(frames[0], TEXT, False, payload[:1000]), (frames[1], CONT, True, payload[1000:])],
        4 << 20,
        compressed,
    )
    sizes = [7] + [1_500_001] * (len(exp.stream) // 1_500_001) + [len(exp.stream) % 1_500_001]
    sizes[-1] -= 7
    dec = StreamDecoder(from_client, DeflateParams() if compressed else None, 4 << 20)
    assert_items(run_decoder(dec, exp, sizes), exp.items)


def test_inflate_output_pending_at_the_output_limit() -> None:
    """zlib can hold output back when a call fills max_length exactly and consumed all
    input (a long match being copied); none of it may be lost."""
    for n in [*range(65530, 65545), *range(131066, 131081), *range(196602, 196617)]:
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        comp = co.compress(b"a" * n) + co.flush(zlib.Z_SYNC_FLUSH)
        wire = raw_frame(0xC1, comp[:-4])
        (msg,) = StreamDecoder(False, DeflateParams()).feed(wire)
        assert isinstance(msg, DataMessage) and msg.size == n, n
        (msg,) = StreamDecoder(False, DeflateParams(), max_payload=10).feed(wire)
        assert isinstance(msg, DataMessage) and msg.size == n and msg.payload == b"a" * 10


def test_decompression_bomb_bounded_memory() -> None:
    size = 32 << 20
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero = bytes(1 << 20)
    comp = b"".join(co.compress(zero) for _ in range(size >> 20)) + co.flush(zlib.Z_SYNC_FLUSH)
    assert comp.endswith(b"\x00\x00\xff\xff")
    wire = raw_frame(0xC2, comp[:-4], K)  # FIN + RSV1 + binary, masked
    dec = StreamDecoder(True, DeflateParams(), max_payload=1000)

    def feed_all() -> list[Any]:
        items: list[Any] = []
        for i in range(0, len(wire), 65536):
            items += dec.feed(wire[i : i + 65536])
        return items

    items, peak = _peak_while(feed_all)
    (msg,) = items
    assert isinstance(msg, DataMessage)
    assert msg.size == size and msg.payload == bytes(1000) and msg.compressed
    assert peak < 2 << 20, peak


# --------------------------------------------------------------------------- boundaries


def test_boundary_offsets() -> None:
    f1 = Frame(WsOp.TEXT, b"ab", fin=False).serialize(mask=False)
    ping = Frame(WsOp.PING, b"").serialize(mask=False)
    f2 = Frame(WsOp.CONT, b"cd").serialize(mask=False)
    stream = f1 + ping + f2
    dec = StreamDecoder(False)
    assert dec.at_frame_boundary and dec.at_message_boundary
    assert dec.feed(b"", "message") == [] and dec.boundary_offset == 0
    assert dec.feed(stream[:1], "frame") == [] and dec.boundary_offset == 0
    assert not dec.at_frame_boundary
    rest = stream[1:]
    items = dec.feed(rest, "frame")
    assert dec.boundary_offset == len(f1) - 1
    assert [type(i) for i in items] == [Control, DataMessage]
    assert dec.at_message_boundary

    dec = StreamDecoder(False)
    dec.feed(stream[:1])
    dec.feed(rest, "message")
    assert dec.boundary_offset == len(stream) - 1
    # inside the fragmented message: frame boundaries yes, message boundaries no
    dec = StreamDecoder(False)
    dec.feed(f1)
    assert dec.at_frame_boundary and not dec.at_message_boundary
    dec.feed(ping[:1], "message")
    assert dec.boundary_offset is None
    dec.feed(ping[1:], "frame")
    assert dec.boundary_offset == len(ping) - 1
    dec.feed(f2[:2], "message")
    assert dec.boundary_offset is None
    dec.feed(b"", "frame")
    assert dec.boundary_offset is None
    (msg,) = dec.feed(f2[2:], "message")
    assert isinstance(msg, DataMessage) and msg.end == len(f2) - 2
    assert dec.boundary_offset == len(f2) - 2


# --------------------------------------------------------------------------- builders


class _RsvRecorder(Extension):
    """Lets wsproto accept any RSV bits, and records them."""

    name = "rsv-recorder"

    def __init__(self) -> None:
        self.seen: list[RsvBits] = []

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:  # abstract in wsproto >= 1.3; never negotiated here
        return False

    def frame_inbound_header(self, proto: Any, opcode: Any, rsv: RsvBits, length: int) -> Any:
        self.seen.append(rsv)
        return RsvBits(True, True, True)


@SETTINGS
@given(
    opcode=st.sampled_from([CONT, TEXT, BINARY, CLOSE, PING, PONG]),
    size=SIZES,
    fin=st.booleans(),
    rsv=st.integers(0, 7),
    mask=st.one_of(st.none(), st.just(False), st.just(True), st.binary(min_size=4, max_size=4)),
)
def test_build_frame_parsed_by_wsproto(
    opcode: int, size: int, fin: bool, rsv: int, mask: bytes | bool | None
) -> None:
    if opcode >= 8:
        size = min(size, 125)
        fin = True
    payload = random.Random(size).randbytes(size)
    wire = build_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask)
    rec = _RsvRecorder()
    masked = mask is True or isinstance(mask, bytes)
    parser = FrameDecoder(client=not masked, extensions=[rec])
    parser.receive_bytes(wire)
    frame = parser.process_buffer()
    assert frame is not None
    assert frame.opcode == opcode and frame.payload == payload
    assert frame.frame_finished and frame.message_finished == fin
    assert rec.seen == [RsvBits(bool(rsv & 4), bool(rsv & 2), bool(rsv & 1))]
    assert bool(wire[1] & 0x80) == masked
    if isinstance(mask, bytes):
        assert wire[2 + {126: 2, 127: 8}.get(wire[1] & 0x7F, 0) :][:4] == mask
    assert len(parser.buffer) == 0


@pytest.mark.parametrize("mask", [None, True, b"abcd"])
@pytest.mark.parametrize(
    ("code", "reason"),
    [(None, ""), (1000, ""), (1001, "going \u20ac"), (3000, "x" * 123), (4999, "r")],
)
def test_build_close_parsed_by_wsproto(code: int | None, reason: str, mask: Any) -> None:
    wire = build_close(code, reason, mask=mask)
    proto = FrameProtocol(client=mask is None, extensions=[])
    proto.receive_bytes(wire)
    (frame,) = list(proto.received_frames())
    assert frame.opcode == CLOSE
    assert frame.payload == ((code or 1005), reason)
    (ctl,) = StreamDecoder(from_client=mask is not None).feed(wire)
    assert isinstance(ctl, Control)
    assert (ctl.code, ctl.reason, ctl.error) == (code, reason, None)


def test_build_frame_masks_randomly_and_keeps_reserved_opcodes() -> None:
    a = build_frame(BINARY, b"x" * 10, mask=True)
    b = build_frame(BINARY, b"x" * 10, mask=True)
    assert a[1] & 0x80 and a[2:6] != b[2:6]
    assert build_frame(3, b"")[0] == 0x83
    assert build_frame(TEXT, b"a", fin=False, rsv=5) == bytes([0x51, 1]) + b"a"


@pytest.mark.parametrize(
    "call",
    [
        lambda: build_frame(PING, b"x" * 126),
        lambda: build_frame(CLOSE, b"x" * 126),
        lambda: build_frame(PING, b"", fin=False),
        lambda: build_frame(16, b""),
        lambda: build_frame(-1, b""),
        lambda: build_frame(TEXT, b"", rsv=8),
        lambda: build_frame(TEXT, b"", mask=b"abc"),
        lambda: build_close(999),
        lambda: build_close(1004),
        lambda: build_close(1005),
        lambda: build_close(1006),
        lambda: build_close(1015),
        lambda: build_close(2000),
        lambda: build_close(5000),
        lambda: build_close(None, "reason without code"),
        lambda: build_close(1000, "x" * 124),
        lambda: build_close(1000, "\u20ac" * 42),
        lambda: build_close(1000, "\ud800"),
    ],
)
def test_builder_errors(call: Any) -> None:
    with pytest.raises(FrameError):
        call()


# --------------------------------------------------------------------------- DeflateParams


@pytest.mark.parametrize(
    ("accepted", "expected"),
    [
        ([], None),
        (["x-webkit-deflate-frame"], None),
        (["permessage-deflate"], DeflateParams()),
        (
            ["permessage-deflate; client_max_window_bits=12; server_no_context_takeover"],
            DeflateParams(server_no_context_takeover=True, client_max_window_bits=12),
        ),
        (
            [' Permessage-Deflate ;CLIENT_NO_CONTEXT_TAKEOVER; server_max_window_bits = "10" '],
            DeflateParams(client_no_context_takeover=True, server_max_window_bits=10),
        ),
        (
            ["foo; bar=1", "permessage-deflate; client_max_window_bits"],
            DeflateParams(client_max_window_bits=15),
        ),
        (
            ["foo, permessage-deflate; server_max_window_bits=9, permessage-deflate"],
            DeflateParams(server_max_window_bits=9),
        ),
        (
            ["permessage-deflate; server_max_window_bits=99; client_max_window_bits=x"],
            DeflateParams(),
        ),
    ],
)
def test_deflate_params_from_extensions(
    accepted: list[str], expected: DeflateParams | None
) -> None:
    assert DeflateParams.from_extensions(accepted) == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4), st.integers(0, 3))
def test_c_and_python_unmasking_agree(data: bytes, key: bytes, phase: int) -> None:
    from devconsole.frames import _unmask, _xor_mask

    rotated = key[phase:] + key[:phase]
    assert _unmask(data, key, phase) == _xor_mask(data, rotated)
    assert _xor_mask(_xor_mask(data, key), key) == data
