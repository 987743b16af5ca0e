"""The status bar: proxy address, totals, rate, buffer use, evictions, gaps, pause state."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from devconsole.decoders import safe_text
from devconsole.session import Session
from devconsole.text import fmt_bytes, fmt_count, fmt_rate


@dataclass(slots=True)
class StatusInfo:
    """Everything the bar shows; compared with the previous one so the widget is only
    updated when something visible changed."""

    address: str
    source_state: str  # "live", "ended", or an error
    messages: int
    total_bytes: int
    rate: float
    buffered: int
    max_items: int
    buffer_bytes: int
    max_bytes: int
    evicted: int
    missed: int
    paused: bool
    paused_new: int
    following: bool
    filtered: bool
    instances: tuple[tuple[str, str], ...] = ()  # a Redis source: (name, state)

    @classmethod
    def from_session(
        cls,
        session: Session,
        *,
        address: str,
        source_state: str,
        rate: float,
        paused: bool,
        paused_new: int,
        following: bool,
        filtered: bool,
    ) -> StatusInfo:
        buf = session.buffer
        return cls(
            address=session.proxy or address,
            source_state=source_state,
            messages=session.total_messages,
            total_bytes=session.total_bytes,
            rate=rate,
            buffered=len(buf),
            max_items=buf.max_items,
            buffer_bytes=buf.bytes,
            max_bytes=buf.max_bytes,
            evicted=session.evicted,
            missed=session.missed,
            paused=paused,
            paused_new=paused_new,
            following=following,
            filtered=filtered,
            instances=tuple((n, e.state) for n, e in session.instances.items()),
        )


def status_text(info: StatusInfo) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    sep = (" │ ", "dim")
    if info.paused:
        t.append(f" ⏸ PAUSED +{fmt_count(info.paused_new)} ", "bold black on yellow")
        t.append(" ")
    else:
        t.append(" ▶ LIVE " if info.following else " ▷ SCROLLED ", "bold reverse")
        t.append(" ")
    if info.source_state != "live":
        t.append(f" {safe_text(info.source_state)} ", "bold white on red3")
        t.append(" ")
    t.append(safe_text(info.address), "bold")
    for name, state in info.instances:
        t.append(" ")
        if state == "up":
            t.append(f"{safe_text(name)} ●", "green")
        else:
            t.append(f"{safe_text(name)} {state}", "bold white on red3")
    t.append(*sep)
    t.append(f"{fmt_count(info.messages)} msgs ")
    t.append(fmt_bytes(info.total_bytes), "dim")
    t.append(*sep)
    t.append(fmt_rate(info.rate), "bold")
    t.append(*sep)
    t.append("buffer ")
    t.append(f"{fmt_count(info.buffered)}/{fmt_count(info.max_items)}")
    t.append(f" {fmt_bytes(info.buffer_bytes)}/{fmt_bytes(info.max_bytes)}", "dim")
    t.append(*sep)
    t.append(f"evicted {fmt_count(info.evicted)}", "bold yellow" if info.evicted else "dim")
    t.append(*sep)
    t.append(f"missed {fmt_count(info.missed)}", "bold red" if info.missed else "dim")
    if info.filtered:
        t.append(*sep)
        t.append("filtered", "bold cyan")
    return t


class StatusBar(Static):
    """One line at the bottom; ``show()`` re-renders only when the info changed."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info: StatusInfo | None = None

    def show(self, info: StatusInfo) -> None:
        if info == self.info:
            return
        self.info = info
        self.update(status_text(info))
