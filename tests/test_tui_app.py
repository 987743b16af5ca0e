from __future__ import annotations

import asyncio
import inspect
import re
import threading

from devconsole.model import SERVER
from devconsole.session import Session
from devconsole.source import MemorySource, SourceError
from devconsole.tui import DevconsoleApp, make_app
from devconsole.tui.app import DevconsoleCommands
from tests.tui_fixtures import (
    UTC,
    Traffic,
    frozen_clock,
    live_source,
    notifications,
    screen_text,
    settle,
)

SIZE = (140, 40)


def test_make_app_signature() -> None:
    params = inspect.signature(make_app).parameters
    assert next(iter(params)) == "source"
    for name in ("proxy_process", "on_exit", "session", "max_items", "max_bytes", "clock", "tz"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    app = make_app(live_source(), max_items=123, max_bytes=4567)
    assert isinstance(app, DevconsoleApp)
    assert app.session.buffer.max_items == 123
    assert app.session.buffer.max_bytes == 4567
    session = Session()
    assert make_app(live_source(), session=session).session is session


async def test_q_closes_the_source_and_calls_on_exit() -> None:
    source = live_source()
    calls: list[str] = []
    app = make_app(source, on_exit=lambda: calls.append("exit"), clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert source.closed
    assert calls == ["exit"]


async def test_async_on_exit_is_awaited_once() -> None:
    source = live_source()
    calls: list[str] = []

    async def on_exit() -> None:
        await asyncio.sleep(0)
        calls.append("exit")

    app = make_app(source, on_exit=on_exit, clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.exit()  # not via q: the unmount path closes too
    assert source.closed
    assert calls == ["exit"]


async def test_events_are_applied_on_arrival_and_drawn_on_the_tick() -> None:
    t = Traffic()
    t.open("1")
    source = live_source(t.take())
    app = make_app(source, clock=frozen_clock, tz=UTC, refresh_hz=5)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        source.push([t.text("1", SERVER, "first")])
        assert app.session.last_seq == 1  # applied at once...
        assert app.main.stream.row_count == 0  # ...drawn on the next tick
        await pilot.pause(0.3)
        assert app.main.stream.row_count == 1


async def test_events_from_another_thread() -> None:
    t = Traffic()
    t.open("1")
    source = live_source(t.take())
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        batch = [t.text("1", SERVER, "from a thread")]
        thread = threading.Thread(target=source.push, args=(batch,))
        thread.start()
        while thread.is_alive():
            await pilot.pause(0.01)
        await settle(pilot)
        assert app.session.last_seq == 1
        assert "from a thread" in screen_text(app)


class FragileSession(Session):
    def apply(self, ev) -> None:
        if getattr(ev, "payload", None) == b"boom":
            raise RuntimeError("boom")
        super().apply(ev)


async def test_a_bad_event_is_ignored_and_reported() -> None:
    t = Traffic()
    t.open("1")
    source = live_source(t.take())
    app = make_app(source, session=FragileSession(), clock=frozen_clock, tz=UTC)
    shown = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        source.push(
            [t.text("1", SERVER, "one"), t.text("1", SERVER, "boom"), t.text("1", SERVER, "two")]
        )
        await settle(pilot)
        assert app.apply_errors == 1
        assert app.session.last_seq == 3  # the rest of the batch was applied
        assert len(app.session.buffer) == 2
        assert any(title == "Event ignored" for title, _, _ in shown)


class FailingSource(MemorySource):
    async def run(self, on_events) -> None:
        raise SourceError("tap not running at /tmp/x.sock")


class EndingSource(MemorySource):
    async def run(self, on_events) -> None:
        on_events(self.events)


async def test_source_error_and_end_are_shown() -> None:
    app = make_app(FailingSource(), clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.source_state == "source error: tap not running at /tmp/x.sock"
        assert "source error: tap not running" in screen_text(app)
    t = Traffic()
    t.open("1")
    app = make_app(EndingSource(t.take()), clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.source_state == "source ended"
        assert "1" in app.session.connections


class FakeProcess:
    def __init__(self) -> None:
        self.code: int | None = None

    def poll(self) -> int | None:
        return self.code


async def test_proxy_exit_is_shown() -> None:
    proc = FakeProcess()
    app = make_app(live_source(), proxy_process=proc, clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.source_state == "live"
        proc.code = 3
        await settle(pilot)
        assert "proxy exited (3)" in screen_text(app)


async def test_command_palette_lists_every_action() -> None:
    source = live_source()
    app = make_app(source, clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        provider = DevconsoleCommands(app.screen)
        titles = [hit.text async for hit in provider.discover()]
        for title in ("Filter", "Pause", "Handshake", "Fault", "Inject", "Report", "Quit", "Help"):
            assert title in titles
        hits = sorted([hit async for hit in provider.search("pause")], key=lambda h: -h.score)
        assert hits and hits[0].text == "Pause"
        hits = sorted([hit async for hit in provider.search("tail")], key=lambda h: -h.score)
        # the tooltip ("tail -f") finds Follow, after Detail whose name has "tail" in it
        assert [h.text for h in hits[:2]] == ["Detail", "Follow"]
        assert titles.count("Help") == 1 and titles.count("Quit") == 1
        # through the real palette
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"pause")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.main.paused


async def test_keymap_rebinds_by_binding_id() -> None:
    app = make_app(live_source(), clock=frozen_clock, keymap={"pause": "p"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("p")
        assert app.main.paused
        await pilot.press("space")
        assert app.main.paused  # space is no longer bound to pause


async def test_after_a_late_attach_the_screen_shows_the_ids_users_type() -> None:
    """A viewer that attaches late sees the proxy's ids (#7, #9), and ``conn:9`` (like
    ``devconsole kill 9``) selects the connection shown as #9."""
    t = Traffic()
    t.open("7", path="/seven")
    t.open("9", path="/nine")
    t.text("7", SERVER, "from seven")
    t.text("9", SERVER, "from nine")
    source = live_source(t.take())
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"#7 +open +api\.example\.com/seven", shown)
        assert re.search(r"#9 +open +api\.example\.com/nine", shown)
        assert "#1 " not in shown and "#2 " not in shown
        assert app.main.apply_filter("conn:9")
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"#9 ← TXT .*from nine", shown)
        assert "from seven" not in shown


async def test_end_to_end_through_a_real_proxy_and_tap(short_tmp) -> None:
    """The app over a live TapClient: a real mitmproxy with the capture addon, a real
    websockets server and client on loopback."""
    import websockets

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until, ws_server

    async with (
        ws_server() as (_, port),
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp,
    ):
        source = TapClient(rp.tap)
        app = make_app(source, tz=UTC)
        async with app.run_test(size=SIZE) as pilot:
            async with websockets.connect(f"ws://127.0.0.1:{rp.port}/echo") as ws:
                await ws.send("[b]hi[/b]\x1b[31m")
                await ws.recv()
                await wait_until(lambda: app.session.total_messages >= 2)
            await settle(pilot)
            shown = screen_text(app)
            assert "127.0.0.1/echo" in shown
            assert "[b]hi[/b]\\x1b[31m" in shown
            assert "\x1b" not in shown
            await pilot.press("q")


async def wait_asleep(app: DevconsoleApp, pilot, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if app.asleep:
            return
        await pilot.pause(0.05)
    raise AssertionError("the redraw timer did not go to sleep")


async def test_the_redraw_timer_sleeps_when_idle_and_a_message_wakes_it() -> None:
    t = Traffic()
    t.open("1")
    source = live_source(t.take())
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await wait_asleep(app, pilot)
        redraws = app.main.redraws
        await pilot.pause(0.3)
        assert app.asleep and app.main.redraws == redraws  # nothing redrawn while asleep
        source.push([t.text("1", SERVER, "while idle")])
        assert not app.asleep  # woken by the batch itself, not by a poll
        await pilot.pause(0.12)  # the tick that runs at once, and the screen update
        assert app.main.stream.row_count == 1
        assert "while idle" in screen_text(app)
        await wait_asleep(app, pilot)  # and back to sleep once it is quiet again


async def test_a_key_wakes_the_redraw_timer() -> None:
    t = Traffic()
    t.open("1")
    app = make_app(live_source(t.take()), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await wait_asleep(app, pilot)
        wakes = app.wakes
        await pilot.press("space")  # pause: PAUSED shows at the next tick
        assert app.wakes == wakes + 1
        await pilot.pause(0.12)
        assert "PAUSED" in screen_text(app)


async def test_rates_fall_to_zero_before_the_timer_sleeps() -> None:
    """After traffic stops the rates show 0 (within two samples); the timer sleeps only
    then, and stays awake while a rate is not 0."""
    now = [100.0]
    t = Traffic()
    t.open("1")
    source = live_source(t.take())
    app = make_app(source, clock=lambda: now[0], tz=UTC, refresh_hz=1000)  # ticks by hand
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        source.push([t.text("1", SERVER, f"m{i}") for i in range(10)])
        now[0] += 1.0
        app.tick()
        assert app.state.rates.get("1") == 10.0
        await settle(pilot)
        assert re.search(r"All connections.* 10/s", screen_text(app))
        for _ in range(3 * 1000):  # 3 s of ticks without moving the clock: rate stays
            app.tick()
        assert not app.asleep
        now[0] += 1.0
        app.tick()  # the next sample: no new messages
        assert app.state.rates.get("1") == 0.0
        await settle(pilot)
        assert re.search(r"All connections.* 0/s", screen_text(app))
        for _ in range(2 * 1000):
            app.tick()
        assert app.asleep


async def test_proxy_exit_is_shown_while_the_timer_sleeps() -> None:
    proc = FakeProcess()
    app = make_app(live_source(), proxy_process=proc, clock=frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await wait_asleep(app, pilot)
        proc.code = 3
        for _ in range(60):  # the idle check runs once a second
            await pilot.pause(0.05)
            if "proxy exited (3)" in screen_text(app):
                break
        assert "proxy exited (3)" in screen_text(app)
