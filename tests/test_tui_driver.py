"""The TUI's terminal driver: an input thread that sleeps until input (tui/driver.py),
driven through a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import threading
import time
import tty
from typing import Any

import pytest
from textual import events
from textual.driver import Driver
from textual.drivers.headless_driver import HeadlessDriver

from devconsole.tui.driver import LinuxDriver, driver_class

pytestmark = pytest.mark.skipif(LinuxDriver is None, reason="Textual without its Linux driver")


def make_driver() -> tuple[Any, list[Any], int]:
    from devconsole.tui.driver import QuietLinuxDriver

    got: list[Any] = []

    class Recording(QuietLinuxDriver):  # type: ignore[misc,valid-type]
        def process_message(self, message: Any) -> None:
            got.append(message)

    d = Recording(object())  # type: ignore[arg-type]  # the thread does not use the app
    # (Textual's Driver takes the running loop: the tests are async for that alone)
    master, slave = pty.openpty()
    tty.setraw(slave)  # as Textual sets the terminal: bytes, not lines
    d.fileno = slave
    return d, got, master


def wait_for(cond: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def keys(got: list[Any]) -> list[str]:
    return [m.key for m in got if isinstance(m, events.Key)]


async def test_keys_and_a_lone_esc_arrive_and_stopping_wakes_the_sleeping_thread() -> None:
    d, got, master = make_driver()
    t = threading.Thread(target=d.run_input_thread, daemon=True)
    t.start()
    try:
        os.write(master, b"a")
        wait_for(lambda: keys(got) == ["a"])
        # a lone Esc is held back by the parser until its timeout, then becomes a key:
        # the thread must not sleep through that deadline
        os.write(master, b"\x1b")
        wait_for(lambda: keys(got) == ["a", "escape"], timeout=2.0)
        # with nothing held back the thread waits without a timeout; stopping it (as
        # Textual does: set exit_event, then join) wakes it at once
        time.sleep(0.3)
        started = time.monotonic()
        d.exit_event.set()
        t.join(2.0)
        assert not t.is_alive() and time.monotonic() - started < 1.0
    finally:
        d.exit_event.set()
        t.join(2.0)
        d.close()
        os.close(master)
        os.close(d.fileno)


async def test_the_thread_does_not_wake_while_nothing_is_typed() -> None:
    """Textual's own input thread wakes 10 times a second; this one not at all."""
    d, got, master = make_driver()
    t = threading.Thread(target=d.run_input_thread, daemon=True)
    calls = []
    import selectors

    real = selectors.DefaultSelector

    class Counting(real):  # type: ignore[misc,valid-type]
        def select(self, timeout: float | None = None) -> Any:
            calls.append(timeout)
            return super().select(timeout)

    selectors.DefaultSelector = Counting  # type: ignore[misc]
    try:
        t.start()
        time.sleep(0.5)
        assert calls == [None]  # one wait, no timeout, still waiting
        assert got == []
    finally:
        selectors.DefaultSelector = real  # type: ignore[misc]
        d.exit_event.set()
        t.join(2.0)
        d.close()
        os.close(master)
        os.close(d.fileno)


def test_only_textuals_linux_driver_is_replaced() -> None:
    from devconsole.tui.driver import QuietLinuxDriver

    assert driver_class(LinuxDriver) is QuietLinuxDriver
    assert driver_class(HeadlessDriver) is HeadlessDriver
    assert issubclass(driver_class(LinuxDriver), Driver)


def test_a_textual_whose_parser_keeps_no_deadline_keeps_its_own_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the parser's ``_timeout_time`` the quiet thread could sleep through a lone
    Esc: then Textual's own (polling) driver is used."""
    from devconsole.tui import driver

    class OtherParser:
        def __init__(self, debug: bool = False) -> None:
            pass

    monkeypatch.setattr(driver, "XTermParser", OtherParser)
    assert driver_class(LinuxDriver) is LinuxDriver
