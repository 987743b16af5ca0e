"""The devconsole TUI application and its ``make_app()`` factory (shared by the CLI and
the tests).

The app reads Events from a ``Source`` in a worker and applies each batch to its own
``Session`` on the app's event loop, then redraws on a timer (~20 Hz) when the Session's
``version`` moved: never once per message.

The app owns the screens: it builds them with the ``ViewState`` they share and runs the
Commands they request (``CommandRequested``). No screen imports this module.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import gc
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, ClassVar

from textual import events as tevents
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.driver import Driver
from textual.screen import ModalScreen, Screen
from textual.timer import Timer

from devconsole.analysis.heartbeat import HeartbeatMonitor
from devconsole.decoders.protocols import DecoderRule
from devconsole.model import Command, CommandResult, Event
from devconsole.session import Session
from devconsole.source import Source, SourceError
from devconsole.tui.breakpoints import BreakpointDialog
from devconsole.tui.connections import ALL, ConnectionList
from devconsole.tui.detail import DetailTree
from devconsole.tui.driver import driver_class
from devconsole.tui.editor import EditDialog
from devconsole.tui.fanout import FanoutScreen
from devconsole.tui.faults import FaultMenu, InjectDialog, describe
from devconsole.tui.filterbar import FilterBar
from devconsole.tui.handshake import HandshakeScreen
from devconsole.tui.help import HelpScreen
from devconsole.tui.intercept import InterceptScreen, ScopeDialog
from devconsole.tui.main import MainScreen
from devconsole.tui.protocol import ProtocolMenu
from devconsole.tui.report import ReportScreen
from devconsole.tui.scrollback import open_index, recording_of
from devconsole.tui.state import CommandRequested, FramesRequested, ViewState
from devconsole.tui.stream import StreamView

REFRESH_HZ = 20.0
# The redraw timer sleeps after this many seconds of quiet ticks (nothing new to draw, every
# rate 0, nothing held, no scan, no report or fan-out screen); new events and input wake
# it at once. While it sleeps a tick runs every IDLE_CHECK seconds for what changes
# without an event (the proxy's exit, a Redis source's connection, the recording).
IDLE_AFTER = 1.5
IDLE_CHECK = 1.0
# The share of a core the viewer aims to stay under while traffic streams in: above it a
# busy screen is redrawn less often (MainScreen.adapt_pacing; bench/tui_steady.py).
CPU_BUDGET = 0.03  # issue 19 asks <= 5 % at 40 msgs/s: aim under it with room
# the state a Redis source is in while it cannot reach Redis (it retries with backoff)
REDIS_LOST = "redis unreachable: retrying"


class DevconsoleCommands(Provider):
    """Every devconsole action in the command palette, with its key and tooltip."""

    def _commands(self) -> Iterable[tuple[str, str, Callable[[], Awaitable[Any]]]]:
        app = self.app
        assert isinstance(app, DevconsoleApp)
        screen = self.screen
        groups: list[tuple[Any, Iterable[BindingType]]] = [(app, DevconsoleApp.BINDINGS)]
        if isinstance(screen, MainScreen):
            groups.insert(0, (screen, MainScreen.BINDINGS))
        elif isinstance(screen, InterceptScreen):
            groups.insert(0, (screen, InterceptScreen.BINDINGS))
        seen: set[str] = set()
        for node, bindings in groups:
            for b in bindings:
                if (
                    not isinstance(b, Binding)
                    or not b.description
                    or b.system  # the screen's copies of the app's help and quit
                    or b.action in seen
                ):
                    continue
                seen.add(b.action)
                key = app.get_key_display(b)
                # the palette parses help as markup: no brackets here
                help_text = f"{b.tooltip} · key {key}" if b.tooltip else f"key {key}"
                yield b.description, help_text, partial(app.run_action, b.action, node)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            # the title counts most; the tooltip finds "tail" for Follow, "decode" for View
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)


def tune_gc() -> None:
    """Tune CPython's garbage collector for a long-running viewer of a flood.

    The Session keeps up to 100,000 long-lived items that churn. With the default
    thresholds a full collection (which traverses all of them) ran about twice a second at
    50,000 messages/s and froze the screen for up to 330 ms; with this, none ran in 20 s
    and the keypress p95 stayed under 100 ms up to 30,000 messages/s (bench/tui.py).
    Startup objects (Textual, widgets) are frozen out of collections altogether.
    Process-wide, so the CLI calls it, not the app (tests share one process)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1000)


