from __future__ import annotations

from devconsole.tui.rates import RateMeter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rates_sample_once_per_interval() -> None:
    clock = FakeClock()
    meter = RateMeter(clock, interval=1.0)
    counters = {"a": 0, "b": 10}
    calls = 0

    def read() -> dict[str, int]:
        nonlocal calls
        calls += 1
        return dict(counters)

    assert meter.sample(read) is False  # first sample: the baseline
    counters.update(a=500, b=10)
    clock.now += 0.5
    assert meter.sample(read) is False  # not due yet: counters not even read
    assert calls == 1
    clock.now += 0.5
    assert meter.sample(read) is True
    assert meter.get("a") == 500.0
    assert meter.get("b") == 0.0
    assert meter.get("unknown") == 0.0
    counters["c"] = 7  # a new key has no rate until its second sample
    clock.now += 2
    meter.sample(read)
    assert meter.get("a") == 0.0
    assert meter.get("c") == 0.0


def test_frozen_clock_keeps_rates_at_zero() -> None:
    meter = RateMeter(lambda: 0.0)
    for n in range(5):
        meter.sample(lambda n=n: {"a": n * 1000})
    assert meter.get("a") == 0.0


def test_restart_counts_the_next_rate_from_now() -> None:
    """After the redraw timer slept (nothing moved), the first rate is the traffic of the
    last second, not diluted over the whole sleep."""
    clock = FakeClock()
    meter = RateMeter(clock, interval=1.0)
    counters = {"a": 0}
    meter.sample(lambda: counters)
    clock.now += 60.0  # asleep for a minute
    meter.restart()
    counters["a"] = 10
    clock.now += 1.0
    assert meter.sample(lambda: counters) is True
    assert meter.get("a") == 10.0
