from __future__ import annotations

import pytest
from rich.console import Console

from devconsole.model import SERVER, Connection
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.handshake import (
    HandshakeScreen,
    explain_status,
    handshake_renderable,
    is_loopback_host,
    is_token_like,
    lint_handshake,
)
from tests.tui_fixtures import EVIL_TEXT, UTC, Traffic, frozen_clock, handshake, screen_text


def topics(hs) -> dict[str, str]:
    return {f.topic: f.level for f in lint_handshake(hs)}


def render_plain(conn: Connection, width: int = 160) -> str:
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    console.print(handshake_renderable(conn, 1, UTC))
    return console.export_text()


# ------------------------------------------------------------------ lint (pure)


def test_clean_handshake_has_no_flags() -> None:
    hs = handshake(protocols=["chat"], subprotocol="chat")
    assert lint_handshake(hs) == []


@pytest.mark.parametrize(
    "name",
    [
        "token",
        "access_token",
        "ACCESS-TOKEN",
        "ticket",
        "auth",
        "jwt",
        "key",
        "api_key",
        "sig",
        "signature",
        "session",
        "sessionId",
        "X-Amz-Signature",
        "bearer",
        "password",
    ],
)
def test_token_like_names(name: str) -> None:
    assert is_token_like(name)


@pytest.mark.parametrize("name", ["room", "page", "v", "lang", "", "---", "channel", "id"])
def test_not_token_like(name: str) -> None:
    assert not is_token_like(name)


def test_no_credentials_flagged() -> None:
    hs = handshake(cookies=())
    assert topics(hs)["auth"] == "warning"
    # any one credential is enough
    assert "auth" not in topics(handshake(cookies=(), query=[("access_token", "x")]))
    assert "auth" not in topics(
        handshake(cookies=(), extra_headers=[("Authorization", "Bearer abc")])
    )
    assert "auth" not in topics(handshake(cookies=(("sid", "1"),)))
    # a token smuggled in Sec-WebSocket-Protocol (browsers cannot set headers)
    assert "auth" not in topics(
        handshake(cookies=(), protocols=["access_token", "eyJhbGciOi.eyJzdWIi.sig"])
    )


def test_credential_in_query_is_noted() -> None:
    flags = lint_handshake(handshake(cookies=(), query=[("ticket", "tk_1"), ("room", "a")]))
    query = [f for f in flags if f.topic == "query"]
    assert len(query) == 1
    assert "ticket" in query[0].message
    assert "room" not in query[0].message


def test_subprotocol_requested_not_accepted() -> None:
    hs = handshake(protocols=["graphql-transport-ws", "graphql-ws"], subprotocol=None)
    flag = next(f for f in lint_handshake(hs) if f.topic == "subprotocol")
    assert flag.level == "error"
    assert "graphql-transport-ws" in flag.message


def test_subprotocol_accepted_not_requested() -> None:
    assert topics(handshake(protocols=(), subprotocol="mqtt"))["subprotocol"] == "error"
    assert topics(handshake(protocols=["a"], subprotocol="b"))["subprotocol"] == "error"
    # a refused upgrade negotiates nothing: no subprotocol flag there
    assert "subprotocol" not in topics(handshake(protocols=["a"], status=403))


def test_extension_accepted_not_offered() -> None:
    assert topics(handshake(extensions=["permessage-deflate"]))["extensions"] == "error"
    ok = handshake(
        offered_extensions=["permessage-deflate; client_max_window_bits"],
        extensions=["permessage-deflate; server_no_context_takeover"],
    )
    assert "extensions" not in topics(ok)


@pytest.mark.parametrize(
    ("host", "flagged"),
    [
        ("api.example.com", True),
        ("10.0.0.5", True),
        ("localhost", False),
        ("app.localhost", False),
        ("127.0.0.1", False),
        ("127.1.2.3", False),
        ("[::1]", False),
    ],
)
def test_plain_ws_to_remote_host(host: str, flagged: bool) -> None:
    hs = handshake(scheme="ws", host=host)
    assert ("scheme" in topics(hs)) is flagged
    assert "scheme" not in topics(handshake(scheme="wss", host=host))


def test_loopback_helper() -> None:
    assert is_loopback_host("::1")
    assert not is_loopback_host("example.com")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "credentials"),
        (403, "Origin"),
        (426, "Sec-WebSocket-Version"),
        (200, "does not speak WebSocket"),
        (404, "no WebSocket endpoint"),
        (502, "backend"),
        (503, "down"),
        (500, "failed"),
        (599, "server error"),
        (418, "client error"),
        (204, "plain HTTP"),
    ],
)
def test_refused_status_explained(status: int, words: str) -> None:
    hs = handshake(status=status)
    flags = lint_handshake(hs)
    assert flags[0].topic == "status"
    assert flags[0].level == "error"
    assert words in flags[0].message


def test_redirect_and_no_response() -> None:
    hs = handshake(status=302, response_headers=[("Location", "https://login.example.com/")])
    assert "https://login.example.com/" in (explain_status(hs) or "")
    down = handshake(status=None, error="connection refused")
    assert "connection refused" in (explain_status(down) or "")
    assert explain_status(handshake()) is None


def test_version_and_origin() -> None:
    hs = handshake(origin=None)
    hs.request_headers = [
        (k, "8" if k == "Sec-WebSocket-Version" else v) for k, v in hs.request_headers
    ]
    t = topics(hs)
    assert t["version"] == "error"
    assert t["origin"] == "info"
    hs.request_headers = [h for h in hs.request_headers if h[0] != "Sec-WebSocket-Version"]
    assert topics(hs)["version"] == "error"


def test_flags_sorted_by_severity() -> None:
    hs = handshake(status=401, cookies=(), scheme="ws", origin=None)
    levels = [f.level for f in lint_handshake(hs)]
    assert levels == sorted(levels, key=["error", "warning", "info"].index)


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
    t.open("c1", extra_headers=[("X-Evil", EVIL_TEXT)], path="/ws")
    t.text("c1", SERVER, "hello")
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
    t.open("c1")
    t.open("c2")
    app = make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        app.sync()
        await pilot.press("h")
        await pilot.pause()
        assert not isinstance(app.screen, HandshakeScreen)
        assert any("Select a connection" in str(n.message) for n in app._notifications)


def _inspector_app(refused: bool):
    t = Traffic()
    if refused:
        t.refused(
            "r1",
            status=403,
            path="/admin/ws",
            cookies=(),
            scheme="ws",
            host="ws.example.net",
            body=b'{"error":"forbidden","detail":"origin not allowed"}',
        )
    else:
        t.open(
            "c1",
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
