"""Intercept in the TUI (issue 9): the keys on a held message in the stream and in the
intercept view, the intercept view itself, forward/drop all, resend, and what the panes
show about held messages. The traffic is ``samples.intercept_traffic()`` (held messages 3,
4 and 5; 1 was forwarded edited, 2 dropped); the end-to-end tests at the bottom run the
real proxy with real ``websockets`` peers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from devconsole.model import (
    CLIENT,
    Breakpoint,
    BreakpointCommand,
    BreakpointsEvent,
    DropCommand,
    EnableBreakpointCommand,
    ForwardCommand,
    InjectCommand,
    InstanceEvent,
    Opcode,
    Outcome,
    OutcomeEvent,
    RemoveBreakpointCommand,
)
from devconsole.samples import INTERCEPT_NOW, intercept_traffic
from devconsole.tui import make_app
from devconsole.tui.breakpoints import BreakpointDialog
from devconsole.tui.editor import EditDialog
from devconsole.tui.help import HelpScreen
from devconsole.tui.intercept import InterceptScreen, ScopeDialog
from tests.tui_fixtures import (
    UTC,
    focus_stream,
    frozen_clock,
    live_source,
    notifications,
    screen_text,
    settle,
)

SIZE = (140, 40)
HELD_SEQS = {3: 8, 4: 10, 5: 11}  # held id -> seq in intercept_traffic()


def app_with(events=None, **kw):
    if events is None:
        events = intercept_traffic().events
    source = live_source(events, command_error=kw.pop("command_error", None))
    app = make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: INTERCEPT_NOW, **kw)
    notifications(app)
    return source, app


async def open_intercept(pilot) -> InterceptScreen:
    """Let the app settle, open the intercept view (I) and return it."""
    await settle(pilot)
    await pilot.press("I")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, InterceptScreen)
    return screen


async def until_sent(pilot, n: int = 1) -> None:
    """Until the app has the result of its n-th command."""
    for _ in range(100):
        if len(pilot.app.command_results) >= n:
            break
        await pilot.pause()
    await pilot.pause()


async def select(pilot, seq: int) -> None:
    app = pilot.app
    await focus_stream(pilot)
    assert app.main.stream.select_seq(seq)
    await settle(pilot)


def footer(app) -> str:
    return [line for line in screen_text(app).splitlines() if line.strip()][-1]


def stream_rows(app) -> dict[int, str]:
    """The stream's rows on screen, by seq."""
    out = {}
    for line in screen_text(app).splitlines():
        words = line.strip("│ ").split()
        if len(words) > 3 and words[0].isdigit() and ":" in words[1]:
            out[int(words[0])] = line
    return out


# --------------------------------------------------------------------------- the stream


async def test_f_forwards_the_selected_held_message_and_moves_to_the_next() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        assert "f Forward" in footer(app) and "d Drop" in footer(app)
        await pilot.press("f")
        await until_sent(pilot)
        assert source.commands == [ForwardCommand(3)]
        assert ("Sent", "#1 forward held message 3", "information") in notifications(app)
        # the next held message of the view is selected: f again forwards it
        assert app.main.stream.cursor_seq == 10
        await pilot.press("f")
        await until_sent(pilot, 2)
        assert source.commands[-1] == ForwardCommand(4)


async def test_d_drops_a_held_message_and_opens_the_detail_on_any_other() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 9)  # not held
        assert "d Detail" in footer(app) and "d Drop" not in footer(app)
        await pilot.press("d")
        await pilot.pause()
        assert app.main.detail_open and source.commands == []
        await pilot.press("escape")  # closes the detail, back in the stream
        await pilot.pause()
        assert not app.main.detail_open
        await select(pilot, 11)  # a held ping (a control frame)
        assert "d Drop" in footer(app)
        await pilot.press("d")
        await until_sent(pilot)
        assert source.commands == [DropCommand(5)]
        assert not app.main.detail_open


async def test_d_in_the_detail_pane_closes_it_even_on_a_held_message() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("enter")  # opens the detail, focus goes there
        await pilot.pause()
        assert app.main.detail_open
        shown = screen_text(app)
        assert "HELD" in shown and "by breakpoint 1" in shown
        await pilot.press("d")
        await pilot.pause()
        assert not app.main.detail_open and source.commands == []


