"""The screen speaks the app's protocol (``devconsole.tui.protocol`` and its wiring in the
main screen): decoded previews, the decoded tree beside the raw form, ``p`` between a
request and its reply, the protocol menu (``P``), ``proto:``/``d:`` filters by the
connection's protocol, the inject dialog's decoded form, the report's latency and
protocol heartbeats; and all of it against python-socketio through the real proxy."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import OptionList

from devconsole.model import CLIENT, SERVER, InjectCommand, Opcode
from devconsole.samples import SIO_QUERY, protocol_traffic
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.faults import InjectDialog
from devconsole.tui.protocol import ProtocolMenu, decoded_inject
from devconsole.tui.report import ReportScreen
from tests.tui_fixtures import (
    FAULT_NOW,
    UTC,
    Traffic,
    focus_stream,
    frozen_clock,
    notifications,
    open_detail,
    screen_text,
    settle,
)

SIZE = (140, 40)


async def until(pilot: Any, cond: Any, timeout: float = 10) -> None:
    """Let the app run until ``cond()`` holds (a command sent by a worker)."""
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await pilot.pause(0.02)
    raise AssertionError("timed out")


def app_for(t: Traffic | None = None, **kw: Any):
    source = MemorySource((t or protocol_traffic()).events, command_error=None)
    app = make_app(source, clock=frozen_clock, wall_clock=lambda: FAULT_NOW, tz=UTC, **kw)
    return source, app


async def test_rows_show_the_decoded_summary() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert 'sio "chat" {"text":"hi all","room":"lobby"} ack 1' in text
        assert 'sio ack 1 [{"ok":true,"id":7}]' in text
        assert 'rpc eth_subscribe id=7 ["newHeads"]' in text
        assert "eio ping" in text and "eio pong" in text
        assert '421["chat"' not in text  # the raw form is in the detail, not the row


async def test_the_detail_shows_the_tree_the_raw_form_and_the_pair() -> None:
    _, app = app_for()
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        detail = await open_detail(pilot, 4)
        await settle(pilot)
        assert detail.view_name == "socket.io" and detail.has_tree
        assert detail.view_names[:2] == ["socket.io", "text"]
        text = screen_text(app)
        assert "socket.io (URL /socket.io/) · reply #6 after 262 ms" in text
        assert 'raw 421["chat",{"text":"hi all","room":"lobby"}]' in text
        assert 'event: "chat"' in text and "ack: 1" in text
        # v shows the raw views
        await pilot.press("v")
        assert detail.view_name == "text"
        assert "raw 421" not in screen_text(app)


async def test_p_jumps_between_a_request_and_its_reply() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = notifications(app)
        screen = app.main
        await open_detail(pilot, 7)
        await focus_stream(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert screen.stream.cursor_seq == 8 and screen.detail.item.seq == 8
        assert "reply to #7, 31 ms after it" in screen_text(app)
        await pilot.press("p")
        assert screen.stream.cursor_seq == 7
        # a message that pairs with nothing says so
        screen.stream.select_seq(11)
        await pilot.press("p")
        assert screen.stream.cursor_seq == 11
        assert any(t == "Pair" and "#11 is neither" in m for t, m, _ in shown)


async def test_p_reaches_a_reply_the_filter_hides() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        assert screen.apply_filter("from:client")
        await settle(pilot)
        await open_detail(pilot, 14)
        await focus_stream(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert screen.detail.item.seq == 15  # shown in the detail, not in the stream
        assert screen.stream.index_of(15) is None


async def test_filters_know_the_protocol_from_the_handshake() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        # "2" and "3" alone are not recognisably Socket.IO: the URL says they are
        assert screen.apply_filter("proto:socket.io -d:type=event -d:type=ack")
        await settle(pilot)
        assert list(screen.stream.view.seqs) == [1, 2, 3, 9, 10]
        assert screen.apply_filter("d:event=chat")
        await settle(pilot)
        assert list(screen.stream.view.seqs) == [4, 5]
        assert screen.apply_filter("d:method=eth_subscribe or d:id=8")
        await settle(pilot)
        assert list(screen.stream.view.seqs) == [7, 14, 15]


async def test_the_protocol_menu_overrides_one_connection() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        await open_detail(pilot, 7)
        await focus_stream(pilot)
        await pilot.press("P")
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, ProtocolMenu) and menu.conn.id == "2"
        text = screen_text(app)
        assert "now: jsonrpc (URL /rpc, confirmed by content)" in text
        assert '✓ rpc eth_subscribe id=7 ["newHeads"]' in text  # what #7 reads as by each
        assert "✗ " in text  # ... and why the others cannot read it
        options = menu.query_one(OptionList)
        options.highlighted = menu.names.index("none")
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.live.tracker.override_of("2") == "none"
        assert '{"jsonrpc":"2.0","method":"eth_subscribe"' in screen_text(app)
        assert screen.detail.view_name == "json"  # redrawn: no protocol view any more
        assert "not decoded (chosen for this connection)" in screen_text(app)
        # back to automatic
        await pilot.press("P")
        await pilot.pause()
        app.screen.query_one(OptionList).highlighted = 0
        await pilot.press("enter")
        await settle(pilot)
        assert app.state.live.tracker.override_of("2") is None
        assert "rpc eth_subscribe id=7" in screen_text(app)


async def test_the_protocol_menu_takes_a_typed_name_and_refuses_unknown_ones() -> None:
    _, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("P")
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, ProtocolMenu)
        await pilot.press("slash")
        await pilot.press(*"nonsense", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ProtocolMenu)
        assert "unknown decoder 'nonsense'" in screen_text(app)
        menu.query_one("#protocol-name").value = ""
        await pilot.press(*"stomp", "enter")
        await settle(pilot)
        assert app.state.live.tracker.override_of("1") == "stomp"
        # a filter that reads the decoded form is matched again with the new protocol
        assert app.main.apply_filter("proto:socket.io")
        await settle(pilot)
        assert not list(app.main.stream.view.seqs)


async def test_inject_sends_the_decoded_form() -> None:
    source, app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("i")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, InjectDialog) and dialog.protocol == "socket.io"
        dialog.set_kind("decoded")
        await pilot.pause()
        await pilot.press(*'["chat", {"text": "from the TUI"}]')
        await pilot.pause()
        assert "socket.io event chat, 1 frame, 34 bytes → client" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: len(source.commands) == 1)
        (cmd,) = source.commands
        assert isinstance(cmd, InjectCommand) and cmd.to == "client"
        assert cmd.payload == b'42["chat",{"text":"from the TUI"}]'
        # bytes are binary attachments: the placeholder and its frame, in order
        await pilot.press("i")
        await pilot.pause()
        app.screen.set_kind("decoded")
        app.screen.set_target("server")
        await pilot.press(*'["upload", "a.png", {"$b64": "AAE="}]', "enter")
        await until(pilot, lambda: len(source.commands) == 3)
        placeholder, blob = source.commands[1:]
        assert placeholder.payload.startswith(b'451-["upload","a.png",{"_placeholder":true')
        assert (blob.opcode, blob.payload) == (Opcode.BINARY, b"\x00\x01")


def test_the_decoded_form_is_checked_before_anything_is_sent() -> None:
    from devconsole.session import Session
    from devconsole.tui.decoding import LiveAnalysis

    s = Session()
    live = LiveAnalysis.attach(s)
    s.apply_all(protocol_traffic().events)
    with pytest.raises(ValueError, match="not JSON"):
        decoded_inject(live, "1", "server", "chat hi")
    with pytest.raises(ValueError, match="the name first"):
        decoded_inject(live, "1", "server", "[1, 2]")
    cmds, what = decoded_inject(live, "2", "server", '{"method": "ping", "id": 3}')
    assert what == "jsonrpc ping, 1 frame, 40 bytes"
    assert cmds[0].payload == b'{"jsonrpc":"2.0","method":"ping","id":3}'


async def test_the_report_has_latency_per_method_and_protocol_heartbeats() -> None:
    _, app = app_for()
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert isinstance(app.screen, ReportScreen)
        text = screen_text(app)
        assert "Latency" in text and "request → first answer" in text
        assert "chat" in text and "262 ms" in text
        assert "protocol heartbeat" in text
        assert "socket.io ping from server 1×" in text and "(negotiated 25.00 s" in text
        assert "replies" in text and "requests" in text
        await pilot.press("tab")
        await settle(pilot)
        text = screen_text(app)
        assert "eth_subscribe" in text and "31 ms" in text and "eth_blockNumber" in text


# --------------------------------------------------------------------------- snapshots


def _detail_before(seq: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await open_detail(pilot, seq)
        await settle(pilot)

    return run_before


def test_snapshot_decoded_stream_and_tree_80x24(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_detail_before(4))


def test_snapshot_decoded_stream_and_tree_200x50(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(200, 50), run_before=_detail_before(4))


def _menu_before(seq: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await open_detail(pilot, seq)
        await focus_stream(pilot)
        await pilot.press("P")
        await until(pilot, lambda: isinstance(pilot.app.screen, ProtocolMenu))
        await settle(pilot)

    return run_before


def test_snapshot_protocol_menu_80x24(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_menu_before(4))


def test_snapshot_protocol_menu_200x50(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(200, 50), run_before=_menu_before(7))


def _pair_before(pilot_seq: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await open_detail(pilot, pilot_seq)
        await focus_stream(pilot)
        await pilot.press("p")
        await settle(pilot)

    return run_before


def test_snapshot_pair_jump_80x24(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(80, 24), run_before=_pair_before(14))


def test_snapshot_pair_jump_200x50(snap_compare) -> None:
    _, app = app_for()
    assert snap_compare(app, terminal_size=(200, 50), run_before=_pair_before(4))


# --------------------------------------------------------------------------- real parts


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_python_socketio_through_the_proxy_decoded_on_screen(short_tmp: Path) -> None:
    """A python-socketio client and server through the real proxy, the screen attached to
    its tap: rows decoded, the ack paired with its event, and the inject dialog's
    Socket.IO event reaching the client, a binary attachment reaching the server."""
    import socketio
    from aiohttp import web

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until
    from tests.protocol_servers import aiohttp_server

    sio = socketio.AsyncServer(async_mode="aiohttp")
    web_app = web.Application()
    sio.attach(web_app)
    uploads: list[Any] = []

    @sio.on("chat")  # type: ignore[misc]
    async def chat(sid: str, data: Any) -> Any:
        return {"ok": True, "echo": data["text"]}

    @sio.on("upload")  # type: ignore[misc]
    async def upload(sid: str, *args: Any) -> None:
        uploads.append(list(args))

    async with (
        aiohttp_server(web_app) as port,
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as px,
    ):
        app = make_app(TapClient(px.tap))
        client = socketio.AsyncClient()
        news: list[Any] = []
        client.on("news", lambda data: news.append(data))
        async with app.run_test(size=(160, 45)) as pilot:
            await client.connect(
                f"http://127.0.0.1:{px.port}", transports=["websocket"], wait_timeout=10
            )
            try:
                assert await client.call("chat", {"text": "hi"}, timeout=10) == {
                    "ok": True,
                    "echo": "hi",
                }
                session = app.session

                def acked() -> bool:
                    pilot.app.sync()
                    return any(b"43" in m.payload[:2] for m in session.items())

                await wait_until(acked)
                await settle(pilot)
                text = screen_text(app)
                assert 'sio "chat" {"text":"hi"} ack' in text, text
                assert re.search(r'sio ack \d+ \[\{"ok":true,"echo":"hi"\}\]', text), text
                assert "eio open sid=" in text and "sio connect /" in text
                event = next(
                    m for m in session.items() if m.side == CLIENT and m.payload[:2] == b"42"
                )
                await open_detail(pilot, event.seq)
                await focus_stream(pilot)
                await pilot.press("p")
                assert app.main.stream.cursor_seq == app.state.live.pairs.partner(event.seq)
                conn = event.conn
                # the inject dialog, decoded: an event to the client
                app.main.connections.select(conn)
                await settle(pilot)
                await pilot.press("i")
                await pilot.pause()
                app.screen.set_kind("decoded")
                await pilot.press(*'["news", "from the TUI"]', "enter")
                await wait_until(lambda: news == ["from the TUI"])
                # ... and an event with a binary attachment to the server
                await pilot.press("i")
                await pilot.pause()
                app.screen.set_kind("decoded")
                app.screen.set_target("server")
                await pilot.press(*'["upload", "a.bin", {"$b64": "AAEC"}]', "enter")
                await wait_until(lambda: uploads == [["a.bin", b"\x00\x01\x02"]])
            finally:
                await client.disconnect()
                await asyncio.sleep(0)


def test_a_socketio_connection_without_its_url_is_recognised_by_content() -> None:
    """What the screen calls the protocol of a connection whose path says nothing."""
    t = Traffic()
    t.open("1", path="/live", query=SIO_QUERY[:1])
    t.text("1", SERVER, '0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":5000}')
    t.text("1", SERVER, '42["tick",1]')
    from devconsole.session import Session
    from devconsole.tui.decoding import LiveAnalysis

    s = Session()
    live = LiveAnalysis.attach(s)
    s.apply_all(t.events)
    assert live.protocol_of("1") == "socket.io"
    assert live.preview(s.get(2), 40) == 'sio "tick" 1'
