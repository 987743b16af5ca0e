"""Sans-I/O WebSocket frame parser, message assembler and frame builder (RFC 6455, RFC 7692).

Core module: no I/O, imports neither mitmproxy nor textual.

``StreamDecoder`` parses one direction of a connection incrementally: bytes go in as they
are read, completed messages and control frames come out. Payload bytes are streamed
through unmasking / inflation as they arrive; at most ``max_payload`` decoded bytes are kept
per message, so the memory of a message is bounded whatever its size.
"""

from __future__ import annotations

import codecs
import os
import zlib
from dataclasses import dataclass
from typing import Literal

from devconsole.model import Opcode, valid_close_code

_CONT = int(Opcode.CONTINUATION)
_TEXT = int(Opcode.TEXT)
_CLOSE = int(Opcode.CLOSE)

_SYNC_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: appended to a message's compressed bytes
_INFLATE_IN = 16384  # compressed bytes per decompress() call (bounds unconsumed_tail copies)
_INFLATE_OUT = 65536  # max inflated bytes per decompress() call (decompression bombs)
_SLICE = 1 << 20  # masked bytes unmasked at once (multiple of 4: keeps the mask phase)

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


class FrameError(Exception):
    """Raised by the builders for invalid arguments (never by StreamDecoder.feed)."""


@dataclass(slots=True)
class DeflateParams:
    """Negotiated permessage-deflate parameters (from the server's Sec-WebSocket-Extensions)."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    client_max_window_bits: int = 15
    server_max_window_bits: int = 15

    @classmethod
    def from_extensions(cls, accepted: list[str]) -> DeflateParams | None:
        """``accepted`` = the server's Sec-WebSocket-Extensions values (comma-split).
        Returns None when permessage-deflate was not accepted.

        Tolerant: values may be quoted, a bare ``*_max_window_bits`` means 15, an invalid
        window size is read as 15 (the largest window inflates any smaller one)."""
        for value in accepted:
            for ext in value.split(","):
                parts = ext.split(";")
                if parts[0].strip().lower() != "permessage-deflate":
                    continue
                params = cls()
                for param in parts[1:]:
                    name, _, raw = param.partition("=")
                    name = name.strip().lower()
                    if name == "client_no_context_takeover":
                        params.client_no_context_takeover = True
                    elif name == "server_no_context_takeover":
                        params.server_no_context_takeover = True
                    elif name == "client_max_window_bits":
                        params.client_max_window_bits = _window_bits(raw)
                    elif name == "server_max_window_bits":
                        params.server_max_window_bits = _window_bits(raw)
                return params
        return None


def _window_bits(raw: str) -> int:
    raw = raw.strip().strip('"').strip()
    if raw.isdigit() and 8 <= int(raw) <= 15:
        return int(raw)
    return 15


@dataclass(slots=True)
class DataMessage:
    """A complete text/binary message (all its frames seen)."""

    opcode: int
    payload: bytes  # inflated + unmasked, at most max_payload bytes kept
    size: int  # true decoded size
    wire_size: int  # sum of frame sizes incl. headers
    frames: int
    frame_sizes: tuple[int, ...]  # wire payload length of each frame (empty if frames == 1)
    compressed: bool
    rsv: int  # of the first frame
    utf8_ok: bool  # always True for binary
    end: int  # offset in the chunk passed to feed() where the last frame ended


@dataclass(slots=True)
class Control:
    opcode: int  # CLOSE / PING / PONG
    payload: bytes
    wire_size: int
    code: int | None  # close
    reason: str  # close (decoded with errors="replace")
    error: str | None  # e.g. "invalid close code 999", "close reason not UTF-8"
    end: int


@dataclass(slots=True)
class DecodeError:
    """The stream became undecodable at ``offset`` (absolute byte offset in this direction).
    After this, feed() returns [] forever."""

    offset: int
    error: str


DecodedItem = DataMessage | Control | DecodeError


class _Fail(Exception):
    def __init__(self, offset: int, error: str) -> None:
        self.offset = offset
        self.error = error


def _xor_mask(data: bytes | bytearray | memoryview, mask: bytes | bytearray) -> bytes:
    """Pure-Python unmasking (0.46 GB/s): the fallback when websockets' C speedups are
    not available."""
    n = len(data)
    m = mask * ((n + 3) >> 2)
    if len(m) != n:
        m = m[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")


try:  # websockets (a dependency) ships a C apply_mask: 64 KiB in ~2 us instead of ~140 us
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - a websockets build without its C extension
    _apply_mask = _xor_mask


def _unmask(data: bytes | memoryview, key: bytes | None, phase: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` starting at byte ``phase`` of the key."""
    if key is None:
        return bytes(data)
    if phase:
        key = key[phase:] + key[:phase]
    return _apply_mask(data, key)  # type: ignore[no-any-return]


