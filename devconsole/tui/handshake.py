"""The handshake inspector: a pure lint of an upgrade exchange, and the screen showing it.

``lint_handshake()`` is plain Python (no Textual) so the classic mistakes it flags are
unit-tested directly: no credentials at all, a subprotocol or extension the two sides do
not agree on, ``ws://`` to a remote host, and what a refused status usually means.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from devconsole.decoders import safe_text
from devconsole.model import Connection, Handshake, close_code_meaning
from devconsole.tui.fmt import STATE_STYLES, fmt_datetime, fmt_duration, human_bytes

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding about a handshake. ``topic`` ties it to the lines it is shown next to:
    auth, query, subprotocol, extensions, scheme, origin, version, status."""

    level: Level
    topic: str
    message: str


# Query parameter / subprotocol names that usually carry a credential.
_TOKEN_EXACT = frozenset(
    {"key", "sig", "sid", "pass", "pwd", "hmac", "otp", "bearer", "access", "k"}
)
_TOKEN_PARTS = (
    "token",
    "auth",
    "jwt",
    "ticket",
    "session",
    "secret",
    "signature",
    "apikey",
    "accesskey",
    "password",
    "passwd",
    "credential",
    "bearer",
)
_JWT_RE = re.compile(r"^eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.")


def is_token_like(name: str) -> bool:
    """True for parameter names that usually carry a credential (token, access_token,
    ticket, auth, jwt, api-key, sig, session, ...)."""
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    if not n:
        return False
    return n in _TOKEN_EXACT or any(part in n for part in _TOKEN_PARTS)


def _subprotocol_carries_credential(proto: str) -> bool:
    # e.g. "access_token, <jwt>" or Kubernetes' "base64url.bearer.authorization.k8s.io.<t>"
    return is_token_like(proto) or bool(_JWT_RE.match(proto))


def is_loopback_host(host: str) -> bool:
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _host_of(hs: Handshake) -> str:
    try:
        host = urlsplit(hs.url).hostname
    except ValueError:
        host = None
    if host:
        return host
    server = hs.server
    if server.startswith("["):
        return server[1 : server.find("]")] if "]" in server else server
    return server.rsplit(":", 1)[0] if server.count(":") == 1 else server


def _ext_name(ext: str) -> str:
    return ext.split(";", 1)[0].strip().lower()


STATUS_EXPLANATIONS: dict[int, str] = {
    400: "400 Bad Request: the server rejected the upgrade request itself (missing or bad "
    "Sec-WebSocket-Key / Sec-WebSocket-Version, or no 'Connection: Upgrade').",
    401: "401 Unauthorized: the server wants credentials. Check the cookie, the "
    "Authorization header or the token query parameter the client should send.",
    403: "403 Forbidden: credentials were rejected, or the Origin is not allowed "
    "(many servers check Origin on WebSocket upgrades).",
    404: "404 Not Found: there is no WebSocket endpoint at this path. Check the path, "
    "its prefix and the trailing slash.",
    405: "405 Method Not Allowed: the endpoint does not accept GET upgrades.",
    426: "426 Upgrade Required: the server wants another protocol version "
    "(Sec-WebSocket-Version 13) or a TLS connection (wss://).",
    429: "429 Too Many Requests: the server is rate-limiting connection attempts; check "
    "the client's reconnect backoff.",
    200: "200 OK instead of 101: the server does not speak WebSocket at this path (a "
    "normal HTTP handler or an SPA fallback page answered), or a proxy in front of it "
    "dropped the Upgrade/Connection headers.",
    500: "500 Internal Server Error: the server failed while handling the upgrade.",
    502: "502 Bad Gateway: a proxy or load balancer could not reach the WebSocket "
    "backend (down, or it does not forward upgrades).",
    503: "503 Service Unavailable: the server is down, overloaded or restarting.",
    504: "504 Gateway Timeout: the backend did not answer the upgrade in time.",
}


