"""The readiness report screen (r): checklist, backoff timeline, heartbeat."""

from __future__ import annotations

import re

from rich.console import Console

from devconsole.analysis.backoff import Backoff, analyze_endpoints
from devconsole.model import CLIENT, SERVER
from devconsole.session import Session
from devconsole.tui import make_app
from devconsole.tui.faults import FaultMenu
from devconsole.tui.report import ReportScreen
from devconsole.tui.timeline import pattern_text, timeline_lines
from tests.tui_fixtures import (
    EVIL_TEXT,
    FAULT_NOW,
    T0,
    UTC,
    Traffic,
    fault_traffic,
    frozen_clock,
    live_source,
    screen_text,
    settle,
)

SIZE = (140, 40)


def app_with(events):
    source = live_source(events)
    return source, make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: FAULT_NOW)


def backoff_session(delays=(0.3, 0.6, 1.2), path="/feed") -> Session:
    """One client: connections that end and come back after ``delays``."""
    t = Traffic()
    for i in range(len(delays) + 1):
        t.open(f"{i + 1}", path=path, client=f"127.0.0.1:{50100 + i}")
        t.text(f"{i + 1}", SERVER, "x", dt_=2.0)
        t.end(f"{i + 1}", closed_by=SERVER)
        if i < len(delays):
            t.ts += delays[i]
    s = Session()
    s.apply_all(t.events)
    return s


def plain(lines) -> str:
    return "\n".join(line.plain for line in lines)


# --------------------------------------------------------------------------- timeline


def test_timeline_of_an_exponential_backoff() -> None:
    s = backoff_session()
    (ep,) = analyze_endpoints(s.connections.values())
    text = plain(timeline_lines(ep, s.connections, T0 + 20, 120))
    assert "exponential ×2.00" in text
    for label in ("0.3s", "0.6s", "1.2s"):
        assert label in text
    # in order, between the connections, the gaps growing with the delay
    row = next(line for line in text.splitlines() if "#1" in line)
    assert row.index("#1") < row.index("0.3s") < row.index("#2") < row.index("0.6s")
    assert row.index("#3") < row.index("1.2s") < row.index("#4")
    gaps = [len(g) for g in row.split("#") if "╌" in g]
    assert gaps == sorted(gaps) and gaps[0] < gaps[-1]


def test_timeline_marks_kills_refusals_and_live_connections() -> None:
    s = Session()
    s.apply_all(fault_traffic().events)
    eps = {ep.path: ep for ep in analyze_endpoints(s.connections.values())}
    lines = timeline_lines(eps["/feed"], s.connections, FAULT_NOW, 140)
    row = next(line.plain for line in lines if "#2" in line.plain)
    assert "✕1012" in row  # killed by devconsole with 1012
    assert "#3 ✗503" in row  # refused
    assert "┤1012" in row  # closed by the server with 1012
    assert "▶ half-open" in row  # still open, half-open now
    assert "payload" not in plain(lines) and "ping" not in plain(lines)


def test_timeline_wraps_and_drops_the_oldest() -> None:
    s = backoff_session(delays=[0.05] * 60)
    (ep,) = analyze_endpoints(s.connections.values())
    lines = timeline_lines(ep, s.connections, T0 + 200, 80)
    text = plain(lines)
    assert "reconnect STORM" in text
    assert re.search(r"… \d+ earlier ", text)  # the oldest left out, the newest kept
    assert "#61" in text and "#1 " not in text
    assert all(line.cell_len <= 80 for line in lines)


def test_timeline_judges_each_client_and_shows_refused_retries_apart() -> None:
    """Issue 16.1 on the screen: the endpoint is judged by its connected client with
    backoff; the client refused every time is labelled as such, not as a backoff."""
    from tests.test_analysis_backoff import Sim, chat_app

    sim = Sim()
    ids = chat_app(sim)
    (ep,) = analyze_endpoints(sim.session.connections.values())
    text = plain(timeline_lines(ep, sim.session.connections, 200.0, 160))
    assert "judged: exponential ×1.99" in text
    assert "client client/1  " in text or "client client/1 ·" in text
    assert "never connected: refused ×12 (403), retries every ~5.01s" in text
    assert f"#{ids['backoff'][-1]}" in text


