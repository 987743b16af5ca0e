from __future__ import annotations

import pytest

from devconsole.model import CLIENT, SERVER, Opcode
from devconsole.tui.fmt import (
    arrow,
    badge,
    fmt_count,
    fmt_duration,
    fmt_rate,
    fmt_time,
    human_bytes,
    markers,
    rsv_names,
    short_bytes,
)
from tests.tui_fixtures import T0, UTC, Traffic


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0 B"), (999, "999 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (20 << 20, "20 MiB")],
)
def test_human_bytes(n: int, expected: str) -> None:
    assert human_bytes(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (999, "999"), (1000, "1.0k"), (20000, "20k"), (5 << 20, "5.0M"), (1 << 40, "1.0T")],
)
def test_short_bytes(n: int, expected: str) -> None:
    assert short_bytes(n) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0, "0/s"), (0.01, "0/s"), (2.5, "2.5/s"), (120, "120/s"), (3400, "3.4k/s"), (54700, "55k/s")],
)
def test_fmt_rate(rate: float, expected: str) -> None:
    assert fmt_rate(rate) == expected


def test_time_and_duration() -> None:
    assert fmt_time(T0 + 0.0456, UTC) == "22:13:20.045"
    assert fmt_time(T0, None).count(":") == 2  # local time, whatever the zone
    assert fmt_duration(0.012) == "12 ms"
    assert fmt_duration(3.25) == "3.2 s"
    assert fmt_duration(125) == "2m05s"
    assert fmt_duration(7300) == "2h01m"
    assert fmt_count(1234567) == "1,234,567"


def test_badges_arrows_markers() -> None:
    t = Traffic()
    m = t.text("c1", CLIENT, "hi", injected=True)
    assert (badge(m), arrow(m), markers(m)) == ("TXT", "→", ["INJ"])
    b = t.binary("c1", SERVER, b"\x00", dropped=True)
    assert (badge(b), arrow(b), markers(b)) == ("BIN", "←", ["DROP"])
    assert badge(t.ping("c1")) == "PING"
    assert badge(t.pong("c1")) == "PONG"
    close = t.close("c1", SERVER, 1000, error="invalid close code")
    assert badge(close) == "CLOSE"
    assert markers(close) == ["ERR"]
    assert badge(t.control("c1", SERVER, Opcode.CONTINUATION)) == "CONT"
    assert rsv_names(4) == "RSV1"
    assert rsv_names(0b101) == "RSV1+RSV3"
    assert rsv_names(0) == "-"
