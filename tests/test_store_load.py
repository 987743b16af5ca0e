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


# ------------------------------------------------------------------ everything on a file
#
# The same traffic as a Chrome HAR (what a browser's network panel saves: no control
# frames, no close codes) and as a devconsole capture file (everything): one client of
# wss://app.example.com/feed with an app heartbeat ({"type":"ping"} every 10 s, answered
# by {"type":"pong"}) on a 60 s connection, then four reconnects after 1, 2, 4 and 8 s
# (an exponential backoff). The report, filters, the heartbeat and backoff analyses and
# the TUI must work on both as on a live proxy, and say what the HAR does not carry.

FEED_T0 = 1_700_000_000.0
CHAT_AT = (2.0, 3.5, 11.0, 26.0, 27.0, 44.0)  # irregular: not mistaken for a heartbeat
DELAYS = (1.0, 2.0, 4.0, 8.0)


def _feed_plan() -> list[tuple[float, float, list[tuple[float, str, str]]]]:
    """``[(start, duration, [(at, side, text)])]`` per connection, times in seconds."""
    first: list[tuple[float, str, str]] = []
    for k, at in enumerate(CHAT_AT):
        first.append((at, "server", json.dumps({"type": "chat", "n": k, "text": f"chat {k}"})))
    for k in range(6):
        first.append((5.0 + 10 * k, "client", '{"type":"ping"}'))
        first.append((5.005 + 10 * k, "server", '{"type":"pong"}'))
    plan = [(0.0, 60.0, sorted(first))]
    t = 60.0
    for d in DELAYS:
        t += d
        plan.append((t, 2.0, [(0.5, "server", '{"type":"hello"}')]))
        t += 2.0
    return plan


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_feed_har(path: Path) -> None:
    """A HAR shaped as Chrome saves it (``_resourceType``, ``_webSocketMessages``)."""
    from tests.test_store_har import doc, entry

    entries = []
    for start, duration, msgs in _feed_plan():
        e = entry(
            "wss://app.example.com/feed",
            startedDateTime=_iso(FEED_T0 + start),
            time=duration * 1000,
            _resourceType="websocket",
            _webSocketMessages=[
                {
                    "type": "send" if side == "client" else "receive",
                    "time": FEED_T0 + start + at,
                    "opcode": 1,
                    "data": text,
                }
                for at, side, text in msgs
            ],
        )
        e["request"]["headers"] += [
            {"name": "Origin", "value": "https://app.example.com"},
            {"name": "User-Agent", "value": "Mozilla/5.0 Chrome/120.0"},
        ]
        entries.append(e)
    path.write_text(json.dumps(doc(*entries)))


def write_feed_capture(path: Path) -> None:
    """The same traffic as devconsole records it, with what a HAR lacks: the server pings
    every 15 s (answered), and close frames (1012 at the restart, then 1000)."""
    from devconsole.model import CLIENT, SERVER, Opcode
    from devconsole.samples import Traffic

    t = Traffic(ts=FEED_T0)
    for n, (start, duration, msgs) in enumerate(_feed_plan(), 1):
        conn = str(n)
        t.ts = FEED_T0 + start
        t.open(
            conn,
            path="/feed",
            scheme="wss",
            host="app.example.com",
            cookies=(("sid", "abc"),),
        )
        timeline = [(at, side, text) for at, side, text in msgs]
        if n == 1:
            timeline += [(15.0 * k + 1, "ping", "") for k in range(1, 4)]
        for at, side, text in sorted(timeline):
            t.ts = FEED_T0 + start + at
            if side == "ping":
                t.control(conn, SERVER, Opcode.PING, b"hb", dt_=0)
                t.control(conn, CLIENT, Opcode.PONG, b"hb", dt_=0.002)
            else:
                t.text(conn, CLIENT if side == "client" else SERVER, text, dt_=0)
        t.ts = FEED_T0 + start + duration - 0.02
        t.close(conn, SERVER, 1012 if n == 1 else 1000, dt_=0)
        t.close(conn, CLIENT, 1012 if n == 1 else 1000, dt_=0.005)
        t.ts = FEED_T0 + start + duration - 0.01
        t.end(conn, closed_by=SERVER)
    save_capture(path, t.events)


@pytest.fixture(params=["har", "capture"])
def feed_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    if request.param == "har":
        path = tmp_path / "feed.har"
        write_feed_har(path)
    else:
        path = tmp_path / "feed.dcap"
        write_feed_capture(path)
    return request.param, path


