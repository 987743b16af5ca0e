"""How devconsole says a number, a time, an address or an opcode: one formatter for each,
shared by the TUI, the CLI's lines and the reports.

Core module: plain ``str`` in and out, no I/O, no Rich (styling is ``devconsole.tui.fmt``).
Payload text is never formatted here (see ``devconsole.decoders.safe_text``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from devconsole.model import CLIENT, ControlFrame, Item, Opcode

# --------------------------------------------------------------------------- sizes


def fmt_bytes(n: float) -> str:
    """A byte count: ``999 B``, ``1.2 KiB``, ``34 KiB``, ``5.0 MiB`` (one decimal below
    10 of a unit)."""
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if n < 9.95 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")


def fmt_bytes_short(n: int) -> str:
    """A byte count for narrow table columns: ``999``, ``1.2k``, ``34M``."""
    if n < 1000:
        return str(n)
    value = float(n)
    for unit in ("k", "M", "G", "T"):
        value /= 1024
        if value < 999.5 or unit == "T":
            return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def fmt_count(n: int) -> str:
    """``1,234,567``."""
    return f"{n:,}"


def fmt_rate(rate: float) -> str:
    """Messages per second: ``0/s``, ``2.5/s``, ``120/s``, ``3.4k/s``."""
    if rate < 0.05:
        return "0/s"
    if rate < 10:
        return f"{rate:.1f}/s"
    if rate < 1000:
        return f"{rate:.0f}/s"
    if rate < 10_000:
        return f"{rate / 1000:.1f}k/s"
    return f"{rate / 1000:.0f}k/s"


# --------------------------------------------------------------------------- times


def _at(ts: float, tz: _dt.tzinfo | None) -> _dt.datetime:
    if tz is None:
        return _dt.datetime.fromtimestamp(ts).astimezone()
    return _dt.datetime.fromtimestamp(ts, tz)


def fmt_time(ts: float, tz: _dt.tzinfo | None = None) -> str:
    """The time of day of a Unix timestamp, ``HH:MM:SS.mmm``, in ``tz`` (local when None)."""
    t = _at(ts, tz)
    return f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}"


def fmt_datetime(ts: float, tz: _dt.tzinfo | None = None) -> str:
    """``YYYY-MM-DD HH:MM:SS.mmm ZONE`` in ``tz`` (local when None)."""
    t = _at(ts, tz)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {t:%Z}".rstrip()


def fmt_duration(seconds: float | None) -> str:
    """A duration: ``12 ms``, ``2.50 s``, ``1.5 min``, ``2.0 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_elapsed(seconds: float) -> str:
    """A clock-like duration in whole seconds, for what ticks once a second (how long a
    message has been held): ``0s``, ``12s``, ``1m05s``, ``2h03m``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_delay(seconds: float) -> str:
    """A duration as a short label (the backoff timeline's gaps): ``40ms``, ``0.3s``,
    ``1.25s``, ``12s``, ``2.5m``."""
    if seconds < 0.1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.2f}".rstrip("0").rstrip(".") + "s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}m"


# --------------------------------------------------------------------------- addresses


def fmt_addr(addr: Sequence[object] | None) -> str:
    """``(host, port, ...)`` as ``host:port``, an IPv6 host in brackets (``[::1]:80``);
    empty for no address."""
    if not addr:
        return ""
    host, port = str(addr[0]), addr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


# --------------------------------------------------------------------------- connections


def conn_tag(conn_id: str) -> str:
    """A connection as users see it and type it: ``#`` and the proxy's id (``#3`` is
    ``conn:3`` in a filter and ``devconsole kill 3``). An id from a damaged capture file
    that is not printable is shown escaped."""
    return "#" + (conn_id if conn_id.isprintable() else repr(conn_id)[1:-1])


# --------------------------------------------------------------------------- frames

OPCODE_NAMES: dict[int, str] = {
    Opcode.CONTINUATION: "continuation",
    Opcode.TEXT: "text",
    Opcode.BINARY: "binary",
    Opcode.CLOSE: "close",
    Opcode.PING: "ping",
    Opcode.PONG: "pong",
}

BADGES: dict[int, str] = {
    Opcode.TEXT: "TXT",
    Opcode.BINARY: "BIN",
    Opcode.PING: "PING",
    Opcode.PONG: "PONG",
    Opcode.CLOSE: "CLOSE",
    Opcode.CONTINUATION: "CONT",
}

ARROW_CLIENT = "→"  # client -> server
ARROW_SERVER = "←"  # server -> client


def opcode_name(op: int) -> str:
    """``text``, ``binary``, ``ping``...; a reserved opcode as ``op`` and its hex digit."""
    return OPCODE_NAMES.get(op, f"op{op:x}")


def badge(item: Item) -> str:
    """The stream's short opcode label: ``TXT``, ``BIN``, ``PING``, ``CLOSE``..."""
    return BADGES.get(item.opcode, f"OP{item.opcode:X}")


def arrow(side: str) -> str:
    """``→`` for what the client sent, ``←`` for what the server sent."""
    return ARROW_CLIENT if side == CLIENT else ARROW_SERVER


def direction_words(side: str) -> str:
    return "client → server" if side == CLIENT else "server → client"


def markers(item: Item) -> list[str]:
    """Extra markers of a stream row: INJ (sent by devconsole), DROP (not forwarded), ERR
    (a close frame with an invalid code), and for a message a breakpoint held: HOLD (on
    hold now), FWD, EDIT, DROP, T/O (forwarded when its hold timed out); for one a rule
    acted on and did not hold (docs/rules.md): EDIT (rewritten) or RULE."""
    out: list[str] = []
    if item.injected:
        out.append("INJ")
    if item.dropped:
        out.append("DROP")
    if isinstance(item, ControlFrame) and item.error:
        out.append("ERR")
    if item.held:  # held by a breakpoint (docs/intercept.md): on hold, or what became of it
        out.append(HELD_MARKS.get(item.outcome, "HOLD"))
    elif item.rule:
        out.append("EDIT" if item.outcome == "edited" else "RULE")
    return out


# The marker of a message a breakpoint held, by its outcome ("" while on hold).
HELD_MARKS: dict[str, str] = {
    "": "HOLD",
    "forwarded": "FWD",
    "edited": "EDIT",
    "dropped": "DROP",
    "timeout-forwarded": "T/O",
    "timeout-dropped": "DROP",
    "lost": "LOST",
}


def rsv_names(rsv: int) -> str:
    """RSV bits (``rsv1<<2 | rsv2<<1 | rsv3``) as ``RSV1+RSV3``; ``-`` for none."""
    names = [name for bit, name in ((4, "RSV1"), (2, "RSV2"), (1, "RSV3")) if rsv & bit]
    return "+".join(names) if names else "-"
