"""Recordings without limit: every event written to disk as it happens, in segments.

A recording is a directory of segments, ``00000001.dcap``, ``00000002.dcap``...: each is
an ordinary capture file (so any devconsole, old ones included, opens a segment alone)
whose header map also says where it sits in the recording:

- ``segment``: its number (from 1);
- ``events_before``: events written before it (its own first event is number
  ``events_before + 1``; the Snapshot a rotation writes first is not counted);
- ``after_seq``: the highest item seq written before it (its items have larger seqs);
- ``snapshot``: true when it starts with a Snapshot of every known connection, so the
  segment stands on its own once older segments are removed.

A closed segment also gets ``NNNNNNNN.idx``: a msgpack list of ``[seq, offset]`` pairs
every ~1000 items, so a reader can load a seq range without decoding the whole segment.

``SegmentWriter`` writes a recording (rotation at ``segment_bytes``; with ``max_bytes``
the oldest segments are removed so the directory stays within it). ``Recorder`` feeds a
writer from a proxy's Session without slowing forwarding: the proxy's loop only appends
events to a list (a Session observer); every ``interval`` it hands the list to a writer
thread, which encodes, writes and syncs. ``RecordingReader`` reads a recording back in
order, with a GapEvent where segments were removed or damaged; ``SegmentIndex`` loads
items by seq on demand (for a viewer scrolling back past its ring buffer).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import msgpack

from devconsole import wire
from devconsole.model import ControlFrame, Event, GapEvent, Item, Message, Snapshot
from devconsole.store.capture import MAGIC, VERSION, CaptureError, CaptureReader, _unpacker

logger = logging.getLogger("devconsole.store.segments")

SEGMENT_BYTES = 64 << 20
INDEX_EVERY = 1024  # items between two index entries
_SEG_RE = re.compile(r"^(\d{8})\.dcap$")


def parse_size(spec: str) -> int:
    """``1024``, ``500k``, ``64m``, ``1.5g``, ``2t`` (binary units) as bytes."""
    s = spec.strip().lower().removesuffix("b").removesuffix("i")
    mult = 1
    if s and s[-1] in "kmgt":
        mult = 1 << (10 * ("kmgt".index(s[-1]) + 1))
        s = s[:-1]
    try:
        v = float(s)
    except ValueError:
        raise ValueError(f"not a size: {spec!r} (e.g. 500m, 2g)") from None
    if not v > 0 or v * mult > 1 << 62:
        raise ValueError(f"not a size: {spec!r} (must be positive)")
    return int(v * mult)


def segment_name(n: int) -> str:
    return f"{n:08d}.dcap"


def list_segments(path: str) -> list[tuple[int, str]]:
    """``(number, file path)`` of the segments in ``path``, in order."""
    out = []
    try:
        names = os.listdir(path)
    except OSError:
        return []
    for name in names:
        m = _SEG_RE.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(path, name)))
    out.sort()
    return out


def is_recording(path: str) -> bool:
    return os.path.isdir(path) and bool(list_segments(path))


# ------------------------------------------------------------------ writing


@dataclass
class _Closed:
    number: int
    path: str
    size: int
    events: int


class SegmentWriter:
    """Writes a recording directory (see the module docstring). Not thread-safe: one
    thread calls ``write``/``flush``/``rotate``/``close``.

    Refuses a directory that already holds segments (``FileExistsError``) unless
    ``overwrite``; creates it (mode 0700; segments are 0600: they hold cookies and
    tokens) if needed."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        proxy: str = "",
        segment_bytes: int = SEGMENT_BYTES,
        max_bytes: int | None = None,
        overwrite: bool = False,
        sync_interval: float = 1.0,
        on_remove: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.proxy = proxy
        self.max_bytes = max_bytes
        if max_bytes is not None:
            # keep removal fine-grained: at least ~8 segments fit in the budget
            segment_bytes = max(64 << 10, min(segment_bytes, max_bytes // 8))
        self.segment_bytes = segment_bytes
        self.sync_interval = sync_interval
        self.on_remove = on_remove
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise FileExistsError(17, "exists and is not a directory (a recording)", self.path)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        existing = list_segments(self.path)
        if existing:
            if not overwrite:
                raise FileExistsError(17, "already holds a recording", self.path)
            for _n, p in existing:
                for f in (p, p[: -len(".dcap")] + ".idx"):
                    with contextlib.suppress(OSError):
                        os.unlink(f)
        self.created = time.time()
        self.events_written = 0  # events written, rotation snapshots not counted
        self.bytes_written = 0  # bytes of every segment ever written (removed ones too)
        self.last_seq = 0
        self.removed_segments = 0
        self.removed_bytes = 0
        self.removed_events = 0
        self._closed: list[_Closed] = []
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self._fd: int | None = None
        self._number = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._seg_bytes = 0  # bytes in the current segment (pending included)
        self._seg_events = 0
        self._index: list[tuple[int, int]] = []
        self._since_index = INDEX_EVERY
        self._last_sync = time.monotonic()
        self._open_segment(None)

    # -- segments

    @property
    def segment(self) -> int:
        return self._number

    @property
    def full(self) -> bool:
        """The current segment reached ``segment_bytes``: call ``rotate``."""
        return self._seg_bytes >= self.segment_bytes

    def _open_segment(self, snapshot: Snapshot | None) -> None:
        self._number += 1
        p = os.path.join(self.path, segment_name(self._number))
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(p, flags, 0o600)
        meta = {
            "created": self.created,
            "proxy": self.proxy,
            "segment": self._number,
            "events_before": self.events_written,
            "after_seq": self.last_seq,
            "snapshot": snapshot is not None,
        }
        header = msgpack.packb([MAGIC, VERSION, meta], use_bin_type=True)
        self._seg_bytes = 0
        self._seg_events = 0
        self._index = []
        self._since_index = INDEX_EVERY
        self._append(header)
        if snapshot is not None:
            self._append(self._packer.pack(wire.encode_event(snapshot)))
        self.flush()

    def _append(self, b: bytes) -> None:
        self._pending.append(b)
        self._pending_bytes += len(b)
        self._seg_bytes += len(b)

    def write(self, events: Iterable[Event]) -> int:
        """Append ``events`` to the current segment (buffered until ``flush``)."""
        if self._fd is None:
            raise ValueError("recording writer is closed")
        pack = self._packer.pack
        encode = wire.encode_event
        n = 0
        for ev in events:
            b = pack(encode(ev))
            t = type(ev)
            if t is Message or t is ControlFrame:
                seq = ev.seq  # type: ignore[union-attr]
                if seq > self.last_seq:
                    self.last_seq = seq
                self._since_index += 1
                if self._since_index >= INDEX_EVERY:
                    self._index.append((seq, self._seg_bytes))
                    self._since_index = 0
            self._append(b)
            n += 1
        self.events_written += n
        self._seg_events += n
        return n

    def flush(self, sync: bool | None = None) -> None:
        """Write what is pending to the segment file (whole events only); with ``sync``
        (default: once per ``sync_interval``) also to the disk."""
        if self._fd is None:
            return
        if self._pending:
            data = b"".join(self._pending)
            self._pending = []
            self._pending_bytes = 0
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            self.bytes_written += len(data)
        now = time.monotonic()
        if sync or (sync is None and now - self._last_sync >= self.sync_interval):
            self._last_sync = now
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def _close_segment(self) -> None:
        if self._fd is None:
            return
        self.flush(sync=True)
        os.close(self._fd)
        self._fd = None
        seg = os.path.join(self.path, segment_name(self._number))
        idx = seg[: -len(".dcap")] + ".idx"
        try:
            fd = os.open(idx, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgpack.packb([list(p) for p in self._index], use_bin_type=True))
        except OSError as e:
            logger.warning("cannot write the segment index %s: %s", idx, e)
        self._closed.append(_Closed(self._number, seg, self._seg_bytes, self._seg_events))

    def rotate(self, snapshot: Snapshot | None = None) -> None:
        """Close the current segment and start the next one, which begins with
        ``snapshot`` (the connections known now) when given. Removes the oldest segments
        if ``max_bytes`` requires it."""
        self._close_segment()
        self._enforce_max()
        self._open_segment(snapshot)

    def _enforce_max(self) -> None:
        if self.max_bytes is None:
            return
        # room for the next segment too, so the directory never exceeds max_bytes by more
        # than one batch
        total = sum(c.size for c in self._closed)
        while self._closed and total + self.segment_bytes > self.max_bytes:
            old = self._closed.pop(0)
            total -= old.size
            for f in (old.path, old.path[: -len(".dcap")] + ".idx"):
                with contextlib.suppress(OSError):
                    os.unlink(f)
            self.removed_segments += 1
            self.removed_bytes += old.size
            self.removed_events += old.events
            logger.info(
                "recording: removed segment %d (%d bytes, %d events) to stay within %d bytes",
                old.number,
                old.size,
                old.events,
                self.max_bytes,
            )
            if self.on_remove is not None:
                self.on_remove(old.number, old.size, old.events)

    def disk_bytes(self) -> int:
        return sum(c.size for c in self._closed) + self._seg_bytes

    def close(self) -> None:
        """Flush, sync and close (the last segment gets its index too). Idempotent."""
        if self._fd is None:
            return
        self._close_segment()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------ the proxy's recorder


@dataclass
class RecorderStats:
    events: int = 0  # events handed to the writer
    dropped: int = 0  # events not written because the disk fell behind
    batches: int = 0
    write_seconds: float = 0.0  # time the writer thread spent encoding and writing


class Recorder:
    """Records a proxy's events to a SegmentWriter off the forwarding path.

    ``on_event`` is a Session observer: it appends to a list and nothing else. ``run()``
    (a task on the proxy's loop) hands the list to a writer thread every ``interval``
    seconds, and asks for a rotation (with a Snapshot of the Session, taken on the loop
    at a batch boundary so it matches the stream) when the segment is full. If the
    writer falls more than ``max_pending`` events or ``max_pending_bytes`` payload bytes
    behind, a batch is dropped and a GapEvent written in its place: the proxy's memory
    stays bounded and the gap is visible when the recording is opened."""

    def __init__(
        self,
        writer: SegmentWriter,
        snapshot: Callable[[], Snapshot],
        *,
        interval: float = 0.2,
        max_pending: int = 2_000_000,
        max_pending_bytes: int = 256 << 20,
    ) -> None:
        self.writer = writer
        self.snapshot = snapshot
        self.interval = interval
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.stats = RecorderStats()
        self.error: str | None = None
        self._buf: list[Event] = []
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._pending_events = 0
        self._pending_bytes = 0
        self._rotate_queued = False
        self._thread = threading.Thread(
            target=self._write_loop, name="devconsole-recorder", daemon=True
        )
        self._thread.start()
        self._stopped = False

    def on_event(self, ev: Event) -> None:
        self._buf.append(ev)

    def _hand_over(self) -> None:
        """On the loop: pass what arrived to the writer thread."""
        batch = self._buf
        if batch:
            self._buf = []
            nbytes = 0
            for ev in batch:
                t = type(ev)
                if t is Message or t is ControlFrame:
                    nbytes += len(ev.payload)  # type: ignore[union-attr]
            with self._lock:
                behind = (
                    self._pending_events + len(batch) > self.max_pending
                    or self._pending_bytes + nbytes > self.max_pending_bytes
                )
                if not behind:
                    self._pending_events += len(batch)
                    self._pending_bytes += nbytes
            if behind:
                self.stats.dropped += len(batch)
                logger.warning(
                    "recording fell behind the traffic: %d events not written", len(batch)
                )
                batch = [GapEvent(len(batch), "the recording fell behind: events not written")]
            self.stats.events += len(batch)
            self.stats.batches += 1
            self._queue.put(batch)
        if self.writer.full and not self._rotate_queued:
            self._rotate_queued = True
            self._queue.put(("rotate", self.snapshot()))

    async def run(self) -> None:
        """Hand over batches until cancelled or ``stop()``."""
        while not self._stopped:
            await asyncio.sleep(self.interval)
            self._hand_over()

    def _write_loop(self) -> None:
        w = self.writer
        while True:
            item = self._queue.get()
            if item is None:
                break
            t0 = time.perf_counter()
            try:
                if isinstance(item, tuple):
                    w.rotate(item[1])
                    self._rotate_queued = False
                else:
                    w.write(item)
                    w.flush()
                    nbytes = 0
                    for ev in item:
                        t = type(ev)
                        if t is Message or t is ControlFrame:
                            nbytes += len(ev.payload)
                    with self._lock:
                        self._pending_events = max(0, self._pending_events - len(item))
                        self._pending_bytes = max(0, self._pending_bytes - nbytes)
            except Exception as e:  # a full disk must not take the proxy down
                if self.error is None:
                    self.error = f"recording to {w.path} failed: {e}"
                    logger.error("%s", self.error)
            self.stats.write_seconds += time.perf_counter() - t0

    async def stop(self) -> None:
        """Write what is left, close the recording."""
        if self._stopped:
            return
        self._stopped = True
        self._hand_over()
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        with contextlib.suppress(Exception):
            self.writer.close()

    def stop_sync(self) -> None:
        """``stop`` without a loop (tests, atexit)."""
        if self._stopped:
            return
        self._stopped = True
        self._hand_over()
        self._queue.put(None)
        self._thread.join()
        with contextlib.suppress(Exception):
            self.writer.close()


# ------------------------------------------------------------------ reading


@dataclass
class SegmentInfo:
    number: int
    path: str
    events_before: int
    after_seq: int
    snapshot: bool
    created: float
    proxy: str


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def segment_info(number: int, path: str) -> SegmentInfo:
    """The header of one segment; raises CaptureError / OSError."""
    with CaptureReader(path) as r:
        meta = r.header.meta
        return SegmentInfo(
            number,
            path,
            _int(meta.get("events_before")),
            _int(meta.get("after_seq")),
            meta.get("snapshot") is True,
            r.header.created,
            r.header.proxy,
        )


class RecordingReader:
    """Reads a recording directory in order: the events of every segment, a GapEvent
    for the events of segments removed (``--record-max``) or unreadable, and the torn
    tail of a recording whose writer died reported in ``error`` (like a capture file).
    Damage inside an older segment is reported in ``notes`` and reading goes on."""

    kind: Literal["recording"] = "recording"

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self.description = f"recording {self.path}"
        self.error: str | None = None
        self.notes: list[str] = []
        self.events_read = 0
        self.segments = list_segments(self.path)
        if not self.segments:
            raise CaptureError(f"{self.path}: not a devconsole recording (no segments)")
        first = segment_info(*self.segments[0])
        self.proxy = first.proxy
        self.created = first.created
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        return self._events()

    def _events(self) -> Iterator[Event]:
        expected = 0  # events_before the next segment should have
        prev = 0
        for i, (number, path) in enumerate(self.segments):
            if self._closed:
                return
            last = i == len(self.segments) - 1
            try:
                info = segment_info(number, path)
            except (CaptureError, OSError) as e:
                self.notes.append(f"segment {number} unreadable: {e}")
                if self.strict:
                    raise CaptureError(str(e)) from None
                continue
            missing = info.events_before - expected
            if missing > 0 or number != prev + 1:
                if number != prev + 1 and prev == 0:
                    why = f"segments 1-{number - 1} removed (--record-max)"
                elif number != prev + 1:
                    why = f"segments {prev + 1}-{number - 1} missing"
                else:
                    why = f"segment {prev} damaged"
                self.notes.append(f"{max(missing, 0)} events lost: {why}")
                yield GapEvent(max(missing, 0), f"recording: {why}")
            prev = number
            r = CaptureReader(path, strict=False)
            n = 0
            with r:
                for ev in r:
                    n += 1
                    self.events_read += 1
                    yield ev
            own = n - (1 if info.snapshot and n else 0)
            expected = info.events_before + own
            if r.error is not None:
                msg = r.error
                if last:
                    self.error = msg + " (the recording stopped mid-write)"
                else:
                    self.notes.append(msg)
                if self.strict:
                    raise CaptureError(msg)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_index(seg_path: str) -> list[tuple[int, int]]:
    idx = seg_path[: -len(".dcap")] + ".idx"
    try:
        with open(idx, "rb") as fh:
            data = msgpack.unpackb(fh.read(), raw=False)
        return [(int(a), int(b)) for a, b in data]
    except (OSError, ValueError, TypeError, msgpack.UnpackException):
        return []


class SegmentIndex:
    """Random access to the items of a recording, by seq, for a viewer that scrolls back
    past its ring buffer: ``items(lo, hi)`` and ``before(seq, n)`` read only the
    segments (and, with their index, only the part of a segment) that hold them.
    ``refresh()`` picks up new and removed segments of a recording still being written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.segments: list[SegmentInfo] = []
        self._index_cache: dict[str, list[tuple[int, int]]] = {}
        self.refresh()

    def refresh(self) -> None:
        infos = []
        for number, p in list_segments(self.path):
            try:
                infos.append(segment_info(number, p))
            except (CaptureError, OSError):
                continue
        self.segments = infos

    @property
    def first_seq(self) -> int | None:
        """The lowest seq that may still be on disk (items before it were removed)."""
        return self.segments[0].after_seq + 1 if self.segments else None

    @property
    def removed_events(self) -> int:
        """Events of the removed oldest segments."""
        return self.segments[0].events_before if self.segments else 0

    def _segments_for(self, lo: int, hi: int) -> list[SegmentInfo]:
        out = []
        for i, s in enumerate(self.segments):
            end = self.segments[i + 1].after_seq if i + 1 < len(self.segments) else None
            if end is not None and end < lo:
                continue
            if s.after_seq >= hi:
                break
            out.append(s)
        return out

    def _read_from(self, seg: SegmentInfo, lo: int) -> Iterator[Item]:
        """The items of ``seg`` from (about) seq ``lo`` on, using its index."""
        index = self._index_cache.get(seg.path)
        if index is None:
            index = _read_index(seg.path)
            if index:  # closed segments only: an open one has none yet
                self._index_cache[seg.path] = index
        start = 0
        if index:
            k = bisect.bisect_right([s for s, _ in index], lo) - 1
            if k >= 0:
                start = index[k][1]
        if start == 0:
            with CaptureReader(seg.path) as r:
                for ev in r:
                    if isinstance(ev, Message | ControlFrame):
                        yield ev
            return
        unp = _unpacker()
        with open(seg.path, "rb") as fh:
            fh.seek(start)
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    return
                unp.feed(chunk)
                while True:
                    try:
                        obj = unp.unpack()
                    except msgpack.OutOfData:
                        break
                    except Exception:
                        return
                    try:
                        ev = wire.decode_event(obj)
                    except wire.WireError:
                        return
                    if isinstance(ev, Message | ControlFrame):
                        yield ev

    def items(
        self, lo: int, hi: int, conn: str | None = None, limit: int | None = None
    ) -> list[Item]:
        """Items with ``lo <= seq <= hi`` (of ``conn`` if given), oldest first, at most
        ``limit`` (the first ones)."""
        out: list[Item] = []
        for seg in self._segments_for(lo, hi):
            for it in self._read_from(seg, lo):
                if it.seq < lo:
                    continue
                if it.seq > hi:
                    break
                if conn is None or it.conn == conn:
                    out.append(it)
                    if limit is not None and len(out) >= limit:
                        return out
        return out

    def before(self, seq: int, n: int, conn: str | None = None) -> list[Item]:
        """Up to ``n`` items with seq < ``seq`` (of ``conn``), oldest first: the page a
        viewer shows when it scrolls back from ``seq``."""
        out: list[Item] = []
        hi = seq - 1
        floor = self.first_seq or 1
        step = max(n * 4, INDEX_EVERY)
        while hi >= floor and len(out) < n:
            lo = max(floor, hi - step + 1)
            got = self.items(lo, hi, conn)
            out = got + out
            hi = lo - 1
            step *= 4
        return out[-n:] if n else []
