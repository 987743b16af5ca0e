"""Capture files: a recorded stream of Events, and a Source that replays one.

Format (version 1), a stream of msgpack objects with no framing of its own:

1. a header ``["devconsole-capture", 1, {"created": <unix ts>, "proxy": <str>}]``;
2. one object per Event: the ``wire.encode_event`` list ``[tag, field, ...]``, exactly as
   the tap sends them (so a capture is what a tap client received, Snapshot first).

A recording is appended to in batches and flushed, so a crash loses at most the last
batch, and the file stays readable up to it. Reading stops at the first thing that is not
a valid event (a truncated last event, corruption): what came before is returned, and the
problem is reported once, with its byte offset (``CaptureReader.error``; ``strict=True``
raises ``CaptureError`` instead). Nothing but ``CaptureError`` and ``OSError`` escapes the
reader, whatever the file holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO

import msgpack

from devconsole import wire
from devconsole.model import Command, CommandResult, Event, GapEvent
from devconsole.session import Session
from devconsole.source import EventsCallback, Source, SourceError

MAGIC = "devconsole-capture"
VERSION = 1
SUFFIX = ".dcap"  # conventional, not required

_MAGIC_PACKED: bytes = msgpack.packb(MAGIC, use_bin_type=True)
_HEADER_LIMIT = 1 << 20  # a header longer than this is not one
_CHUNK = 1 << 20

PathLike = str | os.PathLike[str]


class CaptureError(Exception):
    """Not a capture file, an unsupported version, or (strict reading) a corrupt one."""


@dataclass(frozen=True, slots=True)
class CaptureHeader:
    version: int
    created: float  # unix timestamp of the recording's start
    proxy: str  # the proxy's listen address(es), for display
    meta: dict[str, Any] = field(default_factory=dict)  # the whole header map


def _header_bytes(created: float, proxy: str) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        [MAGIC, VERSION, {"created": created, "proxy": proxy}], use_bin_type=True
    )


# ------------------------------------------------------------------ writing


class CaptureWriter:
    """Appends Events to a capture file, flushed in batches: when ``flush_bytes`` are
    pending or ``flush_interval`` seconds passed since the last flush (checked on each
    ``write``; call ``flush()`` from a timer when the stream goes quiet). The file is
    created with mode 0600: captures hold cookies and tokens."""

    def __init__(
        self,
        path: PathLike,
        *,
        proxy: str = "",
        created: float | None = None,
        overwrite: bool = True,
        flush_bytes: int = 256 << 10,
        flush_interval: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.events_written = 0
        self.bytes_written = 0
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_TRUNC if overwrite else os.O_EXCL
        fd = os.open(self.path, flags, 0o600)
        self._fh: BinaryIO | None = os.fdopen(fd, "wb")
        self._packer = msgpack.Packer(use_bin_type=True, autoreset=True)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self.header = CaptureHeader(VERSION, time.time() if created is None else created, proxy)
        self._pending.append(_header_bytes(self.header.created, proxy))
        self.flush()  # a new recording is a valid (empty) capture at once

    @property
    def closed(self) -> bool:
        return self._fh is None

    def write(self, events: Iterable[Event]) -> int:
        """Append ``events``; returns how many."""
        if self._fh is None:
            raise ValueError("capture writer is closed")
        pack = self._packer.pack
        encode = wire.encode_event
        n = 0
        size = 0
        for ev in events:
            b = pack(encode(ev))
            self._pending.append(b)
            size += len(b)
            n += 1
        self._pending_bytes += size
        self.events_written += n
        if (
            self._pending_bytes >= self.flush_bytes
            or time.monotonic() - self._last_flush >= self.flush_interval
        ):
            self.flush()
        return n

    def flush(self) -> None:
        """Write what is pending to the file (whole events only)."""
        if self._fh is None:
            return
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending = []
        self._pending_bytes = 0
        self._fh.write(data)
        self._fh.flush()
        self.bytes_written += len(data)

    def close(self) -> None:
        """Flush, sync to disk and close. Idempotent."""
        fh = self._fh
        if fh is None:
            return
        try:
            self.flush()
            with contextlib.suppress(OSError):
                os.fsync(fh.fileno())
        finally:
            self._fh = None
            fh.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def atomic_replace(path: str, prefix: str) -> Iterator[str]:
    """A temporary file (mode 0600) next to ``path`` to write in; it replaces ``path`` when
    the block succeeds and is removed when it fails, so ``path`` is never half-written."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save_capture(path: PathLike, events: Iterable[Event], *, proxy: str = "") -> int:
    """Write a complete capture atomically (``atomic_replace``). Returns the number of
    events."""
    with (
        atomic_replace(os.fspath(path), ".dcap-") as tmp,
        CaptureWriter(tmp, proxy=proxy, flush_bytes=4 << 20, flush_interval=1e9) as w,
    ):
        w.write(events)
    return w.events_written


