from __future__ import annotations

import re

from rich.console import Console

from devconsole.model import SERVER, Connection
from devconsole.samples import FEED_SESSION, refusal_traffic
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.handshake import HandshakeScreen, ReferencePicker, handshake_renderable
from tests.conftest import running_proxy, viewer
from tests.cookie_app import GOOD_ORIGIN, OTHER_ORIGIN, cookie_server, three_clients
from tests.cookie_app import SESSION as REAL_SESSION
from tests.tui_fixtures import (
    EVIL_TEXT,
    T0,
    UTC,
    Traffic,
    frozen_clock,
    handshake,
    notifications,
    screen_text,
    settle,
)


def render_plain(conn: Connection, width: int = 160) -> str:
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    console.print(handshake_renderable(conn, UTC))
    return console.export_text()


# ------------------------------------------------------------------ rendering


def test_render_keeps_header_order_and_duplicates() -> None:
    hs = handshake(
        extra_headers=[("X-Trace", "one"), ("X-Trace", "two")],
        query=[("room", "a"), ("room", "b")],
    )
    text = render_plain(Connection(hs.conn, hs))
    assert text.index("one") < text.index("two")
    assert text.count("X-Trace") == 2
    assert "Query parameters (2)" in text
    assert "Cookies (1)" in text
    assert "101 Switching Protocols" in text


def test_refused_body_shown_as_safe_text() -> None:
    body = ("<h1>403</h1>\n" + EVIL_TEXT).encode()
    hs = handshake(status=403, body=body)
    from devconsole.model import ConnState

    text = render_plain(Connection(hs.conn, hs, state=ConnState.REFUSED))
    assert "Body (" in text
    assert "<h1>403</h1>" in text
    assert "[bold]x[/bold]" in text
    assert "[link=file:///etc/passwd]" in text
    assert "\x1b" not in text
    assert "\x9b" not in text


def test_headers_and_query_never_markup() -> None:
    hs = handshake(
        path="/ws/[bold]p[/bold]",
        query=[("[red]q[/red]", "\x1b[31mRED")],
        extra_headers=[("X-Evil", EVIL_TEXT)],
        cookies=(("c", "[link=file:///etc/passwd]x"),),
    )
    text = render_plain(Connection(hs.conn, hs))
    for literal in (
        "[bold]p[/bold]",
        "[red]q[/red]",
        "[bold]x[/bold]",
        "[link=file:///etc/passwd]",
    ):
        assert literal in text
    assert "\x1b[31m" not in text
    assert "\x9b" not in text


# ------------------------------------------------------------------ the screen


def evil_handshake_app():
    t = Traffic()
    t.open("1", extra_headers=[("X-Evil", EVIL_TEXT)], path="/ws")
    t.text("1", SERVER, "hello")
    return make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)


async def test_h_opens_and_closes_handshake_inspector() -> None:
    app = evil_handshake_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        app.sync()
        await pilot.press("h")  # with one connection, "All" still knows which one
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen)
        shown = screen_text(app)
        assert "[bold]x[/bold]" in shown
        assert "[link=file:///etc/passwd]click[/link]" in shown
        assert "\x1b" not in shown
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HandshakeScreen)
        await pilot.press("h")
        await pilot.pause()
        await pilot.press("h")  # h toggles it closed too
        await pilot.pause()
        assert not isinstance(app.screen, HandshakeScreen)


async def test_h_with_nothing_selected_opens_the_newest_upgrade() -> None:
    t = Traffic()
    t.open("1")
    t.open("2", ts=T0 + 1)
    app = make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen)
        assert app.screen.conn.id == "2"
        await pilot.press("escape")
        # a refusal that came last wins, even if an open connection started later
        t2 = Traffic()
        t2.open("1", ts=T0)
        refused = t2.refused("2", ts=T0 + 1, cookies=())
        refused.ts_response = T0 + 3
        t2.open("3", ts=T0 + 2)
        app2 = make_app(MemorySource(t2.events), clock=frozen_clock, tz=UTC)
    async with app2.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app2.screen, HandshakeScreen)
        assert app2.screen.conn.id == "2"


async def test_h_with_no_connection_at_all_says_so() -> None:
    app = make_app(MemorySource([]), clock=frozen_clock, tz=UTC)
    shown = notifications(app)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, HandshakeScreen)
        assert any("No connection yet" in message for _, message, _ in shown)


