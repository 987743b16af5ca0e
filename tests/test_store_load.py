"""Opening any capture by its content: capture file, recording directory, HAR file, and
clear one-line errors for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devconsole.model import HandshakeEvent
from devconsole.source import SourceError
from devconsole.store.capture import CaptureError, FileSource, probe, save_capture
from devconsole.store.load import detect, load_session, open_events
from devconsole.store.segments import SegmentWriter
from tests.factories import make_handshake


def test_detect_each_kind(tmp_path: Path) -> None:
    cap = tmp_path / "a.dcap"
    save_capture(cap, [HandshakeEvent(make_handshake("1"))])
    rec = tmp_path / "rec"
    with SegmentWriter(rec) as w:
        w.write([HandshakeEvent(make_handshake("1"))])
    har = tmp_path / "a.har"
    har.write_text("\ufeff " + json.dumps({"log": {"version": "1.2", "entries": []}}))
    assert (detect(cap), detect(rec), detect(har)) == ("capture", "recording", "har")
    for p in (cap, rec):
        s, r = load_session(p)
        assert set(s.connections) == {"1"} and r.error is None
    assert probe(rec).meta["kind"] == "recording"
    assert open_events(har).notes  # "no WebSocket connection in this HAR"


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty file"), (b"hello", "unrecognised content"), (b"{not json", "JSON error")],
)
def test_unreadable_inputs_give_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "x"
    p.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        load_session(p)
    with pytest.raises(SourceError, match=message):
        probe(p)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="not a devconsole recording"):
        detect(tmp_path / "empty")


async def test_file_source_opens_a_har(tmp_path: Path) -> None:
    har = tmp_path / "a.har"
    har.write_text(
        json.dumps({"log": {"version": "1.1", "creator": {"name": "Firefox"}, "entries": []}})
    )
    src = FileSource(har)
    got: list = []
    import asyncio

    task = asyncio.ensure_future(src.run(got.extend))
    for _ in range(100):
        if src.done:
            break
        await asyncio.sleep(0.01)
    await src.close()
    await task
    assert src.kind == "har" and src.description.startswith("Firefox HAR")
