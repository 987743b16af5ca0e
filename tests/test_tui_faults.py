"""The fault menu (x), the inject dialog (i) and the fault marks on screen."""

from __future__ import annotations

import pytest

from devconsole.model import (
    CLIENT,
    SERVER,
    AbortCommand,
    CloseCommand,
    HalfOpenCommand,
    InjectCommand,
    Opcode,
    ReleaseCommand,
)
from devconsole.session import Session
from devconsole.tui import make_app
from devconsole.tui.faults import (
    FaultMenu,
    InjectDialog,
    build_inject,
    check_reason,
    parse_close_code,
    parse_hex,
)
from tests.tui_fixtures import (
    FAULT_NOW,
    UTC,
    Traffic,
    fault_traffic,
    frozen_clock,
    live_source,
    notifications,
    screen_text,
    settle,
)

SIZE = (140, 40)


def app_with(events, **kw):
    source = live_source(events, command_error=kw.pop("command_error", None))
    app = make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: FAULT_NOW, **kw)
    notifications(app)
    return source, app


def open_traffic() -> Traffic:
    t = Traffic()
    t.open("1", path="/feed")
    t.text("1", SERVER, "tick")
    return t


async def until_sent(pilot, source, n: int = 1) -> None:
    """Until the app has the result of its n-th command (and has shown it)."""
    for _ in range(50):
        if len(pilot.app.command_results) >= n:
            break
        await pilot.pause()
    await pilot.pause()


def messages(app) -> list[tuple[str, str, str]]:
    return notifications(app)


# --------------------------------------------------------------------------- pure checks


def test_close_code_validation() -> None:
    for ok in ("1000", "1003", "1007", "1014", "3000", "4999", " 4000 "):
        assert parse_close_code(ok) == int(ok)
    for bad in ("1004", "1005", "1006", "1015", "999", "2999", "5000", "0"):
        with pytest.raises(ValueError, match="1000-1003, 1007-1014 or 3000-4999"):
            parse_close_code(bad)
    with pytest.raises(ValueError, match="enter a close code"):
        parse_close_code("")
    with pytest.raises(ValueError, match="not a number"):
        parse_close_code("10a")


def test_reason_is_at_most_123_utf8_bytes() -> None:
    assert check_reason("x" * 123) == "x" * 123
    with pytest.raises(ValueError, match="124 bytes"):
        check_reason("x" * 124)
    with pytest.raises(ValueError, match="126 bytes"):
        check_reason("é" * 63)  # 63 characters, 126 bytes


def test_hex_parsing() -> None:
    assert parse_hex("01 02 ff") == b"\x01\x02\xff"
    assert parse_hex("0102FF\n") == b"\x01\x02\xff"
    assert parse_hex("") == b""
    with pytest.raises(ValueError, match="character 4: 'z'"):
        parse_hex("01 z2")
    with pytest.raises(ValueError, match="odd number"):
        parse_hex("012")


def test_build_inject() -> None:
    assert build_inject("c", CLIENT, "text", "héllo") == InjectCommand(
        "c", CLIENT, Opcode.TEXT, "héllo".encode()
    )
    assert build_inject("c", SERVER, "binary", "de ad") == InjectCommand(
        "c", SERVER, Opcode.BINARY, b"\xde\xad"
    )
    assert build_inject("c", CLIENT, "ping", "").payload == b"devconsole"
    with pytest.raises(ValueError, match="at most 125"):
        build_inject("c", CLIENT, "ping", "x" * 126)


# --------------------------------------------------------------------------- fault menu


