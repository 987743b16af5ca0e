"""Capture files with real files: round trips of every Event, damaged files (truncated at
every offset, corrupt events, wrong magic, other versions), property tests that any
content only raises CaptureError, FileSource feeding a Session, and record()."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devconsole import wire
from devconsole.model import (
    CloseCommand,
    ConnSnapshot,
    ConnState,
    ControlFrame,
    EndEvent,
    Event,
    GapEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    ProtocolErrorEvent,
    RefusedEvent,
    Snapshot,
    StateEvent,
)
from devconsole.session import Session
from devconsole.source import MemorySource, Source, SourceError
from devconsole.store.capture import (
    MAGIC,
    CaptureError,
    CaptureReader,
    CaptureWriter,
    FileSource,
    probe,
    read_capture,
    record,
    save_capture,
    session_events,
)
from tests import golden
from tests.factories import make_handshake

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def handshake(conn: str = "c1", **kw: Any) -> Handshake:
    fields: dict[str, Any] = dict(
        ts=1700000000.25,
        client="127.0.0.1:51234",
        server="échange.example:443",
        scheme="wss",
        url="wss://échange.example/ws?ticket=abc",
        path="/ws",
        query=[("ticket", "abc")],
        request_headers=[("Host", "échange.example"), ("Cookie", "a=1")],
        cookies=[("a", "1")],
        response_headers=[("Upgrade", "websocket")],
        subprotocol="chat",
        extensions=["permessage-deflate"],
        ts_response=1700000000.5,
    )
    fields.update(kw)
    return make_handshake(conn, **fields)


REFUSED = handshake(
    "r1",
    status=401,
    reason="Unauthorized",
    subprotocol=None,
    extensions=[],
    ts_response=1700000001.0,
    body=b'{"error": "no ticket"}\xff',
    body_size=5000,
)


def all_events() -> list[Event]:
    """One of every Event type, with awkward values."""
    return [
        Snapshot(
            0,
            [
                ConnSnapshot(
                    handshake("c0"),
                    ConnState.CLOSED,
                    1,
                    2,
                    3,
                    4,
                    1000,
                    "bye",
                    "client",
                    5.0,
                    True,
                    ["server stream at byte 9: bad"],
                    False,
                    5,
                    6,
                    8,
                ),
                ConnSnapshot(
                    handshake("c9"),
                    ConnState.HALF_OPEN,
                    10,
                    20,
                    30,
                    40,
                    None,
                    "",
                    None,
                    None,
                    False,
                    [],
                    True,
                    50,
                    60,
                    70,
                ),
            ],
            "127.0.0.1:8080",
            0,
        ),
        HandshakeEvent(handshake()),
        RefusedEvent(REFUSED),
        Message(1, "c1", 1700000002.0, "client", Opcode.TEXT, "héllo".encode(), 6, 12),
        Message(
            2,
            "c1",
            1700000002.5,
            "server",
            Opcode.BINARY,
            bytes(range(256)),
            1 << 20,
            (1 << 20) + 14,
            frames=3,
            compressed=True,
            rsv=4,
            injected=True,
            dropped=False,
            frame_sizes=(1, 2, 3),
        ),
        # each flag true in one message and false in another, with its own pattern
        Message(
            3,
            "c1",
            1700000003.0,
            "client",
            Opcode.TEXT,
            b"\xff\xfe",
            2,
            8,
            compressed=True,
            rsv=4,
            utf8_ok=False,
            dropped=True,
        ),
        ControlFrame(4, "c1", 1700000004.0, "server", Opcode.PING, b"", 2, injected=True),
        ControlFrame(5, "c1", 1700000004.5, "client", Opcode.PONG, b"x", 3, dropped=True),
        ControlFrame(6, "c1", 1700000005.0, "client", Opcode.CLOSE, b"\x03\xe8bye", 7, 1000, "bye"),
        ProtocolErrorEvent("c1", 1700000006.0, "server", 1234, "reserved opcode 0x3"),
        StateEvent("c1", 1700000007.0, ConnState.HALF_OPEN, "by user"),
        GapEvent(3, "tap client too slow"),
        EndEvent("c1", 1700000008.0, True, "client"),
    ]


def write_capture(path: Path, events: list[Event], **kw: Any) -> Path:
    with CaptureWriter(path, **kw) as w:
        w.write(events)
    return path


def drain(path: Path, strict: bool = False) -> tuple[list[Event], CaptureReader]:
    reader = read_capture(path, strict=strict)
    return list(reader), reader


# ------------------------------------------------------------------ round trips


def test_every_event_type_round_trips_through_a_file(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs, proxy="127.0.0.1:8080", created=123.5)
    got, reader = drain(path)
    assert got == evs
    assert [type(e) for e in got] == [type(e) for e in evs]
    assert reader.error is None and reader.error_offset is None
    assert reader.events_read == len(evs)
    assert reader.header.version == 1
    assert reader.header.created == 123.5
    assert reader.header.proxy == "127.0.0.1:8080"
    assert isinstance(got[4], Message) and got[4].frame_sizes == (1, 2, 3)


def test_the_file_is_the_documented_msgpack_stream(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs, proxy="p", created=1.0)
    objs = list(msgpack.Unpacker(open(path, "rb"), raw=False))  # noqa: SIM115
    assert objs[0] == [MAGIC, 1, {"created": 1.0, "proxy": "p"}]
    assert [wire.decode_event(o) for o in objs[1:]] == evs


def test_reading_in_tiny_chunks_gives_the_same_events(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    for size in (1, 2, 7, 64):
        with CaptureReader(path, chunk_size=size) as r:
            assert list(r) == evs
            assert r.error is None


def test_batches(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    batches = list(read_capture(path).batches(5))
    assert [len(b) for b in batches] == [5, 5, len(evs) - 10]
    assert [e for b in batches for e in b] == evs


def test_an_empty_recording_is_a_valid_capture(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "e.dcap", [])
    got, reader = drain(path)
    assert got == [] and reader.error is None


def test_capture_files_are_private(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "s.dcap", all_events())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = tmp_path / "saved.dcap"
    save_capture(saved, all_events())
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600


def test_writer_without_overwrite_refuses_an_existing_file(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "s.dcap", all_events())
    with pytest.raises(FileExistsError):
        CaptureWriter(path, overwrite=False)
    assert drain(path)[0] == all_events()


def test_writer_flushes_in_batches_so_a_crash_keeps_what_was_flushed(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "live.dcap"
    w = CaptureWriter(path, flush_bytes=1 << 30, flush_interval=1e9)
    # the header is on disk at once: a just-started recording is readable
    assert drain(path)[0] == []
    w.write(evs[:5])
    assert drain(path)[0] == []  # pending, not flushed yet
    w.flush()
    w.write(evs[5:])  # "crash" now: never flushed
    got, reader = drain(path)
    assert got == evs[:5] and reader.error is None
    w.close()
    assert drain(path)[0] == evs
    w.close()  # idempotent
    with pytest.raises(ValueError):
        w.write(evs)


def test_writer_flushes_by_size(tmp_path: Path) -> None:
    path = tmp_path / "s.dcap"
    w = CaptureWriter(path, flush_bytes=1, flush_interval=1e9)
    w.write(all_events()[:3])
    assert drain(path)[0] == all_events()[:3]
    w.close()


def test_a_growing_file_read_mid_write_reports_the_partial_event(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    data = path.read_bytes()
    last = msgpack.packb(wire.encode_event(evs[-1]), use_bin_type=True)
    path.write_bytes(data[:-3])  # the last event half-written
    got, reader = drain(path)
    assert got == evs[:-1]
    assert reader.error_offset == len(data) - len(last)
    assert reader.error is not None
    assert f"at byte {len(data) - len(last)}" in reader.error
    assert "truncated" in reader.error
    assert str(path) in reader.error


def test_save_capture_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "s.dcap"
    path.write_bytes(b"old")

    def bad() -> Any:
        yield from all_events()[:3]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_capture(path, bad())
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["s.dcap"]  # no temporary file left
    assert save_capture(path, all_events(), proxy="x") == len(all_events())
    assert drain(path)[0] == all_events()
    assert os.listdir(tmp_path) == ["s.dcap"]


# ------------------------------------------------------------------ damaged files


def test_truncation_at_every_offset(tmp_path: Path) -> None:
    evs = all_events()
    src = write_capture(tmp_path / "s.dcap", evs)
    data = src.read_bytes()
    header_len = len(msgpack.packb([MAGIC, 1, {"created": 0.0, "proxy": ""}]))
    ends = []  # end offset of each event
    pos = None
    unp = msgpack.Unpacker(raw=False)
    unp.feed(data)
    for _ in unp:
        pos = unp.tell()
        ends.append(pos)
    header_end, event_ends = ends[0], ends[1:]
    assert header_end == header_len
    path = tmp_path / "t.dcap"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        if cut < header_end:
            with pytest.raises(CaptureError) as ei:
                read_capture(path)
            msg = str(ei.value)
            assert "not a devconsole capture file" in msg or "truncated capture header" in msg
            continue
        got, reader = drain(path)
        whole = sum(1 for e in event_ends if e <= cut)
        assert got == evs[:whole]
        if cut in (header_end, *event_ends):
            assert reader.error is None
        else:
            assert reader.error is not None and "truncated" in reader.error
            assert reader.error_offset == (event_ends[whole - 1] if whole else header_end)
            with pytest.raises(CaptureError, match="truncated"):
                drain(path, strict=True)


def test_a_corrupt_event_stops_reading_with_its_offset(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "c.dcap"
    write_capture(path, evs[:4])
    offset = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(msgpack.packb([99, "unknown tag"]))  # valid msgpack, not an event
        fh.write(msgpack.packb(wire.encode_event(evs[4])))
    got, reader = drain(path)
    assert got == evs[:4]
    assert reader.error_offset == offset
    assert reader.error is not None
    assert f"at byte {offset}" in reader.error and "not a valid event" in reader.error
    with pytest.raises(CaptureError, match=f"at byte {offset}"):
        drain(path, strict=True)


def test_garbage_after_the_events_is_reported(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "g.dcap", evs)
    size = path.stat().st_size
    with open(path, "ab") as fh:
        fh.write(b"\xc1garbage")  # 0xc1 is never valid msgpack
    got, reader = drain(path)
    assert got == evs
    assert reader.error_offset == size and reader.error and "corrupt" in reader.error


def test_strict_reading_yields_the_good_events_before_raising(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    path.write_bytes(path.read_bytes()[:-1])
    got: list[Event] = []
    with pytest.raises(CaptureError):
        for ev in read_capture(path, strict=True):
            got.append(ev)
    assert got == evs[:-1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a devconsole capture file (empty file)"),
        (b'{"log": {"version": "1.2"}}', "not a devconsole capture file"),
        (b"\x00" * 100, "not a devconsole capture file"),
        (msgpack.packb(["other-tool", 1, {}]), "not a devconsole capture file"),
        (msgpack.packb([MAGIC, 2, {}]), "unsupported capture file version 2"),
        (msgpack.packb([MAGIC, 99]), "unsupported capture file version 99"),
        (msgpack.packb([MAGIC, "1", {}]), "corrupt capture header"),
        (msgpack.packb([MAGIC, 1, "no map"]), "corrupt capture header"),
        (msgpack.packb([MAGIC, 1, {}])[:-1], "truncated capture header"),
        (msgpack.packb([MAGIC])[:5], "truncated capture header"),
    ],
)
def test_bad_headers(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.dcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as ei:
        read_capture(path)
    assert message in str(ei.value)
    assert str(path) in str(ei.value)


def test_a_header_with_extra_metadata_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "x.dcap"
    path.write_bytes(
        msgpack.packb([MAGIC, 1, {"created": 5, "proxy": 7, "extra": [1]}, "future"])
        + msgpack.packb(wire.encode_event(GapEvent(1, "x")))
    )
    got, reader = drain(path)
    assert got == [GapEvent(1, "x")]
    assert reader.header.created == 5.0 and reader.header.proxy == ""
    assert reader.header.meta["extra"] == [1]


def test_missing_file_and_directory_raise_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_capture(tmp_path / "nope.dcap")
    with pytest.raises(IsADirectoryError):
        read_capture(tmp_path)


def test_probe(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "s.dcap", [], proxy="p")
    assert probe(path).proxy == "p"
    with pytest.raises(SourceError, match="cannot read"):
        probe(tmp_path / "nope.dcap")
    bad = tmp_path / "bad"
    bad.write_bytes(b"hello")
    with pytest.raises(SourceError, match="not a devconsole capture file"):
        probe(bad)


# ------------------------------------------------------------------ property tests


def only_capture_errors(path: Path) -> list[Event]:
    """Read ``path`` both ways; anything but CaptureError fails the test."""
    got: list[Event] = []
    try:
        got, reader = drain(path)
    except CaptureError:
        return []
    assert reader.error is None or "at byte" in reader.error
    try:
        strict, _ = drain(path, strict=True)
        assert strict == got and reader.error is None
    except CaptureError:
        assert reader.error is not None
    return got


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_capture_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.dcap"
    path.write_bytes(data)
    only_capture_errors(path)


HEADER = msgpack.packb([MAGIC, 1, {"created": 0.0, "proxy": ""}])


@FUZZ
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_after_a_valid_header(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.dcap"
    path.write_bytes(HEADER + data)
    only_capture_errors(path)


def msgpack_objects() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(),
        st.text(max_size=10),
        st.binary(max_size=10),
    )
    return st.recursive(
        scalars,
        lambda kids: st.one_of(
            st.lists(kids, max_size=6), st.dictionaries(st.text(max_size=5), kids, max_size=4)
        ),
        max_leaves=20,
    )


@FUZZ
@given(st.lists(st.one_of(msgpack_objects(), st.tuples(st.integers(0, 12), msgpack_objects()))))
def test_arbitrary_msgpack_objects_after_a_valid_header(tmp_path: Path, objs: list[Any]) -> None:
    path = tmp_path / "fuzz.dcap"
    path.write_bytes(HEADER + b"".join(msgpack.packb(o, use_bin_type=True) for o in objs))
    only_capture_errors(path)


VALID = HEADER + b"".join(
    msgpack.packb(wire.encode_event(e), use_bin_type=True) for e in all_events()
)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_random_byte_flips_of_a_valid_file(tmp_path: Path, flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    path = tmp_path / "fuzz.dcap"
    path.write_bytes(bytes(data))
    got = only_capture_errors(path)
    assert len(got) <= len(all_events())
    if not flips:
        assert got == all_events()


# ------------------------------------------------------------------ FileSource


def session_state(s: Session) -> tuple[Any, ...]:
    return (
        [c.snapshot() for c in s.connections.values()],
        {cid: (c.last_in, c.last_out) for cid, c in s.connections.items()},
        list(s.items()),
        s.total_messages,
        s.total_bytes,
        s.missed,
        s.proxy,
        s.last_seq,
    )


async def run_source(src: Source, settle: float = 0.05) -> tuple[Session, list[list[Event]]]:
    session = Session()
    batches: list[list[Event]] = []

    def on_events(evs: list[Event]) -> None:
        batches.append(evs)
        session.apply_all(evs)

    task = asyncio.ensure_future(src.run(on_events))
    await asyncio.sleep(settle)
    assert not task.done()  # a source runs until closed, like a live tap
    await src.close()
    await asyncio.wait_for(task, 2)
    return session, batches


async def test_file_source_feeds_a_session_like_the_events_themselves(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs, proxy="127.0.0.1:8080")
    direct = Session()
    direct.apply_all(evs)
    src = FileSource(path, batch_size=4)
    assert src.description == f"file {path}"
    session, batches = await run_source(src)
    assert [len(b) for b in batches] == [4, 4, 4, len(evs) - 12]
    assert session_state(session) == session_state(direct)
    assert src.header is not None and src.header.proxy == "127.0.0.1:8080"
    assert src.proxy == "127.0.0.1:8080"
    assert src.events_read == len(evs) and src.done and src.error is None


async def test_file_source_equals_memory_source(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    from_file, _ = await run_source(FileSource(path))
    from_memory, _ = await run_source(MemorySource(evs))
    assert session_state(from_file) == session_state(from_memory)


async def test_file_source_is_read_only(tmp_path: Path) -> None:
    src = FileSource(write_capture(tmp_path / "s.dcap", []))
    res = await src.command(CloseCommand("c1", 1000, id=7))
    assert (res.id, res.ok, res.error) == (7, False, "a capture file is read-only")


async def test_file_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"cannot read .*nope\.dcap"):
        await FileSource(tmp_path / "nope.dcap").run(lambda evs: None)
    bad = tmp_path / "bad.dcap"
    bad.write_bytes(b"GET / HTTP/1.1\r\n")
    with pytest.raises(SourceError, match="not a devconsole capture file"):
        await FileSource(bad).run(lambda evs: None)
    v2 = tmp_path / "v2.dcap"
    v2.write_bytes(msgpack.packb([MAGIC, 2, {}]))
    with pytest.raises(SourceError, match="unsupported capture file version 2"):
        await FileSource(v2).run(lambda evs: None)


async def test_file_source_delivers_a_damaged_file_then_reports_once(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    path.write_bytes(path.read_bytes()[:-2])
    src = FileSource(path, batch_size=5)
    got: list[Event] = []
    with pytest.raises(SourceError) as ei:
        await asyncio.wait_for(src.run(got.extend), 2)
    assert got == evs[:-1]
    assert "truncated" in str(ei.value) and "at byte" in str(ei.value)
    assert src.error == str(ei.value)


async def test_file_source_closed_while_delivering_stops(tmp_path: Path) -> None:
    evs = all_events()
    path = write_capture(tmp_path / "s.dcap", evs)
    src = FileSource(path, batch_size=1)
    got: list[list[Event]] = []

    def on_events(b: list[Event]) -> None:
        got.append(b)
        if len(got) == 3:
            asyncio.get_running_loop().create_task(src.close())

    await asyncio.wait_for(src.run(on_events), 2)
    assert 3 <= len(got) < len(evs)


async def test_a_saved_session_reopens_with_the_same_state(tmp_path: Path) -> None:
    live = Session()
    live.apply_all(all_events())
    path = tmp_path / "saved.dcap"
    save_capture(path, session_events(live))
    reopened, _ = await run_source(FileSource(path))
    a, b = session_state(live), session_state(reopened)
    assert a[0] == b[0]  # connections and counters
    assert a[2:] == b[2:]  # items, totals, proxy, last seq


# ------------------------------------------------------------------ record


class ScriptedSource:
    """Delivers batches with pauses, then ends (``end=True``) or waits to be closed."""

    def __init__(
        self, batches: list[list[Event]], end: bool = False, fail: Exception | None = None
    ) -> None:
        self.batches = batches
        self.end = end
        self.fail = fail
        self.description = "scripted"
        self.proxy = "127.0.0.1:9999"
        self.closed = asyncio.Event()

    async def run(self, on_events: Any) -> None:
        for b in self.batches:
            on_events(b)
            await asyncio.sleep(0.01)
        if self.fail is not None:
            raise self.fail
        if not self.end:
            await self.closed.wait()

    async def command(self, cmd: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        self.closed.set()


async def test_record_until_the_source_ends(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "rec.dcap"
    src = ScriptedSource([evs[:5], evs[5:]], end=True)
    progress: list[int] = []
    n = await asyncio.wait_for(record(src, path, on_progress=progress.append), 5)
    assert n == len(evs)
    assert progress == [5, len(evs)]
    got, reader = drain(path)
    assert got == evs and reader.error is None
    assert reader.header.proxy == "127.0.0.1:9999"
    assert src.closed.is_set()


async def test_record_for_a_duration(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "rec.dcap"
    src = MemorySource(evs)
    n = await asyncio.wait_for(record(src, path, duration=0.1, proxy="given"), 5)
    assert n == len(evs)
    got, reader = drain(path)
    assert got == evs and reader.header.proxy == "given"


async def test_record_until_stopped_and_flushes_while_running(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "rec.dcap"
    stop = asyncio.Event()
    src = ScriptedSource([evs[:3]])
    task = asyncio.ensure_future(record(src, path, stop=stop, flush_interval=0.02))
    await asyncio.sleep(0.15)
    assert drain(path)[0] == evs[:3]  # flushed by the timer while still recording
    stop.set()
    assert await asyncio.wait_for(task, 5) == 3


async def test_record_cancelled_still_closes_the_file(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "rec.dcap"
    src = ScriptedSource([evs])
    task = asyncio.ensure_future(record(src, path, flush_interval=100))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drain(path)[0] == evs
    assert src.closed.is_set()


async def test_record_with_no_events_writes_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "rec.dcap"
    assert await record(ScriptedSource([], end=True), path) == 0
    assert drain(path)[0] == []


async def test_record_from_an_unreachable_source_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.dcap"
    with pytest.raises(SourceError, match="no tap"):
        await record(ScriptedSource([], fail=SourceError("no tap")), path)
    assert not path.exists()


async def test_record_keeps_what_arrived_before_the_source_failed(tmp_path: Path) -> None:
    evs = all_events()
    path = tmp_path / "rec.dcap"
    with pytest.raises(SourceError, match="tap died"):
        await record(ScriptedSource([evs[:4]], fail=SourceError("tap died")), path)
    assert drain(path)[0] == evs[:4]


async def test_record_checks_the_path_before_starting(tmp_path: Path) -> None:
    src = ScriptedSource([all_events()])
    with pytest.raises(FileNotFoundError):
        await record(src, tmp_path / "no" / "such" / "dir.dcap")
    with pytest.raises(IsADirectoryError):
        await record(src, tmp_path)
    existing = write_capture(tmp_path / "old.dcap", [GapEvent(1, "keep me")])
    with pytest.raises(FileExistsError):
        await record(src, existing, overwrite=False)
    assert drain(existing)[0] == [GapEvent(1, "keep me")]
    assert not src.closed.is_set()  # never started


# ------------------------------------------------------------------ end to end


async def test_record_a_live_tap_and_reopen_it(short_tmp: Path) -> None:
    """A real proxy and tap: ``record`` what a viewer sees, then a FileSource rebuilds the
    same connections and messages."""
    from websockets.asyncio.client import connect

    from devconsole.store.export import har_log
    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, viewer, ws_server

    path = short_tmp / "live.dcap"
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            async with viewer(rp.tap) as v:
                stop = asyncio.Event()
                rec = asyncio.ensure_future(record(TapClient(rp.tap), path, stop=stop))
                await asyncio.sleep(0.2)  # attached
                async with connect(
                    f"ws://127.0.0.1:{rp.port}/chat?ticket=abc", compression=None
                ) as ws:
                    for i in range(20):
                        await ws.send(f'{{"n": {i}, "password": "pw{i}"}}')
                        await ws.recv()
                    await ws.close(4001, "done")
                await v.wait_for(lambda v: any(isinstance(e, EndEvent) for e in v.events))
                await asyncio.sleep(0.2)
                stop.set()
                n = await asyncio.wait_for(rec, 5)
    assert n >= 40
    got, reader = drain(path)
    assert reader.error is None and reader.header.proxy
    assert isinstance(got[0], Snapshot)
    reopened, _ = await run_source(FileSource(path))
    [live] = v.session.connections.values()
    [conn] = reopened.connections.values()
    assert conn.snapshot() == live.snapshot()
    assert list(reopened.items()) == list(v.session.items())
    [entry] = har_log(got)["log"]["entries"]
    assert entry["request"]["queryString"] == [{"name": "ticket", "value": "[REDACTED]"}]
    assert len(entry["_webSocketMessages"]) == 40
    assert all("pw" not in m["data"] for m in entry["_webSocketMessages"])


# ------------------------------------------------------------------ golden file
#
# tests/golden/capture-v1.dcap is a capture file written by version 1 of the format. The
# format evolves only by appending optional trailing fields to a record or by new event
# tags (docs/store.md, "Format evolution"): this file must keep opening, with every field
# decoded to the value below (an appended field at its default), for good.


def test_the_golden_capture_file_opens_field_by_field() -> None:
    values = dict(golden.EVENT_VALUES)
    with read_capture(golden.CAPTURE_V1, strict=True) as reader:
        got = list(reader)
        assert reader.error is None
    assert reader.header.version == 1
    assert reader.header.created == golden.CAPTURE_V1_CREATED
    assert reader.header.proxy == golden.CAPTURE_V1_PROXY
    assert len(got) == len(golden.CAPTURE_V1_EVENTS)
    for i, (ev, name) in enumerate(zip(got, golden.CAPTURE_V1_EVENTS, strict=True)):
        golden.assert_same_fields(ev, values[name], f"event {i} ({name})")


def test_the_writer_still_writes_the_golden_file(tmp_path: Path) -> None:
    values = dict(golden.EVENT_VALUES)
    path = write_capture(
        tmp_path / "new.dcap",
        [values[n] for n in golden.CAPTURE_V1_EVENTS],
        proxy=golden.CAPTURE_V1_PROXY,
        created=golden.CAPTURE_V1_CREATED,
    )

    def objects(p: Path) -> list[Any]:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(p.read_bytes())
        return list(unpacker)

    new, old = objects(path), objects(golden.CAPTURE_V1)
    assert len(new) == len(old)
    assert new[0] == old[0]  # the header, exactly
    # each event: the same bytes for the fields version 1 has (appended fields cut off)
    kept = b"".join(
        msgpack.packb(golden.trim_like(n, o), use_bin_type=True)
        for n, o in zip(new, old, strict=True)
    )
    assert kept == golden.CAPTURE_V1.read_bytes()


def test_intercept_events_round_trip_through_a_file_and_replay(tmp_path: Path) -> None:
    """A recording of held messages and their outcomes: the file keeps them, a replay shows
    the message with its outcome and the edited body next to the original."""
    from devconsole.model import Breakpoint, BreakpointsEvent, Opcode, OutcomeEvent, Snapshot

    hs = make_handshake("1", 1.0)
    held = Message(5, "1", 2.0, "client", Opcode.TEXT, b"orig", 4, 10, held=3, breakpoint=1)
    still = Message(6, "1", 2.5, "client", Opcode.TEXT, b"waiting", 7, 13, held=4, breakpoint=1)
    evs: list[Event] = [
        Snapshot(4, [], "p", 0, [Breakpoint(1, "from:client")], []),
        HandshakeEvent(hs),
        BreakpointsEvent([Breakpoint(1, "from:client"), Breakpoint(2, "x", "1", 5.0, "drop")]),
        held,
        still,
        OutcomeEvent("1", 3.0, 5, 3, "edited", Opcode.TEXT, b"new", 3),
    ]
    path = write_capture(tmp_path / "i.dcap", evs, proxy="p", created=1.0)
    got, reader = drain(path)
    assert reader.error is None and got == evs
    s = Session()
    s.apply_all(got)
    m = s.get(5)
    assert isinstance(m, Message)
    assert (m.payload, m.outcome, m.edited) == (b"orig", "edited", b"new")
    assert list(s.held) == [4] and [b.id for b in s.breakpoints] == [1, 2]
