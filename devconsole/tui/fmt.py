"""Small pure formatting helpers shared by the TUI widgets (no Textual imports).

Everything here returns plain ``str`` built from numbers and enum values; payload text is
never formatted here (see ``devconsole.decoders.safe_text``).
"""

from __future__ import annotations

import datetime as _dt

from devconsole.model import CLIENT, ControlFrame, Item, Opcode

# (state -> style) colours of the connection state badges. Styles are Rich style strings
# so they can be used in Text.append(); they never contain payload.
STATE_STYLES: dict[str, str] = {
    "connecting": "bold yellow",
    "open": "bold green",
    "closing": "bold dark_orange",
    "closed": "grey62",
    "refused": "bold white on red3",
    "killed": "bold white on magenta",
    "half-open": "bold black on yellow",
}

ARROW_CLIENT = "→"  # client -> server
ARROW_SERVER = "←"  # server -> client

BADGES: dict[int, str] = {
    Opcode.TEXT: "TXT",
    Opcode.BINARY: "BIN",
    Opcode.PING: "PING",
    Opcode.PONG: "PONG",
    Opcode.CLOSE: "CLOSE",
    Opcode.CONTINUATION: "CONT",
}

BADGE_STYLES: dict[str, str] = {
    "TXT": "bold cyan",
    "BIN": "bold magenta",
    "PING": "bold blue",
    "PONG": "bold blue",
    "CLOSE": "bold red",
    "CONT": "bold",
}


def human_bytes(n: int | float) -> str:
    """Compact byte count: ``999 B``, ``1.2 KiB``, ``34 MiB``."""
    n = float(n)
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if n < 10 else f"{n:.0f} {unit}"
    raise AssertionError("unreachable")


def short_bytes(n: int) -> str:
    """Very compact byte count for table columns: ``999``, ``1.2k``, ``34M``."""
    if n < 1000:
        return str(n)
    value = float(n)
    for unit in ("k", "M", "G", "T"):
        value /= 1024
        if value < 999.5 or unit == "T":
            return f"{value:.1f}{unit}" if value < 9.95 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def fmt_count(n: int) -> str:
    return f"{n:,}"


def fmt_rate(rate: float) -> str:
    """Messages per second: ``0/s``, ``12/s``, ``3.4k/s``."""
    if rate < 0.05:
        return "0/s"
    if rate < 10:
        return f"{rate:.1f}/s"
    if rate < 1000:
        return f"{rate:.0f}/s"
    if rate < 10_000:
        return f"{rate / 1000:.1f}k/s"
    return f"{rate / 1000:.0f}k/s"


def fmt_time(ts: float, tz: _dt.tzinfo | None = None) -> str:
    """``HH:MM:SS.mmm`` in ``tz`` (local time when None)."""
    if tz is None:
        t = _dt.datetime.fromtimestamp(ts).astimezone()
    else:
        t = _dt.datetime.fromtimestamp(ts, tz)
    return f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}"


def fmt_datetime(ts: float, tz: _dt.tzinfo | None = None) -> str:
    if tz is None:
        t = _dt.datetime.fromtimestamp(ts).astimezone()
    else:
        t = _dt.datetime.fromtimestamp(ts, tz)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d} {t:%Z}".rstrip()


def fmt_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def badge(item: Item) -> str:
    return BADGES.get(item.opcode, f"OP{item.opcode:X}")


def arrow(item: Item) -> str:
    return ARROW_CLIENT if item.side == CLIENT else ARROW_SERVER


def direction_words(side: str) -> str:
    return "client → server" if side == CLIENT else "server → client"


def markers(item: Item) -> list[str]:
    """Extra markers for a stream row: INJ (sent by devconsole), DROP (not forwarded)."""
    out: list[str] = []
    if item.injected:
        out.append("INJ")
    if item.dropped:
        out.append("DROP")
    if isinstance(item, ControlFrame) and item.error:
        out.append("ERR")
    return out


def rsv_names(rsv: int) -> str:
    names = [name for bit, name in ((4, "RSV1"), (2, "RSV2"), (1, "RSV3")) if rsv & bit]
    return "+".join(names) if names else "-"