async def test_f_on_a_message_that_is_not_held_says_what_to_do() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 3)  # held once, forwarded edited since
        assert "f Forward" in footer(app) and "d Drop" not in footer(app)
        await pilot.press("f")
        await pilot.pause()
        assert source.commands == []
        assert ("Forward", "#3 is no longer held: breakpoint 1: forwarded edited.", "warning") in (
            notifications(app)
        )
        await select(pilot, 2)
        await pilot.press("e")
        await pilot.pause()
        assert any("#2 is not held" in m for _, m, _ in notifications(app))
        await pilot.press("F")  # #1 is not selected in the list: asks
        await pilot.pause()
        assert isinstance(app.screen, ScopeDialog)
        await pilot.press("escape")
        await pilot.pause()
        assert source.commands == []


async def test_n_goes_from_held_message_to_held_message() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        seen = []
        for _ in range(4):
            await pilot.press("n")
            seen.append(app.main.stream.cursor_seq)
        assert seen == [8, 10, 11, 8]


async def test_forward_all_on_a_connection_at_once_and_everywhere_after_asking() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("2")
        await settle(pilot)
        await pilot.press("F")  # the stream shows #2: at once
        await until_sent(pilot)
        assert source.commands == [ForwardCommand(0, "2")]
        app.main.connections.select(None)
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("D")  # all connections: asks
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, ScopeDialog)
        shown = screen_text(app)
        assert "drop the 1 held on #1" in shown and "drop all 3 held, on 2 connections" in shown
        await pilot.press("a")
        await until_sent(pilot, 2)
        assert source.commands[-1] == DropCommand(0, "")
        assert ("Sent", "drop all held everywhere", "information") in notifications(app)
        await pilot.press("D", "c")  # that of the selected message
        await until_sent(pilot, 3)
        assert source.commands[-1] == DropCommand(0, "1")


async def test_held_counts_in_the_status_bar_and_on_the_connection_rows() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lines = [line for line in screen_text(app).splitlines() if line.strip()]
        assert "⏸ 3 HELD (I)" in lines[-2]  # the status bar
        rows = {line.split()[1]: line for line in lines if " open " in line}
        assert "⏸1" in rows["#1"] and "⏸2" in rows["#2"]
        assert "⏸ 3 held" in next(line for line in lines if "All connections" in line)


async def test_stream_rows_show_hold_and_outcome_and_change_when_it_arrives() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        rows = stream_rows(app)
        assert "EDIT" in rows[3] and "bp1" in rows[3] and '"room":"ops"' in rows[3]
        assert "DROP" in rows[5] and "HOLD" in rows[8] and "HOLD" in rows[11]
        # the row of seq 8 was rendered (and cached) as HOLD; its outcome re-renders it
        source.push([OutcomeEvent("1", INTERCEPT_NOW, 8, 3, Outcome.TIMEOUT_FORWARDED)])
        await settle(pilot)
        row8 = stream_rows(app)[8]
        assert "T/O" in row8 and "HOLD" not in row8
        assert "⏸ 2 HELD" in screen_text(app)


async def test_the_detail_shows_original_and_edited_side_by_side() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 3)
        await pilot.press("enter")
        await pilot.pause()
        detail = app.main.detail
        assert detail.view_name == "edited"
        shown = screen_text(app)
        assert "breakpoint 1: forwarded edited" in shown
        assert "original text 48 B" in shown and "sent text 45 B" in shown
        assert '"room": "lobby"' in shown and '"room": "ops"' in shown


async def test_an_outcome_updates_the_detail_of_the_message_shown() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("enter")
        await pilot.pause()
        assert "⏸ HELD" in screen_text(app)
        body = b'{"type":"msg","room":"ops","text":"on it!"}'
        source.push([OutcomeEvent("1", INTERCEPT_NOW, 8, 3, Outcome.EDITED, 1, body, len(body))])
        await settle(pilot)
        assert app.main.detail.view_name == "edited"
        shown = screen_text(app)
        assert "forwarded edited" in shown and '"on it!"' in shown