class StreamDecoder:
    """Parses one direction of a WebSocket connection.

    ``from_client``: True for the client->server direction (frames must be masked; a client
    frame that is not masked is reported but still parsed); ``deflate``: negotiated params or
    None; ``max_payload``: payload bytes kept per message (the rest is counted, not kept).

    Mask direction violations (unmasked client frame, masked server frame) are tolerated:
    the frame is parsed normally. Every other protocol violation is fatal for the stream
    (one ``DecodeError``, then nothing). Text messages are checked for UTF-8 over their
    whole size, kept or not; compressed messages are always inflated to the end.
    """

    __slots__ = (
        "_cparts",
        "_deflate",
        "_ffin",
        "_fhlen",
        "_fkey",
        "_flen",
        "_fop",
        "_fphase",
        "_from_client",
        "_fstart",
        "_hdr",
        "_hstart",
        "_in_payload",
        "_inflater",
        "_max",
        "_mcomp",
        "_mdec",
        "_mframes",
        "_mkept",
        "_mop",
        "_mparts",
        "_mrsv",
        "_msize",
        "_mutf8",
        "_mwire",
        "_no_takeover",
        "_pos",
        "_remaining",
        "_wbits",
        "boundary_offset",
        "failed",
        "mask_error",
    )

    def __init__(
        self,
        from_client: bool,
        deflate: DeflateParams | None = None,
        max_payload: int = 1 << 20,
    ) -> None:
        self._from_client = from_client
        self._deflate = deflate
        self._max = max(0, max_payload)
        if deflate is None:
            self._no_takeover = False
            self._wbits = 15
        elif from_client:
            self._no_takeover = deflate.client_no_context_takeover
            self._wbits = deflate.client_max_window_bits
        else:
            self._no_takeover = deflate.server_no_context_takeover
            self._wbits = deflate.server_max_window_bits
        # zlib may silently deflate with a 9-bit window when asked for 8; a larger inflate
        # window decodes any smaller one.
        self._wbits = min(15, max(9, self._wbits))
        self._inflater: zlib._Decompress | None = None
        self.failed = False
        self.boundary_offset: int | None = None
        # absolute offset of the first frame masked the wrong way (a client frame without a
        # mask, a server frame with one): parsed anyway, reported once by the relay
        self.mask_error: int | None = None
        self._pos = 0  # absolute offset of the data passed to the current feed()
        self._hdr = b""  # partial frame header carried over from the previous feed()
        self._hstart = 0  # absolute offset of that partial header
        # the frame whose payload is being read (across feeds)
        self._in_payload = False
        self._remaining = 0
        self._fop = 0
        self._ffin = 0
        self._fkey: bytes | None = None
        self._fphase = 0
        self._fstart = 0
        self._fhlen = 0
        self._flen = 0
        self._cparts: list[bytes] = []  # raw payload of a control frame split across feeds
        # the message being assembled (multi-frame, compressed or spread across feeds)
        self._mop = 0  # its opcode; 0 = no message open
        self._mrsv = 0
        self._mcomp = False
        self._mparts: list[bytes] = []
        self._mkept = 0
        self._msize = 0
        self._mwire = 0
        self._mframes: list[int] = []
        self._mdec: codecs.IncrementalDecoder | None = None
        self._mutf8 = True

    @property
    def at_frame_boundary(self) -> bool:
        return not (self.failed or self._in_payload or self._hdr)

    @property
    def at_message_boundary(self) -> bool:
        return not (self.failed or self._in_payload or self._hdr or self._mop)

    @property
    def offset(self) -> int:
        """Bytes fed so far (the absolute offset of the next byte)."""
        return self._pos

    @property
    def in_message(self) -> bool:
        """Some bytes of a data message (its first frame header at least) were fed and the
        message has not ended."""
        if self.failed:
            return False
        if self._mop:
            return True
        return bool(self._hdr) and (self._hdr[0] & 0x0F) < 8

    @property
    def partial_control_start(self) -> int | None:
        """Absolute offset where a control frame that is not complete yet starts, else None."""
        if self.failed:
            return None
        if self._in_payload:
            return self._fstart if self._fop >= 8 else None
        if self._hdr and (self._hdr[0] & 0x0F) >= 8:
            return self._hstart
        return None

    @property
    def max_payload(self) -> int:
        return self._max

    @max_payload.setter
    def max_payload(self, n: int) -> None:
        """Payload bytes kept per message from now on (the relay keeps whole messages while
        it may have to re-frame them). Takes effect for the rest of the current message."""
        self._max = max(0, n)

    # ------------------------------------------------------------------ feed

    def feed(
        self, data: bytes, boundary: Literal["frame", "message"] | None = None
    ) -> list[DecodedItem]:
        """Consume bytes, return the items completed by them.

        With ``boundary`` set, also sets ``self.boundary_offset`` to the first offset o in
        [0, len(data)] where the stream is at a frame boundary ("frame") or at a frame
        boundary outside a fragmented data message ("message"), else None.
        """
        out: list[DecodedItem] = []
        if self.failed:
            if boundary is not None:
                self.boundary_offset = None
            return out
        if type(data) is not bytes:
            data = bytes(data)
        n = len(data)
        want = 0 if boundary is None else 1 if boundary == "frame" else 2
        bo: int | None = None
        if want and not (self._in_payload or self._hdr or (want == 2 and self._mop)):
            bo = 0
            want = 0
        i = 0
        try:
            while True:
                if self._in_payload:  # only ever at i == 0
                    rem = self._remaining
                    take = rem if rem <= n else n
                    if take:
                        if self._fop >= 8:
                            self._cparts.append(data[:take])
                        else:
                            self._data_chunk(memoryview(data)[:take])
                        i = take
                        rem -= take
                        self._remaining = rem
                    if rem:
                        break
                    self._in_payload = False
                    if self._fop >= 8:
                        raw = b"".join(self._cparts)
                        self._cparts = []
                        out.append(
                            _control(self._fop, raw, self._fkey, self._fhlen + self._flen, i)
                        )
                    else:
                        self._data_frame_done(i, out)
                    if want and (want == 1 or not self._mop):
                        bo = i
                        want = 0
                    continue

                # ---- frame header (possibly completing one carried over)
                if self._hdr:
                    base = len(self._hdr)
                    buf = self._hdr + data[:14]
                    j = 0
                else:
                    if i >= n:
                        break
                    base = 0
                    buf = data
                    j = i
                avail = len(buf) - j
                key: bytes | None = None
                complete = False
                b0 = ln = h = 0
                if avail >= 2:
                    b0 = buf[j]
                    b1 = buf[j + 1]
                    ln = b1 & 0x7F
                    h = j + 2
                    if ln < 126:
                        complete = True
                    elif ln == 126:
                        if avail >= 4:
                            ln = (buf[h] << 8) | buf[h + 1]
                            h += 2
                            complete = True
                    elif avail >= 10:
                        ln = int.from_bytes(buf[h : h + 8], "big")
                        h += 8
                        complete = True
                    if complete and b1 & 0x80:
                        if h + 4 <= j + avail:
                            key = buf[h : h + 4]
                            h += 4
                        else:
                            complete = False
                if not complete:
                    if base:
                        self._hdr = buf  # all of data is in buf (a header is <= 14 bytes)
                    else:
                        self._hdr = data[i:]
                        self._hstart = self._pos + i
                    i = n
                    break
                if base:
                    fstart = self._hstart
                    self._hdr = b""
                    i = h - base
                    hlen = h
                else:
                    fstart = self._pos + i
                    hlen = h - i
                    i = h
                op = b0 & 0x0F
                fin = b0 & 0x80
                rsv = (b0 >> 4) & 7
                if (key is None) is self._from_client and self.mask_error is None:
                    self.mask_error = fstart

                # ---- validation
                if op >= 8:
                    bad = op > 10 or not fin or ln > 125 or rsv
                elif op == 0:
                    bad = not self._mop or rsv or ln >> 63
                else:
                    bad = (
                        op > 2
                        or self._mop
                        or ln >> 63
                        or (rsv and (rsv != 4 or self._deflate is None))
                    )
                if bad:
                    raise _Fail(fstart, self._frame_error(op, fin, rsv, ln))

                # ---- payload
                avail = n - i
                if op >= 8:
                    if ln <= avail:
                        end = i + ln
                        out.append(_control(op, data[i:end], key, hlen + ln, end))
                        i = end
                    else:
                        self._cparts = [data[i:]]
                        self._enter_payload(op, fin, key, fstart, hlen, ln, avail)
                        i = n
                        break
                elif op and fin and not rsv and ln <= avail and ln <= self._max:
                    # fast path: a whole single-frame uncompressed message
                    end = i + ln
                    p = data[i:end]
                    if key is not None:
                        p = _apply_mask(p, key)
                    ok = True
                    if op == _TEXT and not p.isascii():
                        try:
                            p.decode()
                        except UnicodeDecodeError:
                            ok = False
                    out.append(DataMessage(op, p, ln, hlen + ln, 1, (), False, 0, ok, end))
                    i = end
                else:
                    if op:
                        self._start_message(op, rsv)
                    self._fkey = key
                    self._fphase = 0
                    self._fstart = fstart
                    self._fhlen = hlen
                    self._flen = ln
                    self._ffin = fin
                    if ln <= avail:
                        if ln:
                            self._data_chunk(memoryview(data)[i : i + ln])
                            i += ln
                        self._data_frame_done(i, out)
                    else:
                        if avail:
                            self._data_chunk(memoryview(data)[i:])
                        self._enter_payload(op, fin, key, fstart, hlen, ln, avail)
                        i = n
                        break
                if want and (want == 1 or not self._mop):
                    bo = i
                    want = 0
        except _Fail as e:
            self.failed = True
            self._release()
            out.append(DecodeError(e.offset, e.error))
        self._pos += n
        if boundary is not None:
            self.boundary_offset = bo
        return out

    # ------------------------------------------------------------------ helpers

    def _frame_error(self, op: int, fin: int, rsv: int, ln: int) -> str:
        if 2 < op < 8 or op > 10:
            return f"reserved opcode 0x{op:x}"
        if rsv & 3:
            return f"reserved bits RSV2/RSV3 set (rsv={rsv:03b})"
        if rsv:
            if self._deflate is None:
                return "RSV1 set without permessage-deflate"
            if op >= 8:
                return "RSV1 set on a control frame"
            if op == 0:
                return "RSV1 set on a continuation frame"
        if op >= 8:
            if not fin:
                return "fragmented control frame"
            return f"control frame payload of {ln} bytes (max 125)"
        if op == 0 and not self._mop:
            return "continuation frame without a message"
        if op and self._mop:
            return "new data frame inside a fragmented message"
        return "payload length with the most significant bit set"

    def _enter_payload(
        self, op: int, fin: int, key: bytes | None, fstart: int, hlen: int, ln: int, got: int
    ) -> None:
        self._in_payload = True
        self._remaining = ln - got
        self._fop = op
        self._ffin = fin
        self._fkey = key
        self._fphase = got & 3
        self._fstart = fstart
        self._fhlen = hlen
        self._flen = ln

    def _start_message(self, op: int, rsv: int) -> None:
        self._mop = op
        self._mrsv = rsv
        self._mcomp = bool(rsv & 4)
        self._mparts = []
        self._mkept = 0
        self._msize = 0
        self._mwire = 0
        self._mframes = []
        self._mdec = None
        self._mutf8 = True
        if self._mcomp and self._inflater is None:
            self._inflater = zlib.decompressobj(-self._wbits)

    def _release(self) -> None:
        self._mparts = []
        self._cparts = []
        self._mframes = []
        self._mdec = None
        self._inflater = None
        self._hdr = b""
        self._in_payload = False
        self._mop = 0

    def _data_chunk(self, chunk: memoryview) -> None:
        """Masked payload bytes of the current data frame (any part of it)."""
        n = len(chunk)
        key = self._fkey
        phase = self._fphase
        if self._mcomp:
            if n <= _SLICE:
                self._inflate(_unmask(chunk, key, phase) if key is not None else chunk)
            else:
                for s in range(0, n, _SLICE):
                    self._inflate(_unmask(chunk[s : s + _SLICE], key, phase))
        else:
            room = self._max - self._mkept
            if n <= room or (self._mutf8 and self._mop == _TEXT):
                if n <= _SLICE:
                    self._emit(_unmask(chunk, key, phase))
                else:
                    for s in range(0, n, _SLICE):
                        self._emit(_unmask(chunk[s : s + _SLICE], key, phase))
            else:  # only the kept part needs unmasking
                if room > 0:
                    self._emit(_unmask(chunk[:room], key, phase))
                    n -= room
                self._msize += n
        self._fphase = (phase + len(chunk)) & 3

    def _inflate(self, data: bytes | memoryview) -> None:
        d = self._inflater
        assert d is not None
        emit = self._emit
        try:
            if len(data) <= _INFLATE_IN:
                pieces: list[bytes | memoryview] = [data]
            else:
                mv = memoryview(data)
                pieces = [mv[s : s + _INFLATE_IN] for s in range(0, len(mv), _INFLATE_IN)]
            for piece in pieces:
                while True:
                    o = d.decompress(piece, _INFLATE_OUT)
                    if o:
                        emit(o)
                    piece = d.unconsumed_tail
                    if not piece and len(o) < _INFLATE_OUT:
                        break
        except zlib.error as e:
            raise _Fail(self._fstart, f"inflate failed: {e}") from None

    def _emit(self, b: bytes) -> None:
        """Decoded payload bytes of the current message."""
        n = len(b)
        self._msize += n
        room = self._max - self._mkept
        if n <= room:
            self._mparts.append(b)
            self._mkept += n
            return
        if room > 0:
            self._mparts.append(b[:room])
            self._mkept += room
            b = b[room:]
        if self._mutf8 and self._mop == _TEXT:
            dec = self._mdec
            try:
                if dec is None:
                    dec = self._mdec = _Utf8Decoder()
                    for p in self._mparts:
                        dec.decode(p)
                dec.decode(b)
            except UnicodeDecodeError:
                self._mutf8 = False

    def _data_frame_done(self, end: int, out: list[DecodedItem]) -> None:
        ln = self._flen
        self._mwire += self._fhlen + ln
        self._mframes.append(ln)
        if not self._ffin:
            return
        if self._mcomp:
            self._inflate(_SYNC_TAIL)
            d = self._inflater
            if self._no_takeover or (d is not None and d.eof):
                self._inflater = None
        parts = self._mparts
        payload = parts[0] if len(parts) == 1 else b"".join(parts)
        op = self._mop
        ok = True
        if op == _TEXT:
            ok = self._mutf8
            if ok:
                dec = self._mdec
                try:
                    if dec is not None:
                        dec.decode(b"", True)
                    elif not payload.isascii():
                        payload.decode()
                except UnicodeDecodeError:
                    ok = False
        frames = self._mframes
        out.append(
            DataMessage(
                op,
                payload,
                self._msize,
                self._mwire,
                len(frames),
                tuple(frames) if len(frames) > 1 else (),
                self._mcomp,
                self._mrsv,
                ok,
                end,
            )
        )
        self._mop = 0
        self._mparts = []
        self._mframes = []
        self._mdec = None