def test_timeline_shows_the_close_code_captured_during_a_half_open() -> None:
    """Issue 16.2: the client closed with 4001 while devconsole forwarded nothing; the
    timeline ended the connection without its code."""
    from devconsole.analysis.heartbeat import HeartbeatMonitor
    from devconsole.tui.report import heartbeat_renderable
    from tests.test_analysis_heartbeat import chat_with_half_open

    s = Session()
    mon = HeartbeatMonitor()
    s.observers.append(mon.on_event)
    s.apply_all(chat_with_half_open())
    (ep,) = analyze_endpoints(s.connections.values())
    text = plain(timeline_lines(ep, s.connections, 40.0, 120))
    assert "#h ━" in text and "4001" in text
    console = Console(width=160, record=True)
    console.print(heartbeat_renderable(s.connections["h"], mon.report("h", 40.0)))
    out = console.export_text()
    assert "after half-open  3 app pings unanswered; 3 server pings without pong; client" in out
    assert "3 unanswered" in out


def test_pattern_words() -> None:
    assert pattern_text(Backoff()).plain == "no reconnect yet"
    b = Backoff("exponential", factor=2.0, jitter=True, cap=8.0, runs=2)
    assert pattern_text(b).plain == (
        "exponential ×2.00, jitter, cap 8s · 2 runs (the client reset its backoff)"
    )
    assert "fixed interval ~1s" in pattern_text(Backoff("fixed", median=1.0)).plain


def test_timeline_escapes_what_comes_from_the_traffic() -> None:
    t = Traffic()
    t.open("\x1b[2J1", path="/" + EVIL_TEXT, origin=EVIL_TEXT)  # an id from a damaged file
    s = Session()
    s.apply_all(t.events)
    (ep,) = analyze_endpoints(s.connections.values())
    text = plain(timeline_lines(ep, s.connections, T0 + 1, 400))
    assert "\x1b" not in text and "\x9b" not in text
    assert "#\\x1b[2J1" in text
    assert "[link=file:///etc/passwd]" in text  # shown as typed, not markup


# --------------------------------------------------------------------------- screen


async def test_r_shows_checklist_timeline_and_heartbeat() -> None:
    _, app = app_with(fault_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("5")
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert screen.endpoint == ("/feed", "https://app.example.com")
        shown = screen_text(app)
        assert "Readiness report" in shown
        for text in ("✓ ok", "? --", "reconnect backoff", "authentication", "close codes"):
            assert text in shown
        assert "exponential backoff x2.00" in shown
        # the timeline of the endpoint of the selected connection
        for text in ("Backoff timeline /feed", "exponential ×2.00", "0.3s", "0.6s", "1.2s"):
            assert text in shown
        # the heartbeat of the selected connection (#5 = f4)
        assert "Heartbeat  #5 /feed" in shown
        assert "the server pings" in shown
        assert "server pings 2× every 3.00 s ± 0 ms, pong RTT p50 2 ms" in shown
        assert "0 without pong" in shown
        assert 'client sends {"type":"ping"} 3× every 3.00 s' in shown
        assert 'answered by {"type":"pong"} in 4 ms' in shown
        assert "client → server 1.62 s ago · server → client 3.62 s ago" in shown

        await pilot.press("left_square_bracket")  # the previous connection: f3
        assert screen.conn_id == "4"
        assert "Heartbeat  #4 /feed" in screen_text(app)
        await pilot.press("tab")  # the other endpoint
        assert screen.endpoint == ("/chat", "https://app.example.com")
        shown = screen_text(app)
        assert "Backoff timeline /chat" in shown and "Heartbeat  #1 /chat" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, ReportScreen)