async def test_e_edits_and_forwards_the_edited_json() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditDialog) and editor.mode == "json"
        assert "held for 13s, forwards in 1m47s" in screen_text(app)
        editor.set_text('{"type": "msg", "room": "ops", "text": "edited"}')
        await pilot.pause()
        await pilot.press("ctrl+s")
        await until_sent(pilot)
        body = b'{"type":"msg","room":"ops","text":"edited"}'  # compact, as it came
        assert source.commands == [ForwardCommand(3, "", body, Opcode.TEXT)]


async def test_e_unchanged_forwards_the_very_bytes_and_esc_keeps_it_held() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("e", "escape")
        await pilot.pause()
        assert source.commands == [] and app.screen is app.main
        await pilot.press("e", "ctrl+s")
        await until_sent(pilot)
        assert source.commands == [ForwardCommand(3)]


async def test_e_on_a_held_control_frame_is_refused_with_a_reason() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 11)
        await pilot.press("e")
        await pilot.pause()
        assert app.screen is app.main and source.commands == []
        assert any("only data messages can be edited" in m for _, m, _ in notifications(app))


async def test_e_on_binary_edits_hex_and_keeps_the_type() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 10)
        await pilot.press("e")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditDialog) and editor.mode == "hex"
        assert "01 00 00 00 00 00 03 e8 42 54 43 2d 62 75 79" in editor.text
        editor.set_text("01 00 00 00 00 00 07 d0 42 54 43 2d 62 75 79")
        await pilot.pause()
        assert "binary frame, 15 bytes → the server" in screen_text(app)
        await pilot.press("ctrl+s")
        await until_sent(pilot)
        assert source.commands == [
            ForwardCommand(4, "", bytes.fromhex("01000000000007d0") + b"BTC-buy", Opcode.BINARY)
        ]


# --------------------------------------------------------------------------- the view


async def test_breakpoints_of_an_instance_gone_quiet_say_so() -> None:
    """A merged view over Redis: the breakpoints of an instance that is not heard from
    hold nothing now (what it held is lost), and the list says whose they are; back
    up, the mark goes."""
    bps = [Breakpoint(1, "x", instance="app-a"), Breakpoint(1, "y", instance="app-b")]
    ups = [InstanceEvent("app-a", INTERCEPT_NOW, "up"), InstanceEvent("app-b", INTERCEPT_NOW, "up")]
    source, app = app_with([*ups, BreakpointsEvent(bps)])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_intercept(pilot)

        async def shown_after(events: list) -> str:
            version = app.session.version
            source.push(events)
            assert app.session.version > version  # the view's 4 Hz refresh will see it
            screen.refresh_data()  # now, not when that timer next fires
            await pilot.pause()
            return screen_text(app)

        assert "gone" not in screen_text(app)
        gone = InstanceEvent("app-b", INTERCEPT_NOW, "gone", "no heartbeat for 4s")
        rows = [line for line in (await shown_after([gone])).splitlines() if " on " in line]
        assert ["app-b gone" in row for row in rows] == [False, True]
        up = InstanceEvent("app-b", INTERCEPT_NOW, "up", "heartbeat again")
        assert "app-b gone" not in await shown_after([up])


async def test_the_intercept_view_lists_breakpoints_and_held_oldest_first() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_intercept(pilot)
        assert [it.held for it in screen.held_list.items] == [3, 4, 5]
        shown = screen_text(app)
        assert "Breakpoints (3, 2 on)" in shown
        assert "from:client json:type=subscribe,msg,typing" in shown and "holding 1" in shown
        assert " off " in shown and "from:server json:type=error" in shown
        assert "⏸ 3 held  on 2 connections, oldest first" in shown
        lines = [line for line in shown.splitlines() if "#1 →" in line or "#2 →" in line]
        assert ["13s" in lines[0], "12s" in lines[1]] == [True, True]
        assert "forwards in 1m47s" in shown  # the selected one's timeout, below
        assert '"text": "on it"' in shown


