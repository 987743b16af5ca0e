"""Which client made a connection: a short key a person can tell clients apart by.

Core module: no I/O. The backoff analysis groups the attempts of one client (one browser
tab, one app instance) into a *lineage* by User-Agent, cookies and client IP
(``devconsole.analysis.backoff.default_lineage_key``). That key holds cookie values and
is long; this module writes it short, without secrets:

- ``short_agent("Mozilla/5.0 (X11; Linux x86_64) ... Firefox/128.0")`` -> ``Firefox/128``,
  ``"Python/3.11 websockets/15.0.1"`` -> ``websockets/15``;
- ``client_key(handshake)`` -> ``"Firefox/128 session"``: the short agent and the names
  (never the values) of the cookies sent; ``":50001"`` (the client's port) when the
  upgrade had neither;
- ``ClientLabels`` gives each lineage its key, with ``(2)``, ``(3)``... appended when two
  lineages would otherwise read the same (two tabs of the same browser with different
  sessions), so the same client reads the same in the connections list, the report and
  its JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from devconsole.model import Connection, Handshake

# Products that say nothing about which client it is (every browser sends them).
_NOISE = frozenset(
    {"mozilla", "applewebkit", "khtml", "gecko", "like", "version", "mobile", "safari"}
)  # fmt: skip
# The browser's own token wins over the engine tokens it carries for compatibility.
_BROWSERS = ("Edg", "EdgA", "OPR", "SamsungBrowser", "Firefox", "FxiOS", "CriOS", "Chrome")
_PRODUCT = re.compile(r"([A-Za-z][\w.+-]*)/([\w.+-]+)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

MAX_AGENT = 24
MAX_KEY = 40


def _major(version: str) -> str:
    head = version.split(".", 1)[0]
    return head if head else version


def short_agent(ua: str | None) -> str:
    """A User-Agent as its telling product and major version: ``Firefox/128``,
    ``Chrome/126``, ``Safari/17``, ``websockets/15``, ``okhttp/4``; ``""`` for none."""
    if not ua:
        return ""
    ua = _CONTROL.sub("", ua).strip()
    products = _PRODUCT.findall(ua)
    if not products:
        word = ua.split()[0] if ua.split() else ""
        return word[:MAX_AGENT]
    names = {name: version for name, version in products}
    for browser in _BROWSERS:
        if browser in names:
            return f"{browser}/{_major(names[browser])}"[:MAX_AGENT]
    if "Safari" in names and "Version" in names:
        return f"Safari/{_major(names['Version'])}"
    telling = [(n, v) for n, v in products if n.lower() not in _NOISE]
    name, version = telling[-1] if telling else products[-1]
    return f"{name}/{_major(version)}"[:MAX_AGENT]


def _port(addr: str) -> str:
    _, sep, port = addr.rpartition(":")
    return port if sep and port.isdigit() else ""


def cookie_names(hs: Handshake) -> list[str]:
    """The names of the cookies sent with the upgrade, in order, once each."""
    names = [_CONTROL.sub("", k) for k, _ in hs.cookies if k]
    if not names and hs.request_header("cookie"):
        names = ["cookie"]
    return list(dict.fromkeys(names))


def client_key(hs: Handshake) -> str:
    """The short key of the client of an upgrade: agent and cookie names, else the port."""
    parts = []
    agent = short_agent(hs.request_header("user-agent"))
    if agent:
        parts.append(agent)
    names = cookie_names(hs)
    if names:
        parts.append(",".join(names))
    key = " ".join(parts)
    if not key:
        port = _port(hs.client)
        return f":{port}" if port else (hs.client or "?")
    return key if len(key) <= MAX_KEY else key[: MAX_KEY - 1] + "…"


class ClientLabels:
    """The key of each lineage, made unique: the first lineage with a given key keeps it,
    the next ones read ``key (2)``, ``key (3)``. Feed connections in their order of
    appearance (``label``), so labels never change once given."""

    def __init__(self, lineage: Callable[[Connection], str]) -> None:
        self.lineage = lineage
        self._labels: dict[str, str] = {}  # lineage key -> label
        self._used: dict[str, int] = {}  # key -> lineages that have it

    def label(self, conn: Connection) -> str:
        lin = self.lineage(conn)
        label = self._labels.get(lin)
        if label is None:
            key = client_key(conn.handshake)
            n = self._used.get(key, 0) + 1
            self._used[key] = n
            label = self._labels[lin] = key if n == 1 else f"{key} ({n})"
        return label

    def __len__(self) -> int:
        return len(self._labels)