def session_events(session: Session, proxy: str = "") -> list[Event]:
    """What a Session holds, as Events that rebuild it: a Snapshot of every connection
    (with its counters), a GapEvent with what it missed, then the buffered messages and
    control frames. For saving a view with ``save_capture``."""
    out: list[Event] = [session.snapshot(proxy or session.proxy)]
    if session.missed:
        out.append(GapEvent(session.missed, "missed while viewing, before this was saved"))
    out.extend(session.items())
    return out


# ------------------------------------------------------------------ reading


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"unexpected msgpack extension type {code}")


def _unpacker() -> msgpack.Unpacker:
    max_len = max(1, min(wire.MAX_LEN, wire.MAX_OBJECT))
    return msgpack.Unpacker(
        raw=False,
        use_list=True,
        strict_map_key=True,
        max_buffer_size=wire.MAX_OBJECT,
        max_array_len=max_len,
        max_map_len=max_len,
        ext_hook=_no_ext,
    )


class CaptureReader:
    """Reads a capture file: the header at once (``CaptureError`` if it is not a capture
    file or has an unsupported version), then Events as you iterate.

    A corrupt or truncated file yields every event before the damage, then stops and sets
    ``error`` (a message with the byte offset) and ``error_offset``; with ``strict=True``
    it raises ``CaptureError`` with that message instead."""

    def __init__(self, path: PathLike, *, strict: bool = False, chunk_size: int = _CHUNK) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self.chunk_size = max(1, chunk_size)
        self.error: str | None = None
        self.error_offset: int | None = None
        self.events_read = 0
        self._fed = 0
        self._good_end = 0
        self._unp = _unpacker()
        self._fh: IO[bytes] | None = open(self.path, "rb")  # noqa: SIM115
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise
        self._gen = self._events()

    # ---------------------------------------------------------------- header

    def _read(self) -> bytes:
        if self._fh is None:
            return b""
        data = self._fh.read(self.chunk_size)
        self._fed += len(data)
        return data

    def _not_capture(self, why: str = "") -> CaptureError:
        return CaptureError(f"{self.path}: not a devconsole capture file{why}")

    def _read_header(self) -> CaptureHeader:
        data = self._read()
        while len(data) < 1 + len(_MAGIC_PACKED):
            more = self._read()
            if not more:
                break
            data += more
        if not data:
            raise self._not_capture(" (empty file)")
        head = data[1 : 1 + len(_MAGIC_PACKED)]
        if (data[0] & 0xF0) != 0x90 or head != _MAGIC_PACKED[: len(head)]:
            raise self._not_capture()
        try:
            self._unp.feed(data)
        except msgpack.BufferFull:  # pragma: no cover - chunks are far below the limit
            raise self._not_capture() from None
        while True:
            try:
                obj = self._unp.unpack()
                break
            except msgpack.OutOfData:
                more = self._read() if self._fed < _HEADER_LIMIT else b""
                if not more:
                    raise CaptureError(f"{self.path}: truncated capture header") from None
                try:
                    self._unp.feed(more)
                except msgpack.BufferFull:  # pragma: no cover
                    raise self._not_capture() from None
            except Exception as e:
                raise CaptureError(f"{self.path}: corrupt capture header ({e})") from None
        if not isinstance(obj, list) or len(obj) < 2 or obj[0] != MAGIC:
            raise self._not_capture()
        version = obj[1]
        if not isinstance(version, int) or isinstance(version, bool):
            raise CaptureError(f"{self.path}: corrupt capture header (version)")
        if version != VERSION:
            raise CaptureError(
                f"{self.path}: unsupported capture file version {version} "
                f"(this devconsole reads version {VERSION})"
            )
        meta = obj[2] if len(obj) > 2 else None
        if not isinstance(meta, dict):
            raise CaptureError(f"{self.path}: corrupt capture header (metadata)")
        self._good_end = self._unp.tell()
        created = meta.get("created")
        proxy = meta.get("proxy")
        return CaptureHeader(
            version,
            float(created)
            if isinstance(created, int | float) and not isinstance(created, bool)
            else 0.0,
            proxy if isinstance(proxy, str) else "",
            meta,
        )

    # ---------------------------------------------------------------- events

    def _fail(self, offset: int, what: str) -> None:
        self.error_offset = offset
        self.error = f"{self.path}: {what} at byte {offset} ({self.events_read} events read)"
        self.close()
        if self.strict:
            raise CaptureError(self.error)

    def _events(self) -> Iterator[Event]:
        unp = self._unp
        decode = wire.decode_event
        # msgpack's tell() moves into a partial object, so keep the end of the last whole
        # one: where the damage starts, and how a truncated last event is detected.
        good = self._good_end
        while True:
            while True:
                try:
                    obj = unp.unpack()
                except msgpack.OutOfData:
                    break
                except Exception as e:  # anything msgpack says about bad bytes
                    self._fail(good, f"corrupt data ({type(e).__name__}: {e})")
                    return
                try:
                    ev = decode(obj)
                except Exception as e:  # WireError; anything else is damage too
                    self._fail(good, f"not a valid event ({e})")
                    return
                good = unp.tell()
                self.events_read += 1
                yield ev
            try:
                chunk = self._read()
            except OSError:
                self.close()
                raise
            if not chunk:
                break
            try:
                unp.feed(chunk)
            except msgpack.BufferFull:
                self._fail(good, f"an event larger than {wire.MAX_OBJECT} bytes")
                return
        if good < self._fed:
            self._fail(good, f"truncated: incomplete event ({self._fed - good} bytes)")
            return
        self.close()

    def __iter__(self) -> CaptureReader:
        return self

    def __next__(self) -> Event:
        return next(self._gen)

    def batches(self, size: int = 5000) -> Iterator[list[Event]]:
        """The events in lists of at most ``size``."""
        while batch := list(itertools.islice(self, size)):
            yield batch

    def close(self) -> None:
        fh = self._fh
        self._fh = None
        if fh is not None:
            fh.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_capture(path: PathLike, *, strict: bool = False) -> CaptureReader:
    """Open a capture file: an iterator of its Events (see ``CaptureReader``). Raises
    ``CaptureError`` at once if ``path`` is not a capture file, ``OSError`` if it cannot
    be opened. After iterating, ``reader.error`` says whether the file was damaged."""
    return CaptureReader(path, strict=strict)