def _control(op: int, raw: bytes, key: bytes | None, wire: int, end: int) -> Control:
    p = _unmask(raw, key) if key is not None else raw
    if op != _CLOSE:
        return Control(op, p, wire, None, "", None, end)
    code: int | None = None
    reason = ""
    errors: list[str] = []
    if len(p) == 1:
        errors.append("close payload of 1 byte")
    elif len(p) >= 2:
        code = (p[0] << 8) | p[1]
        if not valid_close_code(code):
            errors.append(f"invalid close code {code}")
        r = p[2:]
        try:
            reason = r.decode()
        except UnicodeDecodeError:
            reason = r.decode(errors="replace")
            errors.append("close reason not UTF-8")
    return Control(op, p, wire, code, reason, "; ".join(errors) or None, end)


# ---------------------------------------------------------------------- builders


def build_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | bool | None = None,
) -> bytes:
    """One wire frame. ``mask``: None/False = unmasked, True = random 4-byte key, bytes = key.

    Any opcode 0-15 is accepted (reserved ones included, for fault injection); control
    frames (8-15) must have FIN set and at most 125 bytes of payload."""
    if not 0 <= opcode <= 15:
        raise FrameError(f"opcode {opcode} out of range 0-15")
    if not 0 <= rsv <= 7:
        raise FrameError(f"rsv {rsv} out of range 0-7")
    payload = bytes(payload)
    n = len(payload)
    if opcode >= 8:
        if n > 125:
            raise FrameError(f"control frame payload of {n} bytes (max 125)")
        if not fin:
            raise FrameError("control frames cannot be fragmented")
    key: bytes | None
    if mask is None or mask is False:
        key = None
    elif mask is True:
        key = os.urandom(4)
    else:
        key = bytes(mask)
        if len(key) != 4:
            raise FrameError(f"mask key must be 4 bytes, got {len(key)}")
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if key is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + _unmask(payload, key)


def build_close(code: int | None, reason: str = "", *, mask: bytes | bool | None = None) -> bytes:
    """A close frame; ``code`` None = no status code (then ``reason`` must be empty)."""
    if code is None:
        if reason:
            raise FrameError("a close reason needs a close code")
        payload = b""
    else:
        if not valid_close_code(code):
            raise FrameError(f"invalid close code {code}")
        try:
            payload = code.to_bytes(2, "big") + reason.encode()
        except UnicodeEncodeError as e:
            raise FrameError(f"close reason not encodable: {e}") from None
        if len(payload) > 125:
            raise FrameError(f"close reason too long ({len(payload) - 2} bytes, max 123)")
    return build_frame(_CLOSE, payload, mask=mask)