async def test_held_times_tick_every_second() -> None:
    now = [INTERCEPT_NOW]
    events = intercept_traffic().events
    source = live_source(events, command_error=None)
    app = make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: now[0])
    async with app.run_test(size=SIZE) as pilot:
        await open_intercept(pilot)
        assert "    13s " in screen_text(app)
        now[0] += 2.0
        app.screen.refresh_data()
        await pilot.pause()
        assert "    15s " in screen_text(app) and "forwards in 1m45s" in screen_text(app)


async def test_a_message_held_by_a_rule_counts_down_to_its_timeout() -> None:
    """A rules file's ``hold = { timeout = "30s", on_timeout = "drop" }``: the held
    message has no breakpoint, but the view still says when the proxy will drop it."""
    from devconsole.samples import T0, Traffic

    t = Traffic()
    t.open("1", path="/orders")
    m = t.json("1", CLIENT, {"type": "buy"}, held=1, rule="catch buys", action="hold 30s then drop")
    _, app = app_with(events=t.events)
    async with app.run_test(size=SIZE) as pilot:
        await open_intercept(pilot)
        shown = screen_text(app)
        waited = INTERCEPT_NOW - m.ts
        assert T0 < m.ts < INTERCEPT_NOW and "rule catch buys (rules file)" in shown
        assert f"drops in {int(30 - waited)}s" in shown


async def test_keys_in_the_intercept_view() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await open_intercept(pilot)
        await pilot.press("down", "f")  # the second: held 4
        await until_sent(pilot)
        assert source.commands == [ForwardCommand(4)]
        await pilot.press("d")
        await until_sent(pilot, 2)
        assert source.commands[-1] == DropCommand(4)  # still held: the source changes nothing
        await pilot.press("F")
        await pilot.pause()
        assert isinstance(app.screen, ScopeDialog)
        await pilot.press("c")
        await until_sent(pilot, 3)
        assert source.commands[-1] == ForwardCommand(0, "2")
        assert isinstance(app.screen, InterceptScreen)
        # the breakpoints: tab, then space disables, x removes, b adds
        await pilot.press("tab", "down", "space")
        await until_sent(pilot, 4)
        assert source.commands[-1] == EnableBreakpointCommand(2, False)
        await pilot.press("x")
        await until_sent(pilot, 5)
        assert source.commands[-1] == RemoveBreakpointCommand(2)
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, BreakpointDialog)
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert app.screen is app.main


async def test_enter_in_the_view_shows_the_held_message_in_the_stream() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("I", "end", "enter")
        await pilot.pause()
        assert app.screen is app.main
        assert app.main.stream.cursor_seq == 11 and app.focused is app.main.stream


async def test_decided_messages_leave_the_view_and_the_next_one_is_selected() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("I", "down")
        screen = app.screen
        assert screen.held_list.selected.held == 4
        source.push([OutcomeEvent("2", INTERCEPT_NOW, 10, 4, Outcome.FORWARDED)])
        await settle(pilot)
        screen.refresh_data()
        await pilot.pause()
        assert [it.held for it in screen.held_list.items] == [3, 5]
        assert screen.held_list.selected.held == 5
        source.push(
            [
                OutcomeEvent("1", INTERCEPT_NOW, 8, 3, Outcome.DROPPED),
                OutcomeEvent("2", INTERCEPT_NOW, 11, 5, Outcome.TIMEOUT_DROPPED),
            ]
        )
        await settle(pilot)
        screen.refresh_data()
        await pilot.pause()
        assert screen.held_list.items == [] and "Nothing is held." in screen_text(app)


async def test_b_adds_a_breakpoint_from_the_filter_on_the_selected_connection() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.main.connections.select("1")
        await settle(pilot)
        assert app.main.apply_filter("from:client json:type=msg")
        await settle(pilot)
        await pilot.press("b")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, BreakpointDialog)
        shown = screen_text(app)
        assert "from:client json:type=msg" in shown and "● #1 /chat" in shown
        await pilot.press("ctrl+o", "ctrl+l", "enter")
        await until_sent(pilot)
        assert source.commands == [
            BreakpointCommand("from:client json:type=msg", "1", 120.0, "drop", True)
        ]