def probe(path: PathLike) -> CaptureHeader:
    """The header of ``path`` if it is a readable capture file, recording or HAR file
    (for a HAR: a header with version 0 and its format in ``meta``); raises
    ``SourceError`` otherwise (a one-line message for the CLI)."""
    from devconsole.store.load import probe_any

    reader = probe_any(path)
    try:
        if isinstance(reader, CaptureReader):  # pragma: no cover - wrapped below
            return reader.header
        inner = getattr(reader, "_r", None)
        if isinstance(inner, CaptureReader):
            return inner.header
        return CaptureHeader(
            VERSION if reader.kind == "recording" else 0,
            float(getattr(reader, "created", 0.0) or 0.0),
            reader.proxy,
            {"kind": reader.kind, "description": reader.description},
        )
    finally:
        reader.close()


# ------------------------------------------------------------------ Source


class FileSource:
    """A Source replaying a capture file: the TUI opens a saved session exactly as it
    views a live one. Delivers the events in batches of ``batch_size`` (yielding to the
    event loop between them), then idles until ``close()``. A damaged file delivers what
    is readable, then ``run`` raises ``SourceError`` with the problem (``error``)."""

    def __init__(
        self, path: PathLike, *, batch_size: int = 5000, description: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.batch_size = max(1, batch_size)
        self.description = description or f"file {self.path}"
        self.header: CaptureHeader | None = None
        self.proxy = ""
        self.error: str | None = None
        self.notes: list[str] = []  # what the format lacks, segments removed...
        self.kind = ""  # "capture", "recording" or "har"
        self.events_read = 0
        self.done = False  # every readable event was delivered
        self._closed = asyncio.Event()

    async def run(self, on_events: EventsCallback) -> None:
        from devconsole.store.load import probe_any

        reader = probe_any(self.path)
        self.kind = reader.kind
        self.proxy = reader.proxy
        inner = getattr(reader, "_r", None)
        if isinstance(inner, CaptureReader):
            self.header = inner.header
        if reader.kind != "capture" and self.description == f"file {self.path}":
            self.description = reader.description
        events = iter(reader)
        try:
            while not self._closed.is_set():
                try:
                    batch = list(itertools.islice(events, self.batch_size))
                except OSError as e:
                    raise SourceError(f"cannot read {self.path}: {e.strerror or e}") from None
                except CaptureError as e:
                    raise SourceError(str(e)) from None
                if not batch:
                    break
                self.events_read += len(batch)
                on_events(batch)
                await asyncio.sleep(0)
        finally:
            reader.close()
        self.notes = list(reader.notes)
        self.done = True
        if reader.error is not None:
            self.error = reader.error
            raise SourceError(reader.error)
        await self._closed.wait()

    async def command(self, cmd: Command) -> CommandResult:
        return CommandResult(cmd.id, False, "a capture file is read-only")

    async def close(self) -> None:
        self._closed.set()


# ------------------------------------------------------------------ recording


def _check_writable(path: str) -> None:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "Is a directory", path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise FileNotFoundError(2, "No such directory", parent)
    if not os.access(parent, os.W_OK | os.X_OK) or (
        os.path.exists(path) and not os.access(path, os.W_OK)
    ):
        raise PermissionError(13, "Permission denied", path)


async def record(
    source: Source,
    path: PathLike,
    *,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    proxy: str | None = None,
    overwrite: bool = True,
    on_progress: Callable[[int], None] | None = None,
    flush_interval: float = 1.0,
    segment_bytes: int | None = None,
    max_bytes: int | None = None,
) -> int:
    """Run ``source`` and write every event it delivers to the capture file ``path`` until
    ``duration`` seconds pass, ``stop`` is set, or the source ends. Returns the number of
    events written. The file is created with the first batch (so a tap that cannot be
    reached leaves no file), or empty at the end if nothing arrived; it is flushed at
    least every ``flush_interval`` seconds and closed whatever happens (cancellation
    included). Closes ``source``. Raises what ``source.run`` raised (SourceError) after
    closing the file, ``OSError`` if the file cannot be written.

    With ``segment_bytes`` (or ``max_bytes``) ``path`` is a segmented recording
    (``devconsole.store.segments``): a directory of segments of that size, each starting
    with a Snapshot, the oldest removed to stay within ``max_bytes``."""
    target = os.fspath(path)
    segmented = segment_bytes is not None or max_bytes is not None
    if segmented:
        from devconsole.store.segments import SEGMENT_BYTES, SegmentWriter, list_segments

        if os.path.lexists(target) and not os.path.isdir(target):
            raise FileExistsError(17, "exists and is not a recording directory", target)
        if os.path.isdir(target) and list_segments(target) and not overwrite:
            raise FileExistsError(17, "already holds a recording", target)
        _check_writable(target if not os.path.isdir(target) else os.path.join(target, "x"))
    else:
        _check_writable(target)
        if not overwrite and os.path.lexists(target):
            raise FileExistsError(17, "File exists", target)
    writer: Any = None
    tracker = Session(max_items=1, max_bytes=1 << 40)  # connections, for rotations

    def open_writer() -> Any:
        nonlocal writer
        if writer is None:
            name = proxy if proxy is not None else str(getattr(source, "proxy", "") or "")
            if segmented:
                writer = SegmentWriter(
                    target,
                    proxy=name,
                    segment_bytes=segment_bytes or SEGMENT_BYTES,
                    max_bytes=max_bytes,
                    overwrite=overwrite,
                )
            else:
                writer = CaptureWriter(
                    target, proxy=name, overwrite=overwrite, flush_interval=flush_interval
                )
        return writer

    def on_events(events: list[Event]) -> None:
        w = open_writer()
        w.write(events)
        if segmented:
            tracker.apply_all(events)
            if w.full:
                w.flush()
                w.rotate(tracker.snapshot(w.proxy))
        if on_progress is not None:
            on_progress(w.events_written)

    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + max(0.0, duration)
    run = asyncio.ensure_future(source.run(on_events))
    stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
    error: BaseException | None = None
    try:
        while not run.done():
            if stopper is not None and stopper.done():
                break
            timeout = flush_interval
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    break
                timeout = min(timeout, left)
            waiting: set[asyncio.Future[Any]] = {run}
            if stopper is not None:
                waiting.add(stopper)
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if writer is not None:
                writer.flush()
    finally:
        with contextlib.suppress(Exception):
            await source.close()
        if stopper is not None:
            stopper.cancel()
        if not run.done():
            run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await run
            except Exception as e:
                error = e
        try:
            if writer is None and error is None:
                open_writer()  # an empty recording is still a capture file
        finally:
            if writer is not None:
                writer.close()
    if error is not None:
        raise error
    return writer.events_written if writer is not None else 0


def default_path(directory: PathLike | None = None) -> Path:
    """``devconsole-YYYYmmdd-HHMMSS.dcap`` in ``directory`` (default: the current one)."""
    name = time.strftime("devconsole-%Y%m%d-%H%M%S") + SUFFIX
    return Path(directory or ".") / name
