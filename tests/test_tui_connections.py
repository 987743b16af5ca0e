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
            r"#1 +closed +api\.example\.com/chat +Firefox/128 session +3 / 3 .* 1000 Normal "
            r"Closure by client",
            shown,
        )
        assert re.search(r"#2 +open +stream\.example\.com/feed +Firefox/128 +0 / 2", shown)
        assert re.search(r"#3 +refused +api\.example\.com/admin/ws .* HTTP 403 Forbidden", shown)
        assert "msgs → / ←" in shown and "rate" in shown


async def test_selecting_a_connection_shows_its_stream() -> None:
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        assert isinstance(app.focused, ConnectionList)  # where the screen starts
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
    wide = Columns.for_width(200, path_need=30)
    assert wide.client and wide.key and wide.bytes and wide.rate
    assert wide.path == 30 and wide.close > 60  # the path as long as paths are
    mid = Columns.for_width(120, path_need=30)
    assert mid.client == 0 and mid.key and mid.path >= 20 and mid.close >= 30
    narrow = Columns.for_width(78, path_need=9)
    assert narrow.key and narrow.bytes == 0 and narrow.rate == 0 and not narrow.host
    assert narrow.path == 10 and narrow.close >= 14
    tiny = Columns.for_width(50, path_need=9)
    assert tiny.key == 0 and tiny.path >= 10
    assert "host / path" in header_text(140).plain
    assert "address" not in header_text(140).plain and "address" in header_text(200).plain

    hs = handshake(status=None, error="connection refused")
    refused = Connection("r", hs, state=ConnState.REFUSED)
    assert close_text(refused).plain == "no response"
    c = Connection("c", handshake())
    c.ts_end, c.clean = 1.0, False
    assert close_text(c).plain == "no close frame"
    c.close_code, c.closed_by = 1006, "server"
    assert close_text(c).plain == "1006 Abnormal Closure by server"
    assert close_text(c, 20).plain == "1006 by server"  # narrow: the code and who


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
        # the instance before the path (the host left out when both do not fit)
        assert re.search(r"open +app-1 \S*/chat", shown)
        assert re.search(r"open +app-2 \(gone\) \S*/chat", shown)
        assert "app-1 ●" in shown and "app-2 gone" in shown  # the status bar


WS_AGENT = "Python/3.11 websockets/15.0.1"


def chat_with_retries(refusals: int = 40) -> Traffic:
    """Issue 16's chat app: a good client, a client without the cookie refused every 5 s
    (403), and a client with backoff whose connections come and go in between."""
    t = Traffic()
    ua = [("User-Agent", WS_AGENT)]
    t.open("1", path="/chat", client="127.0.0.1:50001", cookies=(("session", "good"),),
           extra_headers=ua)  # fmt: skip
    n = 2
    for i in range(refusals):
        t.ts += 5.0
        t.refused(str(n), status=403, path="/chat", client=f"127.0.0.1:{51000 + i}",
                  cookies=(), extra_headers=ua)  # fmt: skip
        n += 1
        if i % 10 == 5:  # the backoff client reconnects now and then
            t.open(str(n), path="/chat", client=f"127.0.0.1:{52000 + i}",
                   cookies=(("session", "bo"),), extra_headers=ua)  # fmt: skip
            t.end(str(n), closed_by="server")
            n += 1
    return t


def without_firefox(events):
    """The builder's browser agent comes first: drop it, keep the one the test gave."""
    for ev in events:
        hs = getattr(ev, "handshake", None)
        if hs is not None:
            agents = [v for k, v in hs.request_headers if k == "User-Agent"]
            if len(agents) > 1:
                hs.request_headers = [
                    (k, v) for k, v in hs.request_headers if k != "User-Agent" or v == agents[-1]
                ]
    return events