def _inspector_app(refused: bool):
    t = Traffic()
    if refused:
        t.refused(
            "1",
            status=403,
            path="/admin/ws",
            cookies=(),
            scheme="ws",
            host="ws.example.net",
            body=b'{"error":"forbidden","detail":"origin not allowed"}',
        )
    else:
        t.open(
            "1",
            path="/graphql",
            query=[("ticket", "tk_5f2a"), ("room", "lobby")],
            cookies=(("session", "abc123"), ("theme", "dark")),
            protocols=["graphql-transport-ws", "graphql-ws"],
            subprotocol=None,
            offered_extensions=["permessage-deflate; client_max_window_bits"],
            extensions=["permessage-deflate"],
            extra_headers=[("X-Trace", "one"), ("X-Trace", "two")],
        )
    return make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)


async def _open_inspector(pilot) -> None:
    await pilot.pause()
    pilot.app.sync()
    await pilot.press("h")
    await pilot.pause()


def test_snapshot_handshake_inspector(snap_compare) -> None:
    assert snap_compare(_inspector_app(False), terminal_size=(140, 40), run_before=_open_inspector)


def test_snapshot_refused_upgrade(snap_compare) -> None:
    assert snap_compare(_inspector_app(True), terminal_size=(140, 40), run_before=_open_inspector)


# ------------------------------------------------------------------ the diff

SESSION = FEED_SESSION
_diff_traffic = refusal_traffic


CHANGE_ROW = re.compile(r"^(missing|different|extra)\s{2,}\S")  # a row of the diff table


def dialog_lines(app) -> list[str]:
    """The inspector's lines: what is between its left and right borders."""
    rows = [line for line in screen_text(app).splitlines() if line.count("█") >= 2]
    return [row[row.index("█") + 1 : row.rindex("█")].strip(" ▀▄") for row in rows]


def _app(t: Traffic):
    return make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)


async def test_refused_upgrade_opens_on_the_diff_with_the_likely_cause_first() -> None:
    app = _app(_diff_traffic())
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.main.connections.select("2")
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HandshakeScreen) and screen.view == "diff"
        shown = screen_text(app)
        lines = dialog_lines(app)
        assert lines[0].startswith("Handshake #2 · diff against #1")
        # the likely cause leads: right under the URL and the status line, before the diff
        assert lines[1].startswith("#2 ws://127.0.0.1/feed")
        assert lines[2].startswith("refused   HTTP 403 Forbidden")
        assert lines[3].startswith("Likely cause  403 Forbidden and no credentials were sent")
        assert "1 missing, 1 different, 0 extra" in shown
        row = next(line for line in lines if CHANGE_ROW.match(line))
        assert "cookie session" in row and "‹secret" in row
        assert SESSION not in shown
        assert "header Origin" in shown and "http://127.0.0.1:5173" in shown
        assert "#1: http://localhost:3000" in shown
        # s shows the secret, and says so; s again hides it
        await pilot.press("s")
        await pilot.pause()
        shown = screen_text(app)
        assert SESSION in shown and "SECRETS SHOWN" in shown
        await pilot.press("s")
        await pilot.pause()
        assert SESSION not in screen_text(app)
        # d: the full handshake, which still says what the diff found
        await pilot.press("d")
        await pilot.pause()
        assert screen.view == "full"
        shown = screen_text(app)
        assert "diff against #1: 1 missing, 1 different" in shown
        assert "Likely cause" in shown


async def test_accepted_with_credentials_opens_on_the_full_handshake() -> None:
    t = _diff_traffic()
    t.open("3", cookies=(("session", "bob-0000"),), origin="http://localhost:3000",
           path="/feed", host="127.0.0.1", scheme="ws", ts=T0 + 9)  # fmt: skip
    t.open("4", cookies=(), path="/feed", host="127.0.0.1", scheme="ws", ts=T0 + 10)
    app = _app(t)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.main.connections.select("3")
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen) and app.screen.view == "full"
        assert app.screen.reference is not None and app.screen.reference.id == "1"
        await pilot.press("escape")
        # accepted, but without credentials: opens on the diff
        app.main.connections.select("4")
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        assert isinstance(app.screen, HandshakeScreen) and app.screen.view == "diff"
        assert app.screen.reference is not None and app.screen.reference.id == "3"
        assert "Accepted, but without the cookie session that #3 sent" in screen_text(app)


