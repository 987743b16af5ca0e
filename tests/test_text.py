"""One way to say a thing: bytes, counts, rates, times, durations, addresses, opcodes."""

from __future__ import annotations

import pytest

from devconsole.model import CLIENT, SERVER, Opcode
from devconsole.text import (
    arrow,
    badge,
    fmt_addr,
    fmt_bytes,
    fmt_bytes_short,
    fmt_count,
    fmt_datetime,
    fmt_delay,
    fmt_duration,
    fmt_elapsed,
    fmt_rate,
    fmt_time,
    markers,
    opcode_name,
    rsv_names,
)
from tests.tui_fixtures import T0, UTC, Traffic


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (10 * 1024 - 10, "10 KiB"),
        (20 << 20, "20 MiB"),
        (3 << 30, "3.0 GiB"),
        (5000 << 40, "5000 TiB"),
    ],
)
def test_fmt_bytes(n: int, expected: str) -> None:
    assert fmt_bytes(n) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "0"), (999, "999"), (1000, "1.0k"), (20000, "20k"), (5 << 20, "5.0M"), (1 << 40, "1.0T")],
)
def test_fmt_bytes_short(n: int, expected: str) -> None:
    assert fmt_bytes_short(n) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(0, "0/s"), (0.01, "0/s"), (2.5, "2.5/s"), (120, "120/s"), (3400, "3.4k/s"), (54700, "55k/s")],
)
def test_fmt_rate(rate: float, expected: str) -> None:
    assert fmt_rate(rate) == expected


def test_time_and_duration() -> None:
    assert fmt_time(T0 + 0.0456, UTC) == "22:13:20.045"
    assert fmt_time(T0, None).count(":") == 2  # local time, whatever the zone
    assert fmt_datetime(T0 + 0.0456, UTC) == "2023-11-14 22:13:20.045 UTC"
    assert fmt_duration(0.0123) == "12 ms"
    assert fmt_duration(2.5) == "2.50 s"
    assert fmt_duration(90) == "1.5 min"
    assert fmt_duration(7300) == "2.0 h"
    assert fmt_duration(None) == "-"
    assert fmt_count(1234567) == "1,234,567"


def test_fmt_delay() -> None:
    assert [fmt_delay(d) for d in (0.04, 0.3, 0.6, 1.2, 1.25, 2.0, 12.4, 150)] == [
        "40ms",
        "0.3s",
        "0.6s",
        "1.2s",
        "1.25s",
        "2s",
        "12s",
        "2.5m",
    ]


def test_fmt_addr() -> None:
    assert fmt_addr(("127.0.0.1", 8080)) == "127.0.0.1:8080"
    assert fmt_addr(("::1", 8080, 0, 0)) == "[::1]:8080"
    assert fmt_addr(None) == "" and fmt_addr(()) == ""


@pytest.mark.parametrize(
    ("op", "name"),
    [(0, "continuation"), (1, "text"), (2, "binary"), (8, "close"), (9, "ping"), (10, "pong")],
)
def test_opcode_names(op: int, name: str) -> None:
    assert opcode_name(op) == name


def test_reserved_opcode_gets_a_hex_name_instead_of_failing() -> None:
    assert opcode_name(0x3) == "op3"
    assert opcode_name(0xB) == "opb"


def test_badges_arrows_markers() -> None:
    t = Traffic()
    m = t.text("c1", CLIENT, "hi", injected=True)
    assert (badge(m), arrow(m.side), markers(m)) == ("TXT", "→", ["INJ"])
    b = t.binary("c1", SERVER, b"\x00", dropped=True)
    assert (badge(b), arrow(b.side), markers(b)) == ("BIN", "←", ["DROP"])
    assert badge(t.ping("c1")) == "PING"
    assert badge(t.pong("c1")) == "PONG"
    close = t.close("c1", SERVER, 1000, error="invalid close code")
    assert badge(close) == "CLOSE"
    assert markers(close) == ["ERR"]
    assert badge(t.control("c1", SERVER, Opcode.CONTINUATION)) == "CONT"
    assert rsv_names(4) == "RSV1"
    assert rsv_names(0b101) == "RSV1+RSV3"
    assert rsv_names(0) == "-"


def test_held_markers_and_elapsed_times() -> None:
    """A message a breakpoint held: HOLD while it is, then what became of it."""
    t = Traffic()
    m = t.text("c1", CLIENT, "x", held=3, breakpoint=1)
    assert markers(m) == ["HOLD"]
    for outcome, mark in (
        ("forwarded", "FWD"),
        ("edited", "EDIT"),
        ("dropped", "DROP"),
        ("timeout-forwarded", "T/O"),
        ("timeout-dropped", "DROP"),
        ("lost", "LOST"),  # its instance died (a merged view over Redis)
    ):
        m.outcome = outcome
        assert markers(m) == [mark]
    held_ping = t.ping("c1")
    held_ping.held = 4
    assert markers(held_ping) == ["HOLD"]
    # a rule acted on it without holding it (docs/rules.md): rewritten, or anything else
    ruled = t.text("c1", CLIENT, "y", rule="slow chat", action="delay 0.3s")
    assert markers(ruled) == ["RULE"]
    ruled.outcome = "edited"
    assert markers(ruled) == ["EDIT"]
    dropped = t.text("c1", CLIENT, "z", rule="no z", action="drop", dropped=True)
    assert markers(dropped) == ["DROP", "RULE"]
    shaped_pong = t.control("c1", CLIENT, 10, b"", action="pong dropped (shape)")
    assert markers(shaped_pong) == []  # a network condition, not a rule
    assert [fmt_elapsed(s) for s in (0, 0.9, 12.7, 65, 3599, 3600, 7380, -1)] == [
        "0s",
        "0s",
        "12s",
        "1m05s",
        "59m59s",
        "1h00m",
        "2h03m",
        "0s",
    ]