def test_report_heartbeat_and_backoff_on_an_imported_file(feed_file: tuple[str, Path]) -> None:
    """``devconsole report FILE`` (a process): the backoff and the app heartbeat are found
    in a HAR as in a capture; what the HAR does not carry is unknown, not a failure."""
    from tests.conftest import run_cli

    kind, path = feed_file
    res = run_cli("report", "--json", str(path))
    assert res.returncode == 0, res.stderr
    (ep,) = json.loads(res.stdout)["endpoints"]
    assert (ep["path"], ep["origin"], ep["connections"]) == (
        "/feed",
        "https://app.example.com",
        5,
    )
    assert ep["reconnect_delays"] == pytest.approx(list(DELAYS), abs=0.03)
    assert ep["backoff"]["pattern"] == "exponential"
    assert ep["backoff"]["factor"] == pytest.approx(2.0, rel=0.05)
    cl = ep["checklist"]
    assert cl["reconnect"]["ok"] is True and "exponential backoff x2" in cl["reconnect"]["detail"]
    apps = [(a["side"], a["signature"], a["reply"]) for a in ep["heartbeat"]["app"]]
    assert apps == [("client", '{"type":"ping"}', '{"type":"pong"}')]
    assert ep["heartbeat"]["app"][0]["interval"] == pytest.approx(10.0, abs=0.01)
    assert cl["heartbeat"]["ok"] is True
    assert cl["wss"]["ok"] is True and cl["auth"]["ok"] is True
    if kind == "har":
        # no control frames and no close codes in a HAR: unknown, never "missing"
        assert cl["pongs"] == {
            "ok": None,
            "detail": "protocol pings and pongs are not recorded in the file",
        }
        assert cl["close_codes"]["ok"] is None
        assert "not recorded in the file" in cl["close_codes"]["detail"]
        assert ep["heartbeat"]["server_pings"] is None
    else:
        assert ep["heartbeat"]["server_pings"]["interval"] == pytest.approx(15.0, abs=0.01)
        assert cl["pongs"]["ok"] is True and "all 3 pings answered" in cl["pongs"]["detail"]
        assert cl["close_codes"]["ok"] is True
        assert {c["code"] for c in cl["close_codes"]["codes"]} == {1000, 1012}
    text = run_cli("report", str(path))
    assert text.returncode == 0, text.stderr
    assert "exponential backoff x2.00" in text.stdout
    assert 'app heartbeat from client {"type":"ping"} every 10.00 s' in text.stdout


def test_filters_on_an_imported_file(feed_file: tuple[str, Path]) -> None:
    from devconsole.filters import parse
    from devconsole.model import Message

    _, path = feed_file
    session, reader = load_session(path)
    assert reader.error is None
    items = list(session.items())
    assert [m.seq for m in items] == sorted(m.seq for m in items)  # in time order

    def texts(expr: str) -> list[str]:
        return [m.payload.decode() for m in parse(expr).scan(items)]

    assert texts("json:type=chat") == [
        json.dumps({"type": "chat", "n": k, "text": f"chat {k}"}) for k in range(6)
    ]
    assert texts("json:n=4 or json:n=5") == texts("json:type=chat")[4:]
    assert texts("from:client type:text") == ['{"type":"ping"}'] * 6
    assert texts("hello conn:5") == ['{"type":"hello"}']
    assert texts("/chat [0-2]$/") == []  # the regex runs on the payload: "chat 0"}
    assert len(texts('/chat [0-2]"/')) == 3
    assert all(isinstance(m, Message) for m in parse("type:text").scan(items))


async def test_the_tui_on_an_imported_file(feed_file: tuple[str, Path]) -> None:
    """``devconsole open FILE``: the stream, a filter, and the report screen (``r``) with
    the backoff timeline and the heartbeat of the selected connection."""
    from devconsole.tui import make_app
    from devconsole.tui.report import ReportScreen
    from tests.tui_fixtures import UTC, focus_stream, frozen_clock, screen_text, settle

    kind, path = feed_file
    source = FileSource(path)
    app = make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: FEED_T0 + 100)
    async with app.run_test(size=(140, 40)) as pilot:
        for _ in range(200):
            await settle(pilot)
            if source.done:
                break
            await pilot.pause(0.02)
        assert source.done and source.error is None
        await settle(pilot)
        assert source.kind == kind
        shown = screen_text(app)
        assert "/feed" in shown and '{"type":"hello"}' in shown
        screen = app.main
        assert screen.apply_filter("json:type=chat")
        await settle(pilot)
        await focus_stream(pilot)
        stream = screen.stream
        chats = [stream.item_for(s) for s in stream.view.seqs]
        assert [json.loads(m.payload)["n"] for m in chats] == list(range(6))
        assert '"text": "chat 5"' in screen_text(app)

        screen.connections.select("1")
        await settle(pilot)
        await pilot.press("r")
        report = app.screen
        assert isinstance(report, ReportScreen)
        shown = screen_text(app)
        assert "exponential backoff x2.00" in shown
        assert "Backoff timeline /feed" in shown and "exponential ×2.00" in shown
        assert "╌╌1s╌╌ #2" in shown and "╌╌╌8s╌╌╌╌ #5" in shown
        assert "Heartbeat  #1 /feed" in shown
        assert 'client sends {"type":"ping"} 6× every 10.00 s' in shown
        if kind == "har":
            # what a HAR does not carry is unknown: no "no close frame", no "no pings"
            assert "protocol pings and pongs are not recorded in the file" in shown
            assert "close codes not recorded in the file" in shown
            assert "━? ╌╌1s" in shown
            assert "? how it ended is not recorded in the imported file" in shown
            assert "nobody sends protocol pings" not in shown
            assert "protocol pings   not recorded in the file" in shown
        else:
            assert "━┤1012 ╌╌1s" in shown and "not recorded" not in shown
            assert "server pings 3× every 15.00 s" in shown
            assert "all 3 pings answered" in shown
        await pilot.press("escape")
