"""The status bar: proxy address, tap, totals, rate, buffer use, evictions, gaps, pause
state; fitted to the terminal's width (what matters least is shortened, then left out)."""

from __future__ import annotations

import os
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
    tap: str = ""  # the tap this screen reads (for `devconsole conns --tap ...`)
    held: int = 0  # messages held by breakpoints now (docs/intercept.md)

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
        """``address`` is the source's description ("tap /run/.../tap-42.sock", "file
        x.dcap"): shown until the proxy's own address is known, then beside it."""
        buf = session.buffer
        tap = address[4:] if address.startswith("tap ") and session.proxy else ""
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
            tap=tap,
            held=len(session.held),
        )


# A segment of the bar: how important it is (0: always shown) and its versions, longest
# first. What does not fit is shortened, then dropped, least important first, so a narrow
# terminal never shows half a number.
Segment = tuple[int, list[Text]]


def _t(*parts: tuple[str, str]) -> Text:
    t = Text(no_wrap=True, end="")
    for text, style in parts:
        t.append(text, style)
    return t


def _segments(info: StatusInfo) -> list[Segment]:
    out: list[Segment] = []
    if info.paused:
        out.append((0, [_t((f" ⏸ PAUSED +{fmt_count(info.paused_new)} ", "bold black on yellow"))]))
    else:
        label = " ▶ LIVE " if info.following else " ▷ SCROLLED "
        out.append((0, [_t((label, "bold reverse"))]))
    if info.held:  # held messages wait for a decision: never left out
        held = f" ⏸ {fmt_count(info.held)} HELD (I) "  # I: the intercept view
        out.append((0, [_t((held, "bold black on yellow"))]))
    if info.source_state != "live":
        out.append((0, [_t((f" {safe_text(info.source_state)} ", "bold white on red3"))]))
    out.append((1, [_t((safe_text(info.address), "bold"))]))
    if info.instances:  # a Redis source: each proxy instance, a gone one standing out
        out.append(_instances(info.instances))
    if info.tap:
        tap = safe_text(info.tap)
        short = safe_text(os.path.basename(info.tap) or info.tap)
        out.append((3, [_t(("tap ", "dim"), (tap, "")), _t(("tap ", "dim"), (short, ""))]))
    msgs = f"{fmt_count(info.messages)} msgs"
    out.append((1, [_t((msgs + " ", ""), (fmt_bytes(info.total_bytes), "dim")), _t((msgs, ""))]))
    out.append((2, [_t((fmt_rate(info.rate), "bold"))]))
    fill = f"{fmt_count(info.buffered)}/{fmt_count(info.max_items)}"
    sizes = f" {fmt_bytes(info.buffer_bytes)}/{fmt_bytes(info.max_bytes)}"
    out.append((5, [_t(("buffer " + fill, ""), (sizes, "dim")), _t(("buf " + fill, ""))]))
    out.append(
        (
            2 if info.evicted else 6,
            [_t((f"evicted {fmt_count(info.evicted)}", "bold yellow" if info.evicted else "dim"))],
        )
    )
    out.append(
        (
            2 if info.missed else 6,
            [_t((f"missed {fmt_count(info.missed)}", "bold red" if info.missed else "dim"))],
        )
    )
    if info.filtered:
        out.append((1, [_t(("filtered", "bold cyan"))]))
    return out


def _instances(instances: tuple[tuple[str, str], ...]) -> Segment:
    """``app-1 ● app-2 gone``, or shorter ``1 up ● app-2 gone``: an instance that is not
    up is never left out before the ones that are."""
    full = Text(no_wrap=True, end="")
    short = Text(no_wrap=True, end="")
    up = sum(1 for _, state in instances if state == "up")
    if up:
        short.append(f"{up} up ●", "green")
    for name, state in instances:
        if full:
            full.append(" ")
        if state == "up":
            full.append(f"{safe_text(name)} ●", "green")
            continue
        full.append(f"{safe_text(name)} {safe_text(state)}", "bold white on red3")
        if short:
            short.append(" ")
        short.append(f"{safe_text(name)} {safe_text(state)}", "bold white on red3")
    return (1 if up < len(instances) else 3, [full, short])


SEP = " │ "


def status_text(info: StatusInfo, width: int | None = None) -> Text:
    """The bar's line, fitted to ``width`` cells (None: everything, as long as it is)."""
    segs = _segments(info)
    chosen = [0] * len(segs)  # the version of each segment shown; -1: dropped

    def length() -> int:
        shown = [segs[i][1][v] for i, v in enumerate(chosen) if v >= 0]
        # the badges are followed by a space, the others separated by " │ "
        badges = sum(1 for i, v in enumerate(chosen) if v >= 0 and segs[i][0] == 0)
        return sum(t.cell_len for t in shown) + badges + len(SEP) * max(0, len(shown) - badges - 1)

    if width is not None:
        order = sorted(range(len(segs)), key=lambda i: (-segs[i][0], -i))
        while length() > width:
            for i in order:  # shorten first, least important first
                if segs[i][0] and 0 <= chosen[i] < len(segs[i][1]) - 1:
                    chosen[i] += 1
                    break
            else:
                for i in order:  # then drop
                    if segs[i][0] and chosen[i] >= 0:
                        chosen[i] = -1
                        break
                else:
                    break
    t = Text(no_wrap=True, overflow="ellipsis", end="")
    first = True
    for (prio, versions), v in zip(segs, chosen, strict=True):
        if v < 0:
            continue
        if prio == 0:
            t.append_text(versions[v])
            t.append(" ")
            continue
        if not first:
            t.append(SEP, "dim")
        first = False
        t.append_text(versions[v])
    return t


class StatusBar(Static):
    """One line at the bottom; ``show()`` re-renders only when the info changed."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info: StatusInfo | None = None
        self._width = 0

    def show(self, info: StatusInfo) -> None:
        width = self.size.width
        if info == self.info and width == self._width:
            return
        self.info = info
        self._width = width
        self.update(status_text(info, width or None))

    def on_resize(self) -> None:
        if self.info is not None:
            self.show(self.info)