def explain_status(hs: Handshake) -> str | None:
    """Why an upgrade that did not get a 101 failed, in one sentence; None for a 101."""
    status = hs.status
    if status is None:
        if hs.error:
            return f"No response from the server: {hs.error}."
        return None
    if status == 101:
        return None
    if status in STATUS_EXPLANATIONS:
        return STATUS_EXPLANATIONS[status]
    if 300 <= status < 400:
        location = hs.response_header("location")
        where = f" to {location}" if location else ""
        return (
            f"{status} redirect{where}: WebSocket clients do not follow redirects; "
            "connect to the final URL."
        )
    if 200 <= status < 300:
        return (
            f"{status} instead of 101: the server answered as a plain HTTP endpoint, "
            "it does not speak WebSocket at this path."
        )
    if 400 <= status < 500:
        return f"{status}: the server refused the upgrade request (client error)."
    if 500 <= status < 600:
        return f"{status}: the server or a proxy in front of it failed (server error)."
    return f"{status}: not a WebSocket upgrade response."


def lint_handshake(hs: Handshake) -> list[Flag]:
    """Classic handshake problems, most severe first."""
    flags: list[Flag] = []
    accepted = hs.status == 101

    status_note = explain_status(hs)
    if status_note is not None:
        flags.append(Flag("error", "status", status_note))

    # credentials
    has_cookie = bool(hs.cookies) or hs.request_header("cookie") is not None
    has_authz = hs.request_header("authorization") is not None
    query_creds = [k for k, _ in hs.query if is_token_like(k)]
    proto_creds = [p for p in hs.requested_subprotocols if _subprotocol_carries_credential(p)]
    if not (has_cookie or has_authz or query_creds or proto_creds):
        flags.append(
            Flag(
                "warning",
                "auth",
                "No credentials: no cookie, no Authorization header and no token-like "
                "query parameter (token, access_token, ticket, auth, jwt, key, sig...).",
            )
        )
    if query_creds:
        names = ", ".join(dict.fromkeys(query_creds))
        flags.append(
            Flag(
                "info",
                "query",
                f"Credential in the URL query ({names}): URLs end up in server and proxy "
                "logs; keep such tickets short-lived.",
            )
        )

    # negotiation (only meaningful once the server accepted the upgrade)
    requested = hs.requested_subprotocols
    if accepted:
        if requested and hs.subprotocol is None:
            flags.append(
                Flag(
                    "error",
                    "subprotocol",
                    f"Subprotocol requested ({', '.join(requested)}) but the server "
                    "accepted none: browsers fail such a connection.",
                )
            )
        elif hs.subprotocol is not None and hs.subprotocol not in requested:
            asked = ", ".join(requested) if requested else "none"
            flags.append(
                Flag(
                    "error",
                    "subprotocol",
                    f"The server accepted subprotocol {hs.subprotocol!r} that the client "
                    f"did not request (requested: {asked}); the client must fail the "
                    "connection (RFC 6455 4.1).",
                )
            )
        asked_ext = {_ext_name(e) for e in hs.requested_extensions}
        extra = [e for e in hs.extensions if _ext_name(e) not in asked_ext]
        if extra:
            flags.append(
                Flag(
                    "error",
                    "extensions",
                    f"The server accepted extension(s) the client did not offer: "
                    f"{', '.join(extra)} (RFC 6455 9.1: the client must fail).",
                )
            )

    version = hs.request_header("sec-websocket-version")
    if version is None:
        flags.append(
            Flag("error", "version", "No Sec-WebSocket-Version header: not a valid upgrade.")
        )
    elif version.strip() != "13":
        flags.append(
            Flag(
                "error",
                "version",
                f"Sec-WebSocket-Version is {version!r}; servers expect 13 (RFC 6455).",
            )
        )

    if hs.scheme == "ws":
        host = _host_of(hs)
        if host and not is_loopback_host(host):
            flags.append(
                Flag(
                    "warning",
                    "scheme",
                    f"ws:// (not wss://) to the non-loopback host {host}: messages and "
                    "credentials travel in clear text, and browsers block ws:// from "
                    "https pages.",
                )
            )

    if hs.request_header("origin") is None:
        flags.append(
            Flag(
                "info",
                "origin",
                "No Origin header: not a browser client. Servers that check Origin "
                "refuse such upgrades.",
            )
        )

    order = {"error": 0, "warning": 1, "info": 2}
    flags.sort(key=lambda f: order[f.level])
    return flags


# --------------------------------------------------------------------------- rendering

LEVEL_STYLES: dict[str, str] = {
    "error": "bold white on red3",
    "warning": "bold black on yellow",
    "info": "bold white on blue",
}
LEVEL_ICONS: dict[str, str] = {"error": "✗", "warning": "⚠", "info": "i"}