async def test_help_and_palette_list_the_intercept_keys() -> None:
    _, app = app_with()
    async with app.run_test(size=(160, 120)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = screen_text(app)
        for words in (
            "Forward the selected held message",
            "Edit the selected held message",
            "Drop the selected held message",
            "The intercept view",
            "New breakpoint from the current filter",
            "Send the selected message again",
            "Forward every held message",
        ):
            assert words in shown, words
        await pilot.press("escape")
        from devconsole.tui.app import DevconsoleCommands

        provider = DevconsoleCommands(app.screen)
        titles = [title for title, _, _ in provider._commands()]
        for title in ("Intercept", "Breakpoint", "Resend", "Forward all", "Drop all"):
            assert title in titles


async def test_keymap_rebinds_intercept_keys() -> None:
    source, app = app_with(keymap={"forward": "ctrl+f"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 8)
        await pilot.press("ctrl+f")
        await until_sent(pilot)
        assert source.commands == [ForwardCommand(3)]


# --------------------------------------------------------------------------- resend


async def test_R_resends_on_the_live_connection_edited_first() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 6)  # bob's message from the server
        await pilot.press("R")
        await pilot.pause()
        editor = app.screen
        assert isinstance(editor, EditDialog) and editor.resend
        shown = screen_text(app)
        assert "● the live connection #1" in shown
        assert "a server message goes back on its live connection only" in shown
        await pilot.press("ctrl+s")
        await until_sent(pilot)
        payload = b'{"type":"msg","from":"bob","text":"anyone on call?"}'
        assert source.commands == [InjectCommand("1", CLIENT, Opcode.TEXT, payload)]


async def test_R_on_a_control_frame_says_why_not() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, 11)
        await pilot.press("R")
        await pilot.pause()
        assert app.screen is app.main
        assert any("only data messages are resent" in m for _, m, _ in notifications(app))


# --------------------------------------------------------------------------- snapshots


def _view_app():
    _, app = app_with()
    return app