async def test_report_refreshes_on_the_timer_at_most_twice_a_second() -> None:
    t = Traffic()
    for i, delay in enumerate((0.3, 0.6)):
        t.open(f"{i + 1}", path="/feed")
        t.end(f"{i + 1}", closed_by=SERVER)
        t.ts += delay
    now = [100.0]  # the view's clock, moved by hand
    source = live_source(t.take())
    app = make_app(source, clock=lambda: now[0], tz=UTC, wall_clock=lambda: FAULT_NOW)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ReportScreen)
        assert "0.6s" not in screen.timeline.plain
        n = screen.computations
        now[0] += 0.4
        for _ in range(10):
            app.tick()
        assert screen.computations == n  # throttled: 0.4 s since the last one
        t.open("3", path="/feed")
        source.push(t.take())
        now[0] += 0.2
        for _ in range(200):  # the app's own timer, not sync()
            if screen.computations > n:
                break
            await pilot.pause(0.02)
        assert screen.computations == n + 1
        assert "0.6s" in screen.timeline.plain
        assert "#3" in screen.timeline.plain


async def test_report_with_nothing_yet() -> None:
    _, app = app_with([])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("r", "tab", "right_square_bracket")
        assert "No connection seen yet." in screen_text(app)


# --------------------------------------------------------------------------- snapshots


def test_snapshot_fault_menu(snap_compare) -> None:
    _, app = app_with(fault_traffic().events)

    async def run_before(pilot) -> None:
        await settle(pilot)
        app.main.connections.select("5")
        await settle(pilot)
        await pilot.press("x", "t")
        assert isinstance(app.screen, FaultMenu)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_report_and_timeline(snap_compare) -> None:
    _, app = app_with(fault_traffic().events)

    async def run_before(pilot) -> None:
        await settle(pilot)
        app.main.connections.select("5")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)

    assert snap_compare(app, terminal_size=(140, 44), run_before=run_before)


def test_monitor_sees_client_and_server_sides() -> None:
    # the fixture's heartbeat: what the screen above relies on
    s = Session()
    app = make_app(live_source(), session=s, wall_clock=lambda: FAULT_NOW)
    s.apply_all(fault_traffic().events)
    rep = app.heartbeat.report("5", FAULT_NOW)
    assert rep.pinger == "server"
    assert [a.side for a in rep.app_heartbeats][:1] == [CLIENT]


async def test_the_timeline_at_80x24_keeps_the_newest_attempts() -> None:
    """Issue 16.10: at 80 columns the report's timeline dropped the newest attempts (the
    pane cut the bottom off); the oldest are the ones to leave out, with "…"."""
    from tests.test_analysis_backoff import Sim, chat_app

    sim = Sim()
    ids = chat_app(sim)
    source = live_source(
        [e for c in sim.session.connections.values() for e in _events_of(c)], command_error=None
    )
    app = make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: 200.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert app.redraw_errors == 0
        timeline = app.screen.timeline
        shown = screen_text(app)
        newest_backoff = f"#{ids['backoff'][-1]}"
        newest_refused = f"#{ids['nocookie'][-1]}"
        assert newest_backoff in shown and newest_refused in shown
        assert all(line.plain in shown or line.plain[:60] in shown for line in timeline.lines)
        assert re.search(r"… \d+ earlier", timeline.plain)
        assert len(timeline.lines) <= 10  # half the screen at most


def _events_of(conn):
    from devconsole.model import EndEvent, HandshakeEvent, RefusedEvent

    if conn.refused:
        return [RefusedEvent(conn.handshake)]
    out = [HandshakeEvent(conn.handshake)]
    if conn.ts_end is not None:
        out.append(EndEvent(conn.id, conn.ts_end, clean=True, closed_by="server"))
    return out


async def test_the_report_redraws_nothing_before_it_is_mounted_or_after_it_is_gone() -> None:
    """Issue 16.10: the first r at 80x24 showed "Redraw failed NoMatches: No nodes match
    '#report-content'": the redraw timer ticked the report while it was not there."""
    _, app = app_with(fault_traffic().events)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        report = ReportScreen(app.state)
        report.refresh_report(force=True)  # not mounted yet: nothing to draw into
        app.push_screen(report)
        app.tick()
        await pilot.pause()
        app.tick()
        assert report.computations >= 1
        report.dismiss(None)
        app.tick()
        report.refresh_report(force=True)  # gone: nothing happens
        await pilot.pause()
        app.tick()
        assert app.redraw_errors == 0