async def test_x_then_5_sends_close_4000_to_both() -> None:
    source, app = app_with(open_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("x")
        assert isinstance(app.screen, FaultMenu)
        shown = screen_text(app)
        for text in ("close 1012", "Service Restart", "abort with RST", "half-open"):
            assert text in shown
        assert "release" not in shown  # only offered when half-open
        await pilot.press("5")
        await until_sent(pilot, source)
        assert source.commands == [CloseCommand("1", 4000, "", "both")]
        assert not isinstance(app.screen, FaultMenu)
        assert ("Sent", "#1 close 4000 to both", "information") in messages(app)


async def test_the_addons_error_is_shown() -> None:
    source, app = app_with(open_traffic().events, command_error="connection c1 is closed")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await settle(pilot)
        # no connection highlighted: the connection of the selected stream row
        app.main.stream.select_seq(1)
        await pilot.press("x", "4")
        await until_sent(pilot, source)
        assert source.commands == [CloseCommand("1", 1012, "", "both")]
        errors = [m for m in messages(app) if m[2] == "error"]
        assert errors == [("Failed: #1 close 1012 to both", "connection c1 is closed", "error")]
        await pilot.pause(0.05)  # the toast is drawn on the next refresh
        assert "connection c1 is closed" in screen_text(app)


async def test_a_dead_tap_is_shown_too() -> None:
    from devconsole.source import MemorySource, SourceError

    class DeadSource(MemorySource):
        async def command(self, cmd):
            self.commands.append(cmd)
            raise SourceError("not connected to a tap")

    source = DeadSource(open_traffic().events)
    app = make_app(source, clock=frozen_clock, tz=UTC)
    notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("x", "a")
        await until_sent(pilot, source)
        assert ("Failed: #1 abort", "not connected to a tap", "error") in messages(app)


async def test_target_custom_code_and_validation() -> None:
    source, app = app_with(open_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("x", "t", "t")  # both -> client -> server
        menu = app.screen
        assert isinstance(menu, FaultMenu) and menu.target == "server"
        await pilot.press("c")
        assert app.focused is not None and app.focused.id == "fault-code"
        await pilot.press(*"1005", "enter")
        await pilot.pause()
        assert app.screen is menu  # refused, the menu stays
        assert "1005 is not a code a peer may send" in screen_text(app)
        assert source.commands == []
        code = menu.query_one("#fault-code")
        code.value = ""
        await pilot.press(*"4001", "tab")
        menu.query_one("#fault-reason").value = "é" * 62
        await pilot.press("enter")
        await pilot.pause()
        assert "124 bytes in UTF-8; at most 123" in screen_text(app)
        menu.query_one("#fault-reason").value = "maintenance"
        await pilot.press("enter")
        await until_sent(pilot, source)
        assert source.commands == [CloseCommand("1", 4001, "maintenance", "server")]


async def test_abort_rst_half_open() -> None:
    source, app = app_with(open_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        expected = [AbortCommand("1"), AbortCommand("1", rst=True), HalfOpenCommand("1")]
        for n, key in enumerate("arh", start=1):
            # the recording source changes nothing: the connection stays open
            await pilot.press("x", key)
            await until_sent(pilot, source, n)
        assert source.commands == expected


async def test_release_only_when_half_open_and_arrows_work() -> None:
    t = open_traffic()
    t.state("1", "half-open")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("x")
        shown = screen_text(app)
        assert "release" in shown and "half-open  forward nothing" not in shown
        await pilot.press("h")  # not offered: nothing sent
        await pilot.pause()
        assert source.commands == []
        await pilot.press("end", "enter")  # the last item, by arrows: release
        await until_sent(pilot, source)
        assert source.commands == [ReleaseCommand("1")]


async def test_escape_cancels_and_ended_connections_are_refused() -> None:
    source, app = app_with(fault_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("4")  # closed by the server
        await settle(pilot)
        await pilot.press("x")
        assert "Faults cannot be applied: the connection has ended (closed)" in screen_text(app)
        await pilot.press("1", "a")
        await pilot.press("escape")
        assert not isinstance(app.screen, FaultMenu)
        app.main.connections.select("3")  # a refused upgrade
        await settle(pilot)
        await pilot.press("x")
        assert "the upgrade was refused (HTTP 503)" in screen_text(app)
        await pilot.press("escape", "i")
        assert "Cannot inject: the upgrade was refused" in screen_text(app)
        await pilot.press("escape")
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("x", "escape")
        await pilot.pause()
        assert source.commands == []


# --------------------------------------------------------------------------- inject


async def test_inject_text_hex_and_ping() -> None:
    source, app = app_with(open_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("i")
        assert isinstance(app.screen, InjectDialog)
        await pilot.press("h", "i", "enter")
        await until_sent(pilot, source, 1)
        assert source.commands[-1] == InjectCommand("1", CLIENT, Opcode.TEXT, b"hi")

        await pilot.press("i", "ctrl+t", "ctrl+o")  # to server, binary
        dialog = app.screen
        assert isinstance(dialog, InjectDialog)
        assert (dialog.to, dialog.kind) == ("server", "binary")
        dialog.query_one("#inject-payload").value = "01 0"
        await pilot.press("g", "enter")
        assert app.screen is dialog  # bad hex: refused with where it is wrong
        assert "not hexadecimal at character 5: 'g'" in screen_text(app)
        assert len(source.commands) == 1
        dialog.query_one("#inject-payload").value = "01 02 ff"
        await pilot.pause()
        assert "binary, 3 bytes → server" in screen_text(app)
        await pilot.press("ctrl+s")
        await until_sent(pilot, source, 2)
        assert source.commands[-1] == InjectCommand("1", SERVER, Opcode.BINARY, b"\x01\x02\xff")

        await pilot.press("i")
        dialog = app.screen
        assert isinstance(dialog, InjectDialog)
        dialog.set_kind("ping")
        await pilot.pause()
        await pilot.press("enter")
        await until_sent(pilot, source, 3)
        assert source.commands[-1] == InjectCommand("1", CLIENT, Opcode.PING, b"devconsole")


async def test_inject_radio_sets_by_keyboard_and_errors_shown() -> None:
    source, app = app_with(open_traffic().events, command_error="connection c1 is closed")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("i", "shift+tab")  # payload -> kind
        await pilot.press("right", "right", "enter")  # text -> binary -> ping
        dialog = app.screen
        assert isinstance(dialog, InjectDialog) and dialog.kind == "ping"
        await pilot.press("tab", *"hb", "enter")
        await until_sent(pilot, source)
        assert source.commands == [InjectCommand("1", CLIENT, Opcode.PING, b"hb")]
        assert ("Failed: #1 inject ping (2 B) to client", "connection c1 is closed", "error") in (
            messages(app)
        )


async def test_inject_into_half_open_is_refused_up_front() -> None:
    t = open_traffic()
    t.state("1", "half-open")
    source, app = app_with(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        await pilot.press("i")
        assert "Cannot inject: the connection is half-open: release it first" in screen_text(app)
        await pilot.press("ctrl+s", "escape")
        await pilot.pause()
        assert source.commands == []


# --------------------------------------------------------------------------- marks


async def test_killed_and_half_open_badges_and_stream_marks() -> None:
    _, app = app_with(fault_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert " killed " in shown and " half-open " in shown
        # the kill's close code (devconsole's close frame) and who closed
        assert "1012 Service Restart by proxy" in shown
        conns = app.main.connections
        styles = {}
        for row, cid in enumerate(conns.ids, start=1):
            text = conns.row_text(row, 140)
            state = app.session.connections[cid].state
            styles[state] = next(
                str(s.style) for s in text.spans if state in text.plain[s.start : s.end]
            )
        assert len({styles["killed"], styles["half-open"], styles["open"]}) == 3  # all differ
        assert "magenta" in styles["killed"] and "yellow" in styles["half-open"]
        stream = screen_text(app)
        assert "DROP" in stream
        app.main.connections.select("1")
        await settle(pilot)
        assert "INJ" in screen_text(app)


async def test_a_session_given_to_the_app_feeds_its_heartbeat_monitor() -> None:
    session = Session()
    session.apply_all(fault_traffic().events)
    app = make_app(live_source(), session=session, clock=frozen_clock, wall_clock=lambda: FAULT_NOW)
    rep = app.heartbeat.report("2", FAULT_NOW)
    assert rep.pinger == "server" and rep.server_pings.count == 4
    t = Traffic(ts=FAULT_NOW)
    t.seq = session.last_seq
    t.ping("5")
    session.apply_all(t.take())  # attached: sees what comes next too
    assert app.heartbeat.report("5", FAULT_NOW + 1).server_pings.count == 3


def test_describe_intercept_commands() -> None:
    from devconsole.model import (
        BreakpointCommand,
        DropCommand,
        EnableBreakpointCommand,
        ForwardCommand,
        RemoveBreakpointCommand,
    )
    from devconsole.tui.faults import describe

    assert describe(ForwardCommand(7)) == "forward held message 7"
    assert describe(ForwardCommand(7, "", b"abc", 1)) == "forward held message 7 edited (3 B)"
    assert describe(DropCommand(0)) == "drop all held everywhere"
    assert describe(DropCommand(0, "3")) == "drop all held"
    assert describe(BreakpointCommand("from:client", "3")) == "breakpoint 'from:client' on #3"
    assert describe(RemoveBreakpointCommand(2)) == "remove breakpoint 2"
    assert describe(EnableBreakpointCommand(2, False)) == "disable breakpoint 2"
