"""Message rates by sampling counters on the redraw timer (no per-message work).

The clock is injected, so tests freeze it and rates stay at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class RateMeter:
    """Per-key rates (units/s) from monotonically increasing counters.

    ``sample()`` is called on every tick; it recomputes rates at most once per
    ``interval`` seconds of the injected clock, so the figure is stable enough to read.
    """

    def __init__(self, clock: Callable[[], float], interval: float = 1.0) -> None:
        self.clock = clock
        self.interval = interval
        self._last_time: float | None = None
        self._last: dict[str, int] = {}
        self.rates: dict[str, float] = {}

    def sample(self, counters: Callable[[], Mapping[str, int]]) -> bool:
        """Take a sample if ``interval`` has passed; returns True when rates changed.

        ``counters`` is called only when a sample is due (it may walk every connection).
        """
        now = self.clock()
        if self._last_time is None:
            self._last_time = now
            self._last = dict(counters())
            return False
        dt = now - self._last_time
        if dt < self.interval:
            return False
        current = dict(counters())
        rates: dict[str, float] = {}
        for key, value in current.items():
            prev = self._last.get(key)
            rates[key] = 0.0 if prev is None else max(0, value - prev) / dt
        changed = rates != self.rates
        self.rates = rates
        self._last = current
        self._last_time = now
        return changed

    def get(self, key: str) -> float:
        return self.rates.get(key, 0.0)

    def restart(self) -> None:
        """After the redraw timer slept (nothing moved): the next rate counts from now,
        not from the last sample long ago, so the first figure is not diluted."""
        if self._last_time is not None:
            self._last_time = self.clock()