async def test_refused_retries_of_one_client_share_a_row() -> None:
    """Issue 16.6: 50+ rows of refused retries in 5 minutes flooded an 8-row pane."""
    t = chat_with_retries(40)
    _, app = app_with(without_firefox(t.take()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        conns = app.main.connections
        assert len(app.session.connections) == 45
        shown = screen_text(app)
        # the good client, the run of refusals (on the row of its first), 4 backoff rows
        assert conns.row_count == 1 + 1 + 1 + 4
        # on the row of its first attempt, named by its newest (what h inspects)
        assert re.search(r"#45 +refused +#2–#45 ×40 /chat +websockets/15 .* HTTP 403", shown)
        assert shown.index("#45 ") < shown.index("#8 ")
        run = next(r for r in conns.rows if r.group)
        assert len(run.ids) == 40 and run.newest == "45"
        conns.select("45")
        await settle(pilot)
        assert app.main.conn == "45"  # the newest refusal: h inspects it
        await pilot.press("enter")  # show them one by one
        await settle(pilot)
        assert conns.row_count == 1 + 1 + 40 + 4 and conns.selected == "45"
        await pilot.press("enter")  # and fold them again
        await settle(pilot)
        assert conns.row_count == 7


async def test_l_shows_only_live_connections() -> None:
    t = chat_with_retries(12)
    _, app = app_with(without_firefox(t.take()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        conns = app.main.connections
        await pilot.press("l")
        await settle(pilot)
        assert [r.ids for r in conns.rows] == [("1",)]
        assert re.search(r"Live connections \(1 of \d+\)", screen_text(app))
        await pilot.press("l")
        await settle(pilot)
        assert conns.row_count > 2


async def test_end_and_G_go_to_the_last_row_of_the_focused_pane() -> None:
    """Issue 16.6: End/G went to the stream's end whatever had focus."""
    t = Traffic()
    for i in range(1, 31):
        t.open(str(i), path=f"/c{i}", client=f"127.0.0.1:{50000 + i}")
    _, app = app_with(t.take())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        conns = app.main.connections
        await pilot.press("end")
        assert conns.selected == "30"
        assert "#30" in screen_text(app)  # scrolled into view
        await pilot.press("home", "G")
        assert conns.selected == "30"


async def test_client_keys_tell_clients_apart_below_200_columns() -> None:
    """Issue 16.7: without the address column (below 200 columns) clients looked alike."""
    t = chat_with_retries(3)
    _, app = app_with(without_firefox(t.take()))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"#1 +open +.*/chat +websockets/15 session ", shown)
        assert re.search(r"refused +#2–#4 ×3 .*/chat +websockets/15 ", shown)
        assert "127.0.0.1:" not in shown.split("Stream")[0]  # no address column at 120


async def test_the_selected_row_is_marked_without_colour() -> None:
    """Issue 15: the selected connection is marked in any colour scheme, monochrome too,
    and in what tmux capture-pane -p prints (characters, not styles)."""
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        marked = [ln for ln in screen_text(app).splitlines() if "▸" in ln]
        assert len(marked) == 1 and "ALL" in marked[0]
        await pilot.press("down", "down", "down")
        await settle(pilot)
        marked = [ln for ln in screen_text(app).splitlines() if "▸" in ln]
        assert len(marked) == 1 and re.search(r"▸ +#3 +refused", marked[0])
        app.main.stream.focus()  # still marked when the list has not the focus
        await settle(pilot)
        marked = [ln for ln in screen_text(app).splitlines() if "▸" in ln]
        assert len(marked) == 1 and "#3" in marked[0]


async def test_a_refused_upgrade_is_reached_without_tab() -> None:
    """Issue 8.8: a refused connection (no messages) could not be reached without tab-ing
    to the connections list first. The screen starts there."""
    _, app = app_with(demo_traffic().events)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down")
        await settle(pilot)
        assert app.main.conn == "3"
        assert "Upgrade refused (HTTP 403)" in screen_text(app)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen) and app.screen.conn.id == "3"


async def test_every_live_connection_is_in_reach_at_80x24() -> None:
    """Issue 8.6: at 80x24 the list showed 2 of 7 connections."""
    t = Traffic()
    for i in range(1, 8):
        t.open(str(i), path=f"/live{i}", client=f"127.0.0.1:{50000 + i}")
        t.text(str(i), SERVER, "hello")
    _, app = app_with(t.take())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        pane = app.main.query_one("#connections-pane")
        assert pane.outer_size.height >= 9  # as tall as it may be: 40% of the screen
        shown = screen_text(app)
        assert all(f"/live{i}" in shown for i in range(1, 6))
        await pilot.press("end")
        await settle(pilot)
        assert "/live7" in screen_text(app)


async def test_held_messages_are_counted_on_their_connection_and_on_all() -> None:
    """Issue 9: the rows say how many messages a breakpoint holds on each connection."""
    from devconsole.samples import intercept_traffic

    _, app = app_with(intercept_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lines = screen_text(app).splitlines()
        row = {line.split()[1]: line for line in lines if " open " in line}
        assert "⏸1 " in row["#1"] and "⏸2 " in row["#2"]
        assert "⏸ 3 held" in next(line for line in lines if "All connections" in line)
