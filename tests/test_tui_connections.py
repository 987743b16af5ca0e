from __future__ import annotations

import re

from devconsole.model import CLIENT, SERVER, Connection, ConnState
from devconsole.session import Session
from devconsole.tui import make_app
from devconsole.tui.connections import Columns, ConnectionList, close_text, header_text
from devconsole.tui.handshake import HandshakeScreen
from devconsole.tui.stream import StreamView
from tests.tui_fixtures import (
    UTC,
    Traffic,
    demo_traffic,
    frozen_clock,
    handshake,
    live_source,
    screen_text,
    settle,
)

SIZE = (140, 40)


def app_with(events, **kw):
    source = live_source(events)
    return source, make_app(source, clock=kw.pop("clock", frozen_clock), tz=UTC, **kw)


async def test_rows_show_state_path_client_counters_and_close() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"ALL +All connections \(1/3 live\) +3 / 5 +20k / 233 +0/s", shown)
        assert re.search(
            r"#1 +closed +api\.example\.com/chat +127\.0\.0\.1:50001 +3 / 3 .* 1000 Normal "
            r"Closure by client",
            shown,
        )
        assert re.search(r"#2 +open +stream\.example\.com/feed +127\.0\.0\.1:50002 +0 / 2", shown)
        assert re.search(r"#3 +refused +api\.example\.com/admin/ws .* HTTP 403 Forbidden", shown)
        assert "msgs → / ←" in shown and "rate" in shown


async def test_selecting_a_connection_shows_its_stream() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await pilot.press("shift+tab")  # back to the connections list
        assert isinstance(app.focused, ConnectionList)
        await pilot.press("down")
        await settle(pilot)
        assert screen.conn == "1"
        assert screen.stream.view.conn == "1"
        assert {app.session.get(s).conn for s in screen.stream.view.seqs} == {"1"}
        assert "Stream · #1 /chat" in screen_text(app)
        assert "conn" not in screen.query_one("#stream-header").render().plain
        await pilot.press("down")
        await settle(pilot)
        assert screen.conn == "2"
        assert len(screen.stream.view.seqs) == 2
        await pilot.press("home")
        await settle(pilot)
        assert screen.conn is None
        assert len(screen.stream.view.seqs) == 12
        await pilot.press("down", "enter")
        assert isinstance(app.focused, StreamView)


async def test_refused_connection_explains_and_opens_handshake() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("3")
        await settle(pilot)
        assert app.main.conn == "3"
        shown = screen_text(app)
        assert "Upgrade refused (HTTP 403): no messages. Press h to inspect the" in shown
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen)
        assert app.screen.conn.id == "3"


async def test_new_connections_keep_the_selection_and_states_are_shown() -> None:
    t = Traffic()
    t.open("1")
    t.open("2", path="/two")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        conns = app.main.connections
        conns.select("2")
        await settle(pilot)
        t.open("3", path="/three")
        t.state("1", ConnState.HALF_OPEN)
        t.close("2", CLIENT, 1001)
        t.open("4", path="/four")
        t.state("4", ConnState.KILLED)
        t.open("5", path="/five", status=None)
        source.push(t.take())
        await settle(pilot)
        assert conns.selected == "2"
        assert app.main.conn == "2"
        shown = screen_text(app)
        assert re.search(r"#1 +half-open", shown)
        assert re.search(r"#2 +closing .*1001 Going Away by client", shown)
        assert re.search(r"#3 +open +api\.example\.com/three", shown)
        assert re.search(r"#4 +killed", shown)


async def test_forgotten_connection_falls_back_to_all() -> None:
    t = Traffic()
    t.open("1")
    t.end("1")
    source = live_source(t.take())
    app = make_app(source, session=Session(max_connections=2), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        assert app.main.conn == "1"
        t.open("2")
        t.open("3")  # the oldest ended connection is forgotten
        source.push(t.take())
        await settle(pilot)
        assert "1" not in app.session.connections
        assert app.main.connections.selected is None
        assert app.main.conn is None


async def test_rates_from_sampled_counters() -> None:
    now = [0.0]
    t = Traffic()
    t.open("1")
    source, app = app_with(t.take(), clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        source.push(t.burst("1", 2500, side=SERVER))
        now[0] = 1.0
        await settle(pilot)
        assert app.state.rates.get("1") == 2500
        shown = screen_text(app)
        assert re.search(r"#1 +open .* 2\.5k/s", shown)
        assert "│ 2.5k/s │" in shown  # the status bar total


def test_columns_and_close_text() -> None:
    wide = Columns.for_width(140)
    assert wide.client and wide.close and wide.path >= 20
    narrow = Columns.for_width(100)
    assert narrow.client == 0 and narrow.path >= 16
    tiny = Columns.for_width(60)
    assert tiny.close == 0 and tiny.path >= 8
    assert "host / path" in header_text(140).plain
    assert "client" not in header_text(100).plain

    hs = handshake(status=None, error="connection refused")
    refused = Connection("r", hs, state=ConnState.REFUSED)
    assert close_text(refused).plain == "no response"
    c = Connection("c", handshake())
    c.ts_end, c.clean = 1.0, False
    assert close_text(c).plain == "no close frame"
    c.close_code, c.closed_by = 1006, "server"
    assert close_text(c).plain == "1006 Abnormal Closure by server"


async def test_instances_of_a_redis_source_are_shown_and_a_gone_one_stands_out() -> None:
    from devconsole.model import HandshakeEvent, InstanceEvent

    events = [
        HandshakeEvent(handshake("app-1/3", path="/chat")),
        HandshakeEvent(handshake("app-2/3", path="/chat")),
        InstanceEvent("app-1", 1.0, "up"),
        InstanceEvent("app-2", 1.0, "gone", "no heartbeat for 3.6 s"),
    ]
    _, app = app_with(events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"open +app-1 \S*/chat", shown)
        assert re.search(r"open +app-2 \(gone\) api", shown)
        assert "app-1 ●" in shown and "app-2 gone" in shown  # the status bar