async def test_r_chooses_another_reference() -> None:
    t = _diff_traffic()
    t.open("3", cookies=(("session", "bob-0000"),), origin="http://127.0.0.1:5173",
           path="/feed", host="127.0.0.1", scheme="ws", ts=T0 + 1)  # fmt: skip
    app = _app(t)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.main.connections.select("2")
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HandshakeScreen)
        assert screen.reference is not None and screen.reference.id == "3"  # the latest
        assert screen.diff is not None and screen.diff.names("missing", "cookies") == ["session"]
        assert not screen.diff.of("different")  # #3 came from the same Origin
        await pilot.press("r")
        await pilot.pause()
        assert isinstance(app.screen, ReferencePicker)
        shown = screen_text(app)
        assert "Compare #2 with" in shown and "(current)" in shown
        await pilot.press("down", "enter")  # #3 is first (current), then #1
        await pilot.pause()
        assert app.screen is screen
        assert screen.reference is not None and screen.reference.id == "1"
        assert "Handshake #2 · diff against #1" in screen_text(app)
        assert screen.diff is not None and [c.name for c in screen.diff.of("different")] == [
            "Origin"
        ]
        # esc in the picker keeps the reference
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and screen.reference.id == "1"


async def test_no_reference_says_how_to_pick_one() -> None:
    t = Traffic()
    t.refused("1", status=401, cookies=(), path="/private")
    t.open("2", path="/chat", ts=T0 + 1)
    app = _app(t)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HandshakeScreen)
        assert screen.reference is None and screen.view == "full"
        shown = screen_text(app)
        assert "401 Unauthorized and no credentials were sent" in shown
        await pilot.press("d")
        await pilot.pause()
        assert "No other accepted upgrade on /private" in screen_text(app)
        await pilot.press("r", "enter")
        await pilot.pause()
        assert screen.reference is not None and screen.reference.id == "2"


def test_snapshot_refused_diff_80x24(snap_compare) -> None:
    async def open_refused(pilot) -> None:
        await settle(pilot)
        pilot.app.main.connections.select("2")
        await settle(pilot)
        await pilot.press("h")

    assert snap_compare(_app(_diff_traffic()), terminal_size=(80, 24), run_before=open_refused)


def test_snapshot_refused_diff_200x50(snap_compare) -> None:
    async def open_newest(pilot) -> None:
        await settle(pilot)
        await pilot.press("h")  # nothing selected: the refusal is the newest upgrade

    app = _app(_diff_traffic(no_cookies=False))
    assert snap_compare(app, terminal_size=(200, 50), run_before=open_newest)


# ------------------------------------------------------------------ real clients


async def test_real_clients_through_the_proxy_diff_in_the_inspector(short_tmp) -> None:
    """A client with the session cookie and an Origin (accepted), one without the cookie
    from another Origin and one without it from the same Origin (both refused with 403),
    through the real proxy: the inspector names exactly the missing cookie and the
    differing Origin."""
    async with cookie_server() as port, running_proxy("regular", short_tmp) as px:
        async with viewer(px.tap) as v:
            outcome = await three_clients(px.port, port)
            assert (outcome.good, outcome.other_origin, outcome.same_origin) == (101, 403, 403)
            await v.wait_for(
                lambda v: (
                    sum(c.handshake.status is not None for c in v.session.connections.values()) == 3
                )
            )
            events = list(v.events)
    ids = sorted(v.session.connections, key=int)
    good, other, same = ids
    app = make_app(MemorySource(events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        # the two refusals of one client share a row: open the run (Enter), then pick one
        if other not in app.main.connections.ids:
            assert app.main.connections.toggle_run(other)
        app.main.connections.select(other)
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HandshakeScreen) and screen.view == "diff"
        assert screen.reference is not None and screen.reference.id == good
        assert screen.diff is not None
        assert [(c.change, c.label) for c in screen.diff.changes] == [
            ("missing", "cookie session"),
            ("different", "header Origin"),
        ]
        shown = screen_text(app)
        rows = dialog_lines(app)
        joined = " ".join(rows)
        assert [CHANGE_ROW.match(line).group(1) for line in rows if CHANGE_ROW.match(line)] == [
            "missing",
            "different",
        ]
        assert "1 missing, 1 different, 0 extra" in joined
        assert OTHER_ORIGIN in joined and GOOD_ORIGIN in joined
        assert REAL_SESSION not in shown
        assert "Likely cause  403 Forbidden: cookie session missing" in joined
        await pilot.press("escape")
        # nothing selected: the newest upgrade is the last refusal; its diff is the cookie
        app.main.connections.select(None)
        await settle(pilot)
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HandshakeScreen) and screen.conn.id == same
        assert screen.diff is not None
        assert [(c.change, c.label) for c in screen.diff.changes] == [("missing", "cookie session")]
