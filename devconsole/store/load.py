"""Open any capture a command can read, detected from its content:

- a devconsole capture file (``*.dcap``, msgpack, starts with its header);
- a segmented recording (a directory of capture segments, ``proxy --record``);
- a HAR file (JSON) from Chrome/Edge, Firefox, mitmproxy, HTTP Toolkit or devconsole.

``open_events(path)`` returns an ``EventReader``: iterate it for the Events, then read
``error`` (the file was damaged: everything before the damage was delivered) and
``notes`` (what the format does not carry, segments removed...). ``load_session`` applies
a whole capture to an unbounded Session (replay, mock, report, HAR export).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Literal, Protocol

from devconsole.model import Event
from devconsole.session import Session
from devconsole.source import SourceError
from devconsole.store.capture import _MAGIC_PACKED, CaptureError, CaptureReader

Kind = Literal["capture", "recording", "har"]
PathLike = str | os.PathLike[str]


class EventReader(Protocol):
    @property
    def kind(self) -> Kind: ...

    description: str  # e.g. "Chrome HAR file x.har"
    proxy: str
    notes: list[str]

    @property
    def error(self) -> str | None: ...

    @property
    def events_read(self) -> int: ...

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


def detect(path: PathLike) -> Kind:
    """What ``path`` holds, from its content. Raises CaptureError if it is none of the
    readable kinds, OSError if it cannot be read."""
    p = os.fspath(path)
    if os.path.isdir(p):
        from devconsole.store.segments import is_recording

        if is_recording(p):
            return "recording"
        raise CaptureError(f"{p}: a directory, but not a devconsole recording (no segments)")
    with open(p, "rb") as fh:
        head = fh.read(64)
    if not head:
        raise CaptureError(f"{p}: not a devconsole capture file (empty file)")
    if (head[0] & 0xF0) == 0x90 and head[1 : 1 + len(_MAGIC_PACKED)] == _MAGIC_PACKED[
        : len(head) - 1
    ]:
        return "capture"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"{"):
        return "har"
    raise CaptureError(
        f"{p}: not a devconsole capture file, recording or HAR file (unrecognised content)"
    )


class _CaptureEvents:
    kind: Kind = "capture"

    def __init__(self, path: str, strict: bool) -> None:
        self._r = CaptureReader(path, strict=strict)
        self.description = f"capture {path}"
        self.proxy = self._r.header.proxy
        self.notes: list[str] = []

    @property
    def error(self) -> str | None:
        return self._r.error

    @property
    def events_read(self) -> int:
        return self._r.events_read

    def __iter__(self) -> Iterator[Event]:
        return iter(self._r)

    def close(self) -> None:
        self._r.close()


class _HarEvents:
    kind: Kind = "har"

    def __init__(self, path: str) -> None:
        from devconsole.store.har import HarError, read_har

        try:
            imp = read_har(path)
        except HarError as e:
            raise CaptureError(str(e)) from None
        self.imported = imp
        self.description = f"{imp.format_name} file {path}"
        self.proxy = ""
        self.error: str | None = None
        self.notes = list(imp.notes)
        if imp.skipped:
            self.notes.append(f"{imp.skipped} HAR entries that are not WebSocket upgrades skipped")
        self.events_read = 0
        self._events = imp.events

    def __iter__(self) -> Iterator[Event]:
        for ev in self._events:
            self.events_read += 1
            yield ev

    def close(self) -> None:
        pass


def open_events(path: PathLike, *, strict: bool = False) -> EventReader:
    """Open ``path`` whatever it holds (see the module docstring). Raises CaptureError
    (unreadable content; with ``strict``, damage while reading) or OSError."""
    p = os.fspath(path)
    kind = detect(p)
    if kind == "capture":
        return _CaptureEvents(p, strict)
    if kind == "recording":
        from devconsole.store.segments import RecordingReader

        return RecordingReader(p, strict=strict)
    return _HarEvents(p)


def probe_any(path: PathLike) -> EventReader:
    """``open_events`` with the errors a CLI shows as one line (SourceError)."""
    try:
        return open_events(path)
    except CaptureError as e:
        raise SourceError(str(e)) from None
    except OSError as e:
        raise SourceError(f"cannot read {os.fspath(path)}: {e.strerror or e}") from None


def unbounded_session() -> Session:
    return Session(max_items=1 << 62, max_bytes=1 << 62, max_connections=1 << 62)


def load_session(
    path: PathLike, session: Session | None = None, **kwargs: Any
) -> tuple[Session, EventReader]:
    """Apply every event of ``path`` to ``session`` (default: an unbounded one). Returns
    the session and the reader (for ``error`` and ``notes``). Raises like
    ``open_events``."""
    s = session if session is not None else unbounded_session()
    reader = open_events(path, **kwargs)
    try:
        batch: list[Event] = []
        for ev in reader:
            batch.append(ev)
            if len(batch) >= 5000:
                s.apply_all(batch)
                batch = []
        s.apply_all(batch)
    finally:
        reader.close()
    return s, reader
