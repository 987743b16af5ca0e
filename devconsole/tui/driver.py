"""The terminal driver: Textual's Linux driver with an input thread that sleeps.

Textual's input thread wakes up every 0.1 s to look for input (so that a lone Esc becomes
a key after its timeout): with nothing else to do, the last CPU an idle screen spends
(docs/performance.md). Here it waits without a timeout while the key parser holds nothing
back, and until the parser's own deadline when it does; stopping the input wakes it
through a pipe. Where Textual's internals differ from what this relies on, the app keeps
Textual's own driver (``driver_class``).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading
from codecs import getincrementaldecoder
from typing import Any

from textual.driver import Driver

try:  # private parts of Textual (8.x): checked here, not trusted blindly
    from textual._parser import ParseError
    from textual._time import get_time
    from textual._xterm_parser import XTermParser
    from textual.drivers.linux_driver import LinuxDriver
except ImportError:  # pragma: no cover - another Textual, or not Linux
    LinuxDriver = None  # type: ignore[assignment,misc]

POLL = 0.1  # the wait while the parser holds back input and has no deadline of its own


class _WakingEvent(threading.Event):
    """An Event whose ``set`` also writes to a pipe the input thread waits on."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        with contextlib.suppress(OSError):
            os.write(self._wake_fd, b"x")


def _parser_deadline(parser: Any) -> float | None:
    """When the parser's held-back input (a lone Esc) times out; None: holds nothing."""
    return getattr(parser, "_timeout_time", None)  # type: ignore[no-any-return]


if LinuxDriver is not None:

    class QuietLinuxDriver(LinuxDriver):
        """LinuxDriver whose input thread does not poll while it has nothing to do."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_w, False)
            # Textual stops the input thread by setting exit_event, then joins it
            self.exit_event = _WakingEvent(self._wake_w)

        def close(self) -> None:
            super().close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

        def run_input_thread(self) -> None:
            fileno = self.fileno
            parser = XTermParser(self._debug)
            decode = getincrementaldecoder("utf-8")().decode
            selector = selectors.DefaultSelector()
            selector.register(fileno, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            reading = True
            try:
                while not self.exit_event.is_set():
                    deadline = _parser_deadline(parser)
                    timeout = None if deadline is None else max(0.0, deadline - get_time())
                    if not reading and timeout is None:
                        timeout = POLL  # stdin ended: only the exit event is left
                    for key, _mask in selector.select(timeout):
                        if key.fd == self._wake_r:
                            with contextlib.suppress(OSError):
                                os.read(self._wake_r, 64)
                            continue
                        data = decode(os.read(fileno, 4096))
                        if not data:  # stdin is a pipe that ended: do not spin on it
                            selector.unregister(fileno)
                            reading = False
                            continue
                        for event in parser.feed(data):
                            self.process_message(event)
                    for event in parser.tick():
                        self.process_message(event)
            finally:
                selector.close()
                with contextlib.suppress(EOFError, ParseError):
                    for _event in parser.feed(""):  # as Textual does: the app is stopping
                        pass


def _parser_keeps_a_deadline() -> bool:
    """Textual's key parser says when held-back input times out (``_timeout_time``):
    without it the quiet thread could sleep through a lone Esc."""
    try:
        return hasattr(XTermParser(), "_timeout_time")
    except Exception:  # another Textual's parser
        return False


def driver_class(default: type[Driver]) -> type[Driver]:
    """The driver for an app whose Textual chose ``default``."""
    if LinuxDriver is not None and default is LinuxDriver and _parser_keeps_a_deadline():
        return QuietLinuxDriver
    return default
