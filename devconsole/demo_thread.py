"""The demo traffic (``devconsole.demo``) in a thread with its own event loop, for
``devconsole demo``: the TUI owns the main thread's loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


def start_demo_thread(proxy: str, rate: int | None) -> Callable[[], None]:
    """Start the demo clients through ``proxy`` (``host:port``); returns the function
    that stops them (and waits up to 5 s for the thread)."""
    from devconsole.demo import run_demo

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def runner() -> None:
        asyncio.set_event_loop(loop)
        with contextlib.suppress(Exception):
            loop.run_until_complete(run_demo(proxy, rate=rate, stop=stop))

    t = threading.Thread(target=runner, name="devconsole-demo", daemon=True)
    t.start()

    def stopper() -> None:
        loop.call_soon_threadsafe(stop.set)
        t.join(5)

    return stopper
