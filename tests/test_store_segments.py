"""Segmented recordings: rotation with a Snapshot per segment, --record-max removing the
oldest segments (shown as a gap), a torn tail after a crash, seq ranges loaded on demand,
the threaded recorder, and a real proxy recording with --record (in process, and killed
with SIGKILL in a subprocess)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
from websockets.asyncio.client import connect

from devconsole.model import GapEvent, HandshakeEvent, Message, Opcode, Snapshot
from devconsole.session import Session
from devconsole.store.capture import CaptureReader
from devconsole.store.load import detect, load_session
from devconsole.store.segments import (
    Recorder,
    SegmentIndex,
    SegmentWriter,
    list_segments,
    parse_size,
)
from tests.conftest import running_proxy, viewer, wait_until, ws_server
from tests.factories import make_handshake


def msg(seq: int, conn: str = "1", size: int = 100) -> Message:
    p = (f"{seq:08d}".encode() * (size // 8 + 1))[:size]
    return Message(
        seq, conn, 1000.0 + seq, "client" if seq % 2 else "server", Opcode.TEXT, p, size, size + 6
    )


def write_recording(path: Path, n: int, **kw: object) -> SegmentWriter:
    session = Session(max_items=10)
    w = SegmentWriter(path, **kw)  # type: ignore[arg-type]
    first = [HandshakeEvent(make_handshake("1")), HandshakeEvent(make_handshake("2"))]
    session.apply_all(first)
    w.write(first)
    for seq in range(1, n + 1):
        ev = msg(seq, "1" if seq % 3 else "2")
        session.apply(ev)
        w.write([ev])
        if w.full:
            w.rotate(session.snapshot())
    w.close()
    return w


def test_parse_size() -> None:
    assert parse_size("1024") == 1024 and parse_size("64m") == 64 << 20
    assert parse_size("1.5g") == 3 << 29 and parse_size("500KiB") == 500 << 10
    for bad in ("", "x", "-1m", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_rotation_keeps_every_event_and_each_segment_stands_alone(tmp_path: Path) -> None:
    rec = tmp_path / "rec.dcap"
    w = write_recording(rec, 5000, segment_bytes=64 << 10)
    segs = list_segments(str(rec))
    assert len(segs) > 5 and w.events_written == 5002
    assert detect(rec) == "recording"
    session, reader = load_session(rec)
    assert reader.error is None and reader.notes == []
    assert session.total_messages == 5000 and session.missed == 0
    assert [it.seq for it in session.items()] == list(range(1, 5001))
    assert session.connections["1"].msgs_out + session.connections["1"].msgs_in == 3334
    # a later segment opens alone (old devconsole reads it as a capture): the Snapshot
    # it starts with knows both connections and their counters
    with CaptureReader(segs[3][1]) as r:
        evs = list(r)
        assert r.header.meta["segment"] == 4 and r.header.meta["snapshot"] is True
    assert isinstance(evs[0], Snapshot) and {c.handshake.conn for c in evs[0].connections} == {
        "1",
        "2",
    }
    assert oct(os.stat(segs[0][1]).st_mode & 0o777) == "0o600"


def test_record_max_removes_the_oldest_and_the_gap_shows(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    w = write_recording(rec, 20000, max_bytes=400 << 10)
    total = sum(os.path.getsize(os.path.join(rec, f)) for f in os.listdir(rec))
    assert total <= 400 << 10
    assert w.removed_segments > 0 and w.removed_events > 0
    session, reader = load_session(rec)
    gaps = [n for n in reader.notes if "events lost" in n]
    assert gaps and "removed (--record-max)" in gaps[0]
    assert session.missed == w.removed_events
    seqs = [it.seq for it in session.items()]
    assert seqs == list(range(seqs[0], 20001)) and seqs[0] > 1
    # the connections opened in removed segments are still known, from the Snapshot
    assert set(session.connections) == {"1", "2"}


def test_a_torn_tail_loses_only_the_torn_event(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 3000, segment_bytes=64 << 10)
    last = list_segments(str(rec))[-1][1]
    os.unlink(last[: -len(".dcap")] + ".idx")
    size = os.path.getsize(last)
    data = Path(last).read_bytes()
    with CaptureReader(last) as r:
        header_end = r._good_end
    # where each item of the last segment ends
    unp = msgpack.Unpacker(raw=False)
    unp.feed(data[header_end:])
    ends: list[int] = []
    for obj in unp:
        if obj[0] == 3:  # a message
            ends.append(header_end + unp.tell())
    before_last = 3000 - len(ends)
    for cut in range(header_end + 1, size, max(1, (size - header_end) // 40)):
        Path(last).write_bytes(data[:cut])
        session, reader = load_session(rec)
        # everything before the torn event is there, nothing after it
        n = session.total_messages
        assert [it.seq for it in session.items()] == list(range(1, n + 1))
        if reader.error is not None:
            assert "stopped mid-write" in reader.error
        assert n == before_last + sum(1 for e in ends if e <= cut)


def test_segment_index_loads_any_seq_range(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    write_recording(rec, 8000, segment_bytes=64 << 10)
    idx = SegmentIndex(rec)
    assert idx.first_seq == 1 and len(idx.segments) > 5
    got = idx.items(2500, 2600)
    assert [it.seq for it in got] == list(range(2500, 2601))
    assert all(it.conn == "2" for it in idx.items(1, 8000, conn="2", limit=50))
    page = idx.before(5000, 100)
    assert [it.seq for it in page] == list(range(4900, 5000))
    conn2 = idx.before(5000, 10, conn="2")
    assert [it.seq for it in conn2] == [s for s in range(4960, 5000) if s % 3 == 0][-10:]
    assert idx.before(1, 10) == []


async def test_recorder_writes_from_a_thread_and_rotates_with_snapshots(tmp_path: Path) -> None:
    rec = tmp_path / "rec"
    session = Session(max_items=100)
    w = SegmentWriter(rec, segment_bytes=64 << 10)
    r = Recorder(w, session.snapshot, interval=0.01)
    session.observers.append(r.on_event)
    task = asyncio.ensure_future(r.run())
    session.apply(HandshakeEvent(make_handshake("1")))
    for seq in range(1, 5001):
        session.apply(msg(seq))
        if seq % 500 == 0:
            await asyncio.sleep(0.02)
    await r.stop()
    task.cancel()
    assert r.stats.dropped == 0 and r.error is None
    back, _reader = load_session(rec)
    assert back.total_messages == 5000 and len(list_segments(str(rec))) > 3
    assert len(session.buffer) == 100  # the in-memory buffer stayed bounded


async def test_recorder_that_falls_behind_writes_a_gap(tmp_path: Path) -> None:
    session = Session()
    w = SegmentWriter(tmp_path / "rec")
    r = Recorder(w, session.snapshot, interval=3600, max_pending=10)
    for seq in range(1, 101):
        r.on_event(msg(seq))
    r._hand_over()  # 100 events > 10 pending allowed: dropped, a gap written instead
    await r.stop()
    back, _ = load_session(tmp_path / "rec")
    assert back.missed == 100 and r.stats.dropped == 100


def test_writer_refuses_an_existing_recording(tmp_path: Path) -> None:
    write_recording(tmp_path / "rec", 10)
    with pytest.raises(FileExistsError):
        SegmentWriter(tmp_path / "rec")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        SegmentWriter(tmp_path / "file")
    SegmentWriter(tmp_path / "rec", overwrite=True).close()
    assert len(list_segments(str(tmp_path / "rec"))) == 1


# ------------------------------------------------------------------ a real proxy


@pytest.mark.slow
async def test_proxy_record_keeps_every_message_while_the_buffer_stays_bounded(
    short_tmp: Path,
) -> None:
    rec = short_tmp / "rec"
    n = 20_000
    async with ws_server() as (_, sport):
        async with running_proxy(
            f"reverse:http://127.0.0.1:{sport}", short_tmp, buffer_messages=1000, record=str(rec)
        ) as p:
            async with viewer(p.tap) as v:
                assert v.client.recording == str(rec)
            async with connect(f"ws://127.0.0.1:{p.port}/flood", max_size=None) as ws:
                for i in range(n):
                    await ws.send(f"m{i}")
                for _ in range(n):
                    await ws.recv()
            await wait_until(lambda: p.session.total_messages >= 2 * n, 30)
            assert len(p.session.buffer) <= 1000
    session, reader = load_session(rec)
    assert reader.error is None
    assert session.total_messages == 2 * n
    texts = [m.payload for m in session.items() if isinstance(m, Message) and m.side == "client"]
    assert texts == [f"m{i}".encode() for i in range(n)]


@pytest.mark.slow
async def test_a_proxy_killed_with_sigkill_loses_at_most_the_last_second(short_tmp: Path) -> None:
    rec = short_tmp / "rec"
    async with ws_server() as (_, sport):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devconsole",
                "proxy",
                "--listen",
                "127.0.0.1:0",
                "--mode",
                f"reverse:http://127.0.0.1:{sport}",
                "--tap",
                str(short_tmp / "t.sock"),
                "--confdir",
                str(short_tmp / "conf"),
                "--record",
                str(rec),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            port = int(line.split("listening on ")[1].split(";")[0].split(",")[0].rsplit(":", 1)[1])
            async with connect(f"ws://127.0.0.1:{port}/x") as ws:
                for i in range(500):
                    await ws.send(f"before-{i}")
                    await ws.recv()
                await asyncio.sleep(1.5)  # more than a second: all of it must be on disk
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    session, _reader = load_session(rec)
    client = [m.payload for m in session.items() if isinstance(m, Message) and m.side == "client"]
    assert client == [f"before-{i}".encode() for i in range(500)]
    assert session.total_messages == 1000


def test_a_gap_event_type_is_what_the_viewer_counts() -> None:
    s = Session()
    s.apply(GapEvent(5, "recording: segments 1-2 removed (--record-max)"))
    assert s.missed == 5
    assert time.time() > 0