# header name -> flag topic, to mark the header rows a flag is about
_HEADER_TOPICS: dict[str, str] = {
    "sec-websocket-protocol": "subprotocol",
    "sec-websocket-extensions": "extensions",
    "sec-websocket-version": "version",
    "origin": "origin",
    "cookie": "auth",
    "authorization": "auth",
}


def _t(value: str, style: str = "") -> Text:
    """Untrusted text (header values, paths, bodies), escaped, never parsed as markup."""
    return Text(safe_text(value), style=style)


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _kv_table(
    rows: Iterable[tuple[str, str]], flagged: dict[str, Flag] | None = None
) -> Table | Text:
    rows = list(rows)
    if not rows:
        return Text("  (none)", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False, expand=False)
    table.add_column("mark", width=1, no_wrap=True)
    table.add_column("name", style="bold", no_wrap=True, max_width=40)
    table.add_column("value", overflow="fold")
    for name, value in rows:
        flag = (flagged or {}).get(_HEADER_TOPICS.get(name.lower(), ""))
        mark = Text(LEVEL_ICONS[flag.level], style=LEVEL_STYLES[flag.level]) if flag else Text()
        table.add_row(mark, _t(name), _t(value))
    return table


def _flags_table(flags: list[Flag]) -> Table:
    """Badge + message, the message wrapping under itself (a hanging indent)."""
    grid = Table.grid(padding=(0, 1), pad_edge=True)
    grid.add_column(no_wrap=True, min_width=11)
    grid.add_column(ratio=1)
    for flag in flags:
        grid.add_row(
            Text(f" {LEVEL_ICONS[flag.level]} {flag.level.upper()} ", LEVEL_STYLES[flag.level]),
            Text(safe_text(flag.message)),
        )
    return grid


def _state_text(conn: Connection) -> Text:
    text = Text()
    text.append(f" {conn.state} ", STATE_STYLES.get(conn.state, "bold"))
    if conn.close_code is not None or conn.closed_by:
        text.append("  close ")
        if conn.close_code is not None:
            text.append(f"{conn.close_code} {close_code_meaning(conn.close_code)}")
        if conn.close_reason:
            text.append(" reason ")
            text.append(_t(repr(conn.close_reason)))
        if conn.closed_by:
            text.append(f" (by {conn.closed_by})")
    return text


