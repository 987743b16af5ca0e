from __future__ import annotations

from rich.console import Console

from devconsole.model import SERVER, Connection
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.handshake import HandshakeScreen, handshake_renderable
from tests.tui_fixtures import (
    EVIL_TEXT,
    UTC,
    Traffic,
    frozen_clock,
    handshake,
    notifications,
    screen_text,
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


async def test_h_without_a_connection_warns() -> None:
    t = Traffic()
    t.open("1")
    t.open("2")
    app = make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)
    shown = notifications(app)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        app.sync()
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, HandshakeScreen)
        assert any("Select a connection" in message for _, message, _ in shown)


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