class DevconsoleApp(App[None]):
    """WebSocket traffic inspector. Build it with ``make_app()``."""

    CSS_PATH = ["app.tcss", "intercept.tcss"]  # intercept.tcss: tui/intercept.py and its dialogs
    TITLE = "devconsole"
    COMMANDS = App.COMMANDS | {DevconsoleCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "q",
            "quit",
            "Quit",
            id="quit",
            tooltip="Quit devconsole (a proxy started by devconsole stops with it); in a "
            "dialog, close the dialog",
        ),
        Binding("question_mark", "help", "Help", id="help", tooltip="Keys and filter syntax"),
    ]

    def __init__(
        self,
        source: Source,
        state: ViewState,
        *,
        proxy_process: Any = None,
        on_exit: Callable[[], object] | None = None,
        refresh_hz: float = REFRESH_HZ,
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.state = state
        self.proxy_process = proxy_process
        self.on_exit_callback = on_exit
        self.refresh_hz = refresh_hz
        self.apply_errors = 0
        self.redraw_errors = 0
        self._source_closed = False
        self._loop_thread: int | None = None
        self._recording_checked = -1e9  # when the source was last asked for a recording
        self._source_connected = False  # a Redis source connected once
        self.command_results: list[tuple[Command, CommandResult]] = []
        self.cpu_budget: float | None = CPU_BUDGET  # None: fixed redraw pacing (tests)
        self._cpu_sample = (time.monotonic(), time.process_time())
        self._redraw_timer: Timer | None = None
        self.asleep = False  # the redraw timer sleeps: nothing changes on screen (wake())
        self._quiet_ticks = 0  # ticks in a row that found nothing to draw
        self._idle_key: tuple[int, str] = (-1, "")
        self.wakes = 0  # times the redraw timer was woken (tests)
        if keymap:
            self.set_keymap(dict(keymap))

    # ------------------------------------------------------------------ lifecycle

    @property
    def session(self) -> Session:
        return self.state.session

    @property
    def heartbeat(self) -> HeartbeatMonitor:
        return self.state.heartbeat

    @property
    def source_state(self) -> str:
        return self.state.source_state

    def get_driver_class(self) -> type[Driver]:
        return driver_class(super().get_driver_class())

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(self.state)

    @property
    def main(self) -> MainScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    def on_mount(self) -> None:
        self._loop_thread = threading.get_ident()
        self._run_source()
        self._redraw_timer = self.set_interval(1 / self.refresh_hz, self.tick, name="redraw")
        self.set_interval(IDLE_CHECK, self._idle_check, name="idle-check")

    # ------------------------------------------------------------------ idle

    def wake(self) -> None:
        """Run the redraw timer again (its next tick runs at once): events arrived, a key
        was pressed. Cheap when it is awake."""
        self._quiet_ticks = 0
        if not self.asleep:
            return
        self.asleep = False
        self.wakes += 1
        # the rates restart from the counters they last saw, which nothing moved since
        self.state.rates.restart()
        if self._redraw_timer is not None:
            self._redraw_timer.resume()

    def _sleep(self) -> None:
        if self.asleep or self._redraw_timer is None:
            return
        self.asleep = True
        self._redraw_timer.pause()

    def _idle_check(self) -> None:
        """While the redraw timer sleeps: what changes without an event or a key (the
        proxy's exit, a Redis source's connection, the recording) and a change applied
        to the Session by other means; any of them wakes the timer. Not a tick: nothing
        is drawn or sampled (every rate is 0 and no counter moved)."""
        if not self.asleep:
            return
        state = self.state
        before = (state.source_state, state.recording)
        self._check_proxy()
        self._check_source()
        if (state.source_state, state.recording) != before or (
            self.session.version != self._idle_key[0]
        ):
            self.wake()

    def _quiet(self, main: MainScreen) -> bool:
        """Nothing on the screen can change without an event or a key: all drawn, every
        rate 0, no held message, no scan, no screen that shows ages."""
        s = self.session
        return (
            s.version == main.drawn_version
            and not s.held
            and not main.scanning
            and not any(self.state.rates.rates.values())
            and not isinstance(self.screen, ReportScreen | FanoutScreen)
        )

    def _pace_timer(self, main: MainScreen) -> None:
        key = (self.session.version, self.state.source_state)
        if key == self._idle_key and not self.state.rates_changed and self._quiet(main):
            self._quiet_ticks += 1
            if self._quiet_ticks >= IDLE_AFTER * self.refresh_hz:
                self._sleep()
            return
        self._idle_key = key
        self.wake()

    async def on_event(self, event: tevents.Event) -> None:
        # a key, the mouse or a resize: the screen may change at the next tick
        if isinstance(event, tevents.InputEvent | tevents.Resize):
            self.wake()
        await super().on_event(event)

    @work(group="source", exit_on_error=False)
    async def _run_source(self) -> None:
        try:
            await self.source.run(self.on_events)
        except asyncio.CancelledError:
            raise
        except SourceError as e:
            self.state.source_state = f"source error: {e}"
            self.notify(str(e), title="Source", severity="error", markup=False, timeout=10)
        except Exception as e:
            self.state.source_state = f"source error: {type(e).__name__}"
            self.notify(f"{type(e).__name__}: {e}", title="Source", severity="error", markup=False)
        else:
            if not self._source_closed:
                self.state.source_state = "source ended"

    def on_events(self, events: list[Event]) -> None:
        """The Source's callback: apply the batch now; the timer redraws."""
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            self.call_from_thread(self._apply, events)
        else:
            self._apply(events)

    def _apply(self, events: list[Event]) -> None:
        if self.asleep:
            self.wake()
        apply = self.session.apply
        for ev in events:
            try:
                apply(ev)
            except Exception as e:  # one bad event must not stop the stream
                self.apply_errors += 1
                if self.apply_errors == 1:
                    self.notify(
                        f"{type(e).__name__}: {e}",
                        title="Event ignored",
                        severity="warning",
                        markup=False,
                    )

    def tick(self) -> None:
        """The redraw timer: rates, then the main screen."""
        state = self.state
        state.rates_changed = state.rates.sample(self._counters)
        self._check_proxy()
        self._check_source()
        try:
            main = self.main
        except Exception:
            return
        if not main.is_attached:
            return
        budget = self.cpu_budget
        if budget is not None:
            at, cpu = self._cpu_sample
            now = time.monotonic()
            if now - at >= 1.0:
                cpu_now = time.process_time()
                self._cpu_sample = (now, cpu_now)
                main.adapt_pacing((cpu_now - cpu) / (now - at), budget)
        try:
            main.refresh_data()
            screen = self.screen
            if isinstance(screen, ReportScreen | FanoutScreen) and screen.is_attached:
                screen.tick()
            self._pace_timer(main)
        except Exception as e:  # a redraw bug must not take the capture view down
            self.redraw_errors += 1
            self.log.error(f"redraw failed: {e!r}")
            if self.redraw_errors == 1:
                self.notify(
                    f"{type(e).__name__}: {e}",
                    title="Redraw failed",
                    severity="error",
                    markup=False,
                )

    def sync(self) -> None:
        """Run a redraw tick now (tests, screenshots)."""
        self.tick()
        self.main.refresh_data(force=True)
        screen = self.screen
        if isinstance(screen, ReportScreen) and screen.is_attached:
            screen.refresh_report(force=True)

    def _counters(self) -> dict[str, int]:
        s = self.session
        counters = {cid: c.msgs_in + c.msgs_out for cid, c in s.connections.items()}
        counters[ALL] = s.total_messages
        return counters

    def _check_proxy(self) -> None:
        proc = self.proxy_process
        if proc is None or self.state.source_state.startswith("proxy"):
            return
        poll = getattr(proc, "poll", None)
        code = poll() if callable(poll) else getattr(proc, "returncode", None)
        if code is not None:
            self.state.source_state = f"proxy exited ({code})"
            self.notify(
                f"The proxy process exited with code {code}.",
                title="Proxy",
                severity="error",
                markup=False,
                timeout=10,
            )

    def _check_source(self) -> None:
        """What the source says about itself: a Redis source that lost Redis (the
        instances it shows go gone meanwhile), and where the proxy records (scrollback)."""
        state = self.state
        connected = getattr(self.source, "connected", None)
        if connected is True:
            self._source_connected = True
        if (
            isinstance(connected, bool)
            and self._source_connected  # not before the first connection
            and state.source_state in ("live", REDIS_LOST)
        ):
            state.source_state = "live" if connected else REDIS_LOST
        if state.recording is None:
            now = time.monotonic()
            if now - self._recording_checked >= 1.0:
                self._recording_checked = now
                path = recording_of(self.source)
                if path is not None:
                    state.recording = open_index(path)

    async def close_source(self) -> None:
        """Close the source (once) and call the on_exit hook."""
        if self._source_closed:
            return
        self._source_closed = True
        try:
            await asyncio.wait_for(self.source.close(), timeout=3)
        except Exception as e:
            self.log.warning(f"closing the source failed: {e!r}")
        callback = self.on_exit_callback
        if callback is not None:
            result = callback()
            if inspect.isawaitable(result):
                await result

    def key_q(self) -> None:
        """``q`` that reached the app unhandled: in a dialog whose own keys do not use it
        (a modal screen does not see the app's bindings), it closes the dialog. Handled
        here, while the dialog is still the screen, not after it is gone (then the main
        screen's q would quit)."""
        screen = self.screen
        if isinstance(screen, ModalScreen):
            screen.dismiss(None)

    async def action_quit(self) -> None:
        """``q``: inside a dialog (handshake, fault menu, report...) it closes the dialog,
        like Esc; on the main screen it quits."""
        screen = self.screen
        if isinstance(screen, ModalScreen):
            screen.dismiss(None)
            return
        await self.close_source()
        self.exit()

    async def on_unmount(self) -> None:
        await self.close_source()

    # ------------------------------------------------------------------ commands

    def on_command_requested(self, message: CommandRequested) -> None:
        self.run_command(message.command, message.label)

    def on_frames_requested(self, message: FramesRequested) -> None:
        self.run_worker(
            self.send_frames(message.commands, message.label),
            group="commands",
            exit_on_error=False,
        )

    async def send_frames(self, cmds: Sequence[Command], label: str = "") -> bool:
        """Send the frames of one protocol message in order, together: on a tap written at
        once on its connection (the proxy runs them back to back), otherwise one after
        another; one notification for all."""
        what = f"{label} {len(cmds)} frame{'s' if len(cmds) != 1 else ''}"
        if cmds:
            what = f"{label} {describe(cmds[0])}" + (
                f" (+{len(cmds) - 1} frames)" if len(cmds) > 1 else ""
            )

        async def one(cmd: Command) -> CommandResult:
            try:
                return await self.source.command(cmd)
            except SourceError as e:
                return CommandResult(cmd.id, False, str(e))
            except Exception as e:  # a source bug must not take the screen down
                return CommandResult(cmd.id, False, f"{type(e).__name__}: {e}")

        if self.state.source_description.startswith("tap "):
            results = list(await asyncio.gather(*(one(c) for c in cmds)))
        else:
            results = [await one(c) for c in cmds]
        for cmd, result in zip(cmds, results, strict=True):
            self.command_results.append((cmd, result))
        del self.command_results[:-50]
        failed = [r for r in results if not r.ok]
        if failed:
            self.notify(
                failed[0].error or "the command failed",
                title=f"Failed: {what.strip()}",
                severity="error",
                markup=False,
                timeout=8,
            )
            return False
        self.notify(what.strip(), title="Sent", markup=False, timeout=3)
        return True

    def run_command(self, cmd: Command, label: str = "") -> None:
        """Send ``cmd`` to the source in a worker; the result is shown as a notification."""
        self.run_worker(self.send_command(cmd, label), group="commands", exit_on_error=False)

    async def send_command(self, cmd: Command, label: str = "") -> CommandResult:
        """``await source.command(cmd)``; a failure (the addon's answer or a dead tap) is
        shown with its error text, success briefly."""
        what = f"{label} {describe(cmd)}".strip()
        try:
            result = await self.source.command(cmd)
        except SourceError as e:
            result = CommandResult(cmd.id, False, str(e))
        except Exception as e:  # a source bug must not take the screen down
            result = CommandResult(cmd.id, False, f"{type(e).__name__}: {e}")
        self.command_results.append((cmd, result))
        del self.command_results[:-50]
        if result.ok:
            self.notify(what, title="Sent", markup=False, timeout=3)
        else:
            self.notify(
                result.error or "the command failed",
                title=f"Failed: {what}",
                severity="error",
                markup=False,
                timeout=8,
            )
        return result

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(help_groups(), self.about()))

    def about(self) -> str:
        """Where this screen reads from, and how to reach the same proxy from a shell."""
        desc = self.state.source_description
        proxy = self.session.proxy
        if not desc.startswith("tap "):
            return f"Reading {desc}." if desc else ""
        tap = desc[4:]
        where = f"the proxy on {proxy}" if proxy else "a devconsole proxy"
        return (
            f"Reading {where} through its tap {tap}\n"
            "From another terminal, devconsole conns, tail, report, kill and inject find it\n"
            f"while it is the only proxy running; with several: --tap {tap}"
        )