def handshake_renderable(
    conn: Connection, number: int | None = None, tz: _dt.tzinfo | None = None
) -> RenderableType:
    """Everything about one upgrade exchange, as Rich renderables built from Text objects
    (never markup strings: header values and bodies are untrusted)."""
    hs = conn.handshake
    flags = lint_handshake(hs)
    by_topic: dict[str, Flag] = {}
    for f in flags:
        by_topic.setdefault(f.topic, f)
    parts: list[RenderableType] = []

    title = Text()
    if number is not None:
        title.append(f"#{number} ", "bold")
    title.append(_t(hs.url, "bold"))
    parts.append(title)
    summary = Text()
    summary.append_text(_state_text(conn))
    summary.append("  client ")
    summary.append(_t(hs.client, "bold"))
    summary.append("  server ")
    summary.append(_t(hs.server, "bold"))
    summary.append(f"  started {fmt_datetime(hs.ts, tz)}")
    if hs.ts_response is not None:
        summary.append(f"  answered in {fmt_duration(max(0.0, hs.ts_response - hs.ts))}")
    parts.append(summary)
    for err in conn.errors:
        parts.append(_t(f"  protocol error: {err}", "red"))

    parts.append(_section(f"Flags ({len(flags)})"))
    if flags:
        parts.append(_flags_table(flags))
    else:
        parts.append(Text("  ✓ nothing to report", style="green"))

    request_at = len(parts)
    parts.append(_section("Request"))
    line = Text("  ")
    line.append(_t(hs.method, "bold"))
    line.append(" ")
    target = hs.path
    if hs.query:
        target += "?" + "&".join(f"{k}={v}" if v else k for k, v in hs.query)
    line.append(_t(target))
    line.append(" ")
    line.append(_t(hs.http_version))
    parts.append(line)
    parts.append(_kv_table(hs.request_headers, by_topic))

    parts.append(_section(f"Query parameters ({len(hs.query)})"))
    if hs.query:
        qtable = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        qtable.add_column("name", style="bold", no_wrap=True, max_width=40)
        qtable.add_column("value", overflow="fold")
        qtable.add_column("", no_wrap=True)
        for k, v in hs.query:
            note = Text("credential?", style="yellow") if is_token_like(k) else Text()
            qtable.add_row(_t(k), _t(v), note)
        parts.append(qtable)
    else:
        parts.append(Text("  (none)", style="dim"))

    parts.append(_section(f"Cookies ({len(hs.cookies)})"))
    if hs.cookies:
        ctable = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        ctable.add_column("name", style="bold", no_wrap=True, max_width=40)
        ctable.add_column("value", overflow="fold")
        ctable.add_column("size", justify="right", no_wrap=True)
        for k, v in hs.cookies:
            ctable.add_row(_t(k), _t(v), Text(str(len(v))))
        parts.append(ctable)
    else:
        parts.append(Text("  (none)", style="dim"))

    parts.append(_section("WebSocket negotiation"))
    neg = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    neg.add_column("", width=1, no_wrap=True)
    neg.add_column("", style="bold", no_wrap=True)
    neg.add_column("requested", overflow="fold")
    neg.add_column("accepted", overflow="fold")

    def mark(topic: str) -> Text:
        f = by_topic.get(topic)
        return Text(LEVEL_ICONS[f.level], style=LEVEL_STYLES[f.level]) if f else Text()

    def joined(values: list[str]) -> Text:
        return _t(", ".join(values)) if values else Text("-", style="dim")

    origin = hs.request_header("origin")
    neg.add_row(mark("origin"), Text("Origin"), _t(origin) if origin else Text("-"), Text(""))
    neg.add_row(
        mark("subprotocol"),
        Text("Subprotocol"),
        joined(hs.requested_subprotocols),
        _t(hs.subprotocol) if hs.subprotocol else Text("-", style="dim"),
    )
    neg.add_row(
        mark("extensions"),
        Text("Extensions"),
        joined(hs.requested_extensions),
        joined(hs.extensions),
    )
    version = hs.request_header("sec-websocket-version")
    neg.add_row(mark("version"), Text("Version"), _t(version) if version else Text("-"), Text(""))
    neg.add_row(mark("scheme"), Text("Scheme"), _t(hs.scheme), Text(""))
    parts.append(neg)

    response_at = len(parts)
    parts.append(_section("Response"))
    if hs.status is None:
        parts.append(_t(f"  no response{': ' + hs.error if hs.error else ''}", "red"))
    else:
        status = Text("  ")
        style = "bold green" if hs.status == 101 else "bold red"
        status.append(f"{hs.status} ", style)
        status.append(_t(hs.reason, style))
        parts.append(status)
        parts.append(_kv_table(hs.response_headers))
        if hs.body or hs.body_size:
            shown = len(hs.body)
            heading = f"Body ({human_bytes(hs.body_size)}"
            if shown < hs.body_size:
                heading += f", first {human_bytes(shown)} shown"
            parts.append(_section(heading + ")"))
            body = hs.body.decode("utf-8", errors="replace")
            parts.append(Text(safe_text(body, keep_newlines=True)))
    if hs.status != 101:
        # A refused upgrade: what the server answered matters most, show it first.
        parts = parts[:request_at] + parts[response_at:] + parts[request_at:response_at]
    return Group(*parts)


class HandshakeScreen(ModalScreen[None]):
    """Request line, headers in order, cookies, query, negotiation, response and flags."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,h",
            "dismiss",
            "Close",
            id="handshake.close",
            tooltip="Close the handshake inspector",
        ),
    ]

    def __init__(
        self, conn: Connection, number: int | None = None, tz: _dt.tzinfo | None = None
    ) -> None:
        super().__init__()
        self.conn = conn
        self.number = number
        self.tz = tz

    def compose(self) -> ComposeResult:
        with Vertical(id="handshake-dialog"), VerticalScroll(id="handshake-body"):
            yield Static(
                handshake_renderable(self.conn, self.number, self.tz), id="handshake-content"
            )

    def on_mount(self) -> None:
        dialog = self.query_one("#handshake-dialog")
        dialog.border_title = "Handshake"
        dialog.border_subtitle = "esc close"
        self.query_one("#handshake-body").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
