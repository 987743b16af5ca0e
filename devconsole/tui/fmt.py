"""Styling of the TUI: the Rich style strings of connection states and opcode badges,
and text cursors that do not blink (``steady_cursors``).

What the text says (bytes, times, durations, opcode names, arrows) is
``devconsole.text``; styles here never contain payload.
"""

from __future__ import annotations

from textual.dom import DOMNode
from textual.widgets import Input, TextArea

# (state -> style) colours of the connection state badges. Styles are Rich style strings
# so they can be used in Text.append().
STATE_STYLES: dict[str, str] = {
    "connecting": "bold yellow",
    "open": "bold green",
    "closing": "bold dark_orange",
    "closed": "grey62",
    "refused": "bold white on red3",
    "killed": "bold white on magenta",
    "half-open": "bold black on yellow",
}

# (badge -> style): the labels are ``devconsole.text.BADGES``.
BADGE_STYLES: dict[str, str] = {
    "TXT": "bold cyan",
    "BIN": "bold magenta",
    "PING": "bold blue",
    "PONG": "bold blue",
    "CLOSE": "bold red",
    "CONT": "bold",
}


def steady_cursors(root: DOMNode) -> None:
    """The text cursors under ``root`` do not blink: a blinking cursor redraws its screen
    twice a second (CPU, flicker over SSH) and makes screenshots depend on the moment."""
    for i in root.query(Input):
        i.cursor_blink = False
    for t in root.query(TextArea):
        t.cursor_blink = False