def help_groups() -> list[tuple[str, Iterable[BindingType]]]:
    return [
        ("global", DevconsoleApp.BINDINGS),
        ("main", MainScreen.BINDINGS),
        ("stream", StreamView.BINDINGS),
        ("connections", ConnectionList.BINDINGS),
        ("filter bar", FilterBar.BINDINGS),
        ("detail tree", DetailTree.BINDINGS),
        ("intercept view", InterceptScreen.BINDINGS),
        ("forward/drop all", ScopeDialog.BINDINGS),
        ("breakpoint", BreakpointDialog.BINDINGS),
        ("editor", EditDialog.BINDINGS),
        ("fault menu", FaultMenu.BINDINGS),
        ("inject", InjectDialog.BINDINGS),
        ("handshake", HandshakeScreen.BINDINGS),
        ("report", ReportScreen.BINDINGS),
        ("protocol menu", ProtocolMenu.BINDINGS),
        ("fan-out", FanoutScreen.BINDINGS),
    ]


def make_app(
    source: Source,
    *,
    proxy_process: Any = None,
    on_exit: Callable[[], object] | None = None,
    session: Session | None = None,
    max_items: int = 100_000,
    max_bytes: int = 256 << 20,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    tz: _dt.tzinfo | None = None,
    refresh_hz: float = REFRESH_HZ,
    keymap: Mapping[str, str] | None = None,
    decoder_rules: Sequence[DecoderRule] = (),
) -> DevconsoleApp:
    """The TUI over ``source``.

    ``proxy_process``: the proxy child (anything with ``poll()`` or ``returncode``) whose
    exit is shown in the status bar; stopping it stays the caller's job. ``on_exit`` is
    called (and awaited if it returns an awaitable) after the source is closed on quit.
    ``clock`` (monotonic, for rates), ``wall_clock`` (Unix time, the timebase of event
    timestamps: "seconds since" in the report) and ``tz`` make the screen deterministic
    in tests; ``keymap`` rebinds keys by binding id (``{"pause": "p"}``);
    ``decoder_rules`` are the viewer's ``--decoder`` rules (``commands.protocols``).
    """
    if session is None:
        session = Session(max_items=max_items, max_bytes=max_bytes)
    state = ViewState.create(
        session,
        clock=clock,
        wall_clock=wall_clock,
        tz=tz,
        source_description=str(getattr(source, "description", "") or ""),
        rules=decoder_rules,
    )
    return DevconsoleApp(
        source,
        state,
        proxy_process=proxy_process,
        on_exit=on_exit,
        refresh_hz=refresh_hz,
        keymap=keymap,
    )