def test_snapshot_intercept_view_80x24(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await open_intercept(pilot)

    assert snap_compare(_view_app(), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_intercept_view_200x50(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press("I", "down")
        await pilot.pause()

    assert snap_compare(_view_app(), terminal_size=(200, 50), run_before=run_before)


def test_snapshot_stream_with_held_messages_80x24(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await settle(pilot)
        await select(pilot, 8)

    assert snap_compare(_view_app(), terminal_size=(80, 24), run_before=run_before)


# --------------------------------------------------------------------------- end to end


class Received:
    """A websockets server handler that records what it receives."""

    def __init__(self) -> None:
        self.got: list[str | bytes] = []

    async def __call__(self, ws) -> None:
        with contextlib.suppress(Exception):
            async for msg in ws:
                self.got.append(msg)
                await ws.send(f"ack {len(self.got)}")


async def _held_in_app(app, n: int = 1, timeout: float = 10.0) -> None:
    from tests.conftest import wait_until

    await wait_until(lambda: len(app.session.held) >= n, timeout)


async def _decide_through_the_tui(short_tmp: Path, keys, check) -> None:
    """A breakpoint made with b, a real client sending through the real proxy, the held
    message selected in the stream, ``keys`` pressed, then ``check(received, app)``."""
    from websockets.asyncio.client import connect

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until, ws_server

    rec = Received()
    async with (
        ws_server(rec) as (_, port),
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp,
    ):
        app = make_app(TapClient(rp.tap), tz=UTC)
        notifications(app)
        async with app.run_test(size=SIZE) as pilot:
            async with connect(f"ws://127.0.0.1:{rp.port}/chat", ping_interval=None) as ws:
                await ws.send("hello")
                assert await ws.recv() == "ack 1"
                await wait_until(lambda: app.session.total_messages >= 2)
                await settle(pilot)
                assert app.main.apply_filter('from:client "order"')
                await settle(pilot)
                await pilot.press("b", "enter")
                await wait_until(lambda: len(app.session.breakpoints) == 1)
                await ws.send('{"order": 1, "qty": 5}')
                await ws.send("after")
                await _held_in_app(app)
                await asyncio.sleep(0.3)
                assert rec.got == ["hello"]  # held, and "after" waits behind it
                await settle(pilot)
                [held] = app.session.held.values()
                await select(pilot, held.seq)
                await pilot.press(*keys)
                await check(rec, app, pilot, ws)
            await pilot.press("q")


async def test_end_to_end_a_held_message_arrives_only_after_f(short_tmp: Path) -> None:
    from tests.conftest import wait_until

    async def check(rec, app, pilot, ws) -> None:
        await wait_until(lambda: len(rec.got) == 3)
        assert rec.got == ["hello", '{"order": 1, "qty": 5}', "after"]
        await wait_until(lambda: not app.session.held)
        await settle(pilot)
        assert "FWD" in screen_text(app)

    await _decide_through_the_tui(short_tmp, ["f"], check)


async def test_end_to_end_an_edited_message_arrives_edited(short_tmp: Path) -> None:
    from tests.conftest import wait_until

    async def check(rec, app, pilot, ws) -> None:
        editor = app.screen
        assert isinstance(editor, EditDialog) and editor.mode == "json"
        editor.set_text('{"order": 1, "qty": 500}')
        await pilot.pause()
        assert '{"order": 1, "qty": 500}' in screen_text(app)  # as it came: with spaces
        await pilot.press("ctrl+s")
        await wait_until(lambda: len(rec.got) == 3)
        assert rec.got == ["hello", '{"order": 1, "qty": 500}', "after"]
        await wait_until(lambda: not app.session.held)
        await settle(pilot)
        seq = next(m.seq for m in app.session.buffer if m.payload == b'{"order": 1, "qty": 5}')
        assert app.session.get(seq).outcome == "edited"
        assert "EDIT" in screen_text(app)

    await _decide_through_the_tui(short_tmp, ["e"], check)


async def test_end_to_end_a_dropped_message_never_arrives(short_tmp: Path) -> None:
    from tests.conftest import wait_until

    async def check(rec, app, pilot, ws) -> None:
        await wait_until(lambda: len(rec.got) == 2)
        await asyncio.sleep(0.3)
        assert rec.got == ["hello", "after"]
        await wait_until(lambda: not app.session.held)
        await settle(pilot)
        assert "DROP" in screen_text(app)

    await _decide_through_the_tui(short_tmp, ["d"], check)


async def test_end_to_end_resend_live_and_on_a_new_connection(short_tmp: Path) -> None:
    """A reverse proxy: R on the live connection (the server answers the client), then
    on a new connection sent directly to the URL (the proxy does not take proxied
    connections in reverse mode)."""
    from websockets.asyncio.client import connect

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until, ws_server

    rec = Received()
    async with (
        ws_server(rec) as (_, port),
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp,
    ):
        app = make_app(TapClient(rp.tap), tz=UTC)
        shown = notifications(app)
        async with app.run_test(size=SIZE) as pilot:
            async with connect(f"ws://127.0.0.1:{rp.port}/chat", ping_interval=None) as ws:
                await ws.send("ping me")
                assert await ws.recv() == "ack 1"
                await wait_until(lambda: app.session.total_messages >= 2)
                await settle(pilot)
                sent = next(m for m in app.session.buffer if m.side == CLIENT)
                await select(pilot, sent.seq)
                await pilot.press("R")
                await pilot.pause()
                editor = app.screen
                assert isinstance(editor, EditDialog) and editor.target == "live"
                editor.set_text("ping me again")
                await pilot.pause()
                await pilot.press("ctrl+s")
                await wait_until(lambda: rec.got == ["ping me", "ping me again"])
                assert await ws.recv() == "ack 2"  # the server's answer reaches the client
                await pilot.press("R")
                await pilot.pause()
                editor = app.screen
                while not (editor.target == "new" and not editor.via_proxy):
                    await pilot.press("ctrl+t")
                assert f"● a new connection to ws://127.0.0.1:{port}/chat" in screen_text(app)
                await pilot.press("ctrl+s")
                await wait_until(lambda: len(rec.got) == 3)
                assert rec.got[-1] == "ping me"
                await wait_until(lambda: any(t == "Resent" for t, _, _ in shown))
                [text] = [m for t, m, _ in shown if t == "Resent"]
                assert "on a new connection" in text and "1 answer: ack 3" in text
            await pilot.press("q")


async def test_end_to_end_resend_on_a_new_connection_through_the_proxy(short_tmp: Path) -> None:
    """A regular (HTTP) proxy, as `devconsole demo` runs: the new connection goes through
    it, so it shows up in the list with its message and the server's answer."""
    from websockets.asyncio.client import connect

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until, ws_server

    rec = Received()
    async with ws_server(rec) as (_, port), running_proxy("regular", short_tmp) as rp:
        app = make_app(TapClient(rp.tap), tz=UTC)
        shown = notifications(app)
        async with app.run_test(size=SIZE) as pilot:
            proxy = f"http://127.0.0.1:{rp.port}"
            async with connect(f"ws://127.0.0.1:{port}/chat", proxy=proxy) as ws:
                await ws.send("hi")
                assert await ws.recv() == "ack 1"
                await wait_until(lambda: app.session.total_messages >= 2)
                await settle(pilot)
                sent = next(m for m in app.session.buffer if m.side == CLIENT)
                await select(pilot, sent.seq)
                await pilot.press("R")
                await pilot.pause()
                assert "● the live connection #1" in screen_text(app)
                await pilot.press("ctrl+t")
                await pilot.pause()
                assert f"● a new connection through the proxy 127.0.0.1:{rp.port}" in (
                    screen_text(app)
                )
                await pilot.press("ctrl+s")
                await wait_until(lambda: len(rec.got) == 2)
                await wait_until(lambda: len(app.session.connections) == 2)
                await wait_until(lambda: any(t == "Resent" for t, _, _ in shown))
                await settle(pilot)
                new = app.session.connections["2"]
                assert new.path == "/chat" and new.msgs_out == 1 and new.msgs_in == 1
            await pilot.press("q")


async def test_resend_asks_for_headers_a_capture_redacted(short_tmp: Path) -> None:
    """A connection opened from a capture whose cookie was redacted: R on a new
    connection asks for it again, and the server gets the value typed."""
    from devconsole.samples import Traffic
    from tests.conftest import wait_until, ws_server

    headers: list[str | None] = []
    rec = Received()

    async def handler(ws) -> None:
        headers.append(ws.request.headers.get("Cookie"))
        await rec(ws)

    async with ws_server(handler) as (_, port):
        t = Traffic()
        t.open(
            "1",
            path="/chat",
            host=f"127.0.0.1:{port}",
            scheme="ws",
            url=f"ws://127.0.0.1:{port}/chat",
            cookies=(("session", "[REDACTED]"),),
        )
        t.text("1", CLIENT, "hello again")
        t.end("1")
        source = live_source(t.take(), description="file capture.dcap")
        app = make_app(source, clock=frozen_clock, tz=UTC)
        shown = notifications(app)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await select(pilot, 1)
            await pilot.press("R")
            await pilot.pause()
            editor = app.screen
            assert isinstance(editor, EditDialog)
            text = screen_text(app)
            assert "● a new connection to ws://127.0.0.1" in text
            assert "(the connection has ended)" in text and "Cookie" in text
            editor.query_one("#editor-header-0").value = "session=alice"
            await pilot.press("ctrl+s")
            await wait_until(lambda: rec.got == ["hello again"])
            assert headers == ["session=alice"]
            await wait_until(lambda: any(t == "Resent" for t, _, _ in shown))


async def test_B_opens_the_view_on_the_breakpoints_and_help_and_palette_work_there() -> None:
    source, app = app_with()
    async with app.run_test(size=(140, 60)) as pilot:
        await settle(pilot)
        await pilot.press("B")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, InterceptScreen) and app.focused is screen.bp_list
        await pilot.press("enter")  # on a breakpoint, Enter switches it too
        await until_sent(pilot)
        assert source.commands == [EnableBreakpointCommand(1, False)]
        from devconsole.tui.app import DevconsoleCommands

        titles = [title for title, _, _ in DevconsoleCommands(screen)._commands()]
        for title in ("Forward", "Edit", "Drop", "On/off", "Remove", "New breakpoint"):
            assert title in titles, title
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert "intercept view" in screen_text(app)
        await pilot.press("escape", "q")
        await pilot.pause()
        assert app.screen is app.main


async def test_intercept_on_a_redis_source_reaches_the_right_instance(
    short_tmp: Path, redis_server
) -> None:
    """Two proxies publishing to a real Redis (--accept-commands), each before its own
    server; the TUI on the Redis stream. A breakpoint made with b holds a message on each
    instance, both with held id 1: f on instance B's forwards B's only, e on A's sends
    A's edited, d in the intercept view drops B's next one; no command fails."""
    from websockets.asyncio.client import connect

    from devconsole.scale.source import RedisSource
    from tests.conftest import wait_until, ws_server
    from tests.scale_helpers import proxy_process

    rec_a, rec_b = Received(), Received()
    url = redis_server.url
    async with ws_server(rec_a) as (_, up_a), ws_server(rec_b) as (_, up_b):
        with (
            proxy_process(
                short_tmp / "a", "--mode", f"reverse:http://127.0.0.1:{up_a}",
                "--publish", url, "--name", "app-a", "--accept-commands",
            ) as pa,
            proxy_process(
                short_tmp / "b", "--mode", f"reverse:http://127.0.0.1:{up_b}",
                "--publish", url, "--name", "app-b", "--accept-commands",
            ) as pb,
        ):  # fmt: skip
            app = make_app(RedisSource(url), tz=UTC)
            shown = notifications(app)
            async with (
                app.run_test(size=SIZE) as pilot,
                connect(f"ws://127.0.0.1:{pa.port}/a", ping_interval=None) as wa,
                connect(f"ws://127.0.0.1:{pb.port}/b", ping_interval=None) as wb,
            ):
                await wa.send("hello a")
                await wb.send("hello b")
                assert (await wa.recv(), await wb.recv()) == ("ack 1", "ack 1")
                await wait_until(lambda: app.session.total_messages >= 4, 15)
                await settle(pilot)
                assert app.main.apply_filter('from:client "order"')
                await settle(pilot)
                await pilot.press("b", "enter")  # on every instance
                await wait_until(lambda: len(app.session.breakpoints) == 2, 15)
                assert [b.ref for b in app.session.breakpoints] == ["app-a/1", "app-b/1"]
                await wa.send('{"order": "a"}')
                await wb.send('{"order": "b"}')
                await _held_in_app(app, 2, 15)
                assert sorted(app.session.held) == ["app-a/1", "app-b/1"]
                await settle(pilot)
                await select(pilot, app.session.held["app-b/1"].seq)
                await pilot.press("f")
                await wait_until(lambda: len(rec_b.got) == 2, 15)
                assert rec_b.got == ["hello b", '{"order": "b"}']
                assert await wb.recv() == "ack 2"
                await wait_until(lambda: list(app.session.held) == ["app-a/1"], 15)
                assert rec_a.got == ["hello a"]  # still held on app-a
                await settle(pilot)
                await select(pilot, app.session.held["app-a/1"].seq)
                await pilot.press("e")
                editor = app.screen
                assert isinstance(editor, EditDialog)
                editor.set_text('{"order": "A"}')
                await pilot.pause()
                await pilot.press("ctrl+s")
                await wait_until(lambda: len(rec_a.got) == 2, 15)
                assert rec_a.got == ["hello a", '{"order": "A"}']
                assert await wa.recv() == "ack 2"
                await wait_until(lambda: not app.session.held, 15)
                # the next one on app-b is app-b/2: dropped from the intercept view
                await wb.send('{"order": "b2"}')
                await _held_in_app(app, 1, 15)
                assert list(app.session.held) == ["app-b/2"]
                await open_intercept(pilot)
                assert "app-b/2" in screen_text(app)
                await pilot.press("d")
                await wait_until(lambda: not app.session.held, 15)
                await wb.send("plain")
                assert await wb.recv() == "ack 3"
                assert rec_b.got == ["hello b", '{"order": "b"}', "plain"]
                failed = [s for s in shown if s[2] == "error"]
                assert not failed, failed
                await pilot.press("escape")
                await pilot.press("q")
