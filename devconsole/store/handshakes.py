"""What ``devconsole handshake`` prints: one upgrade exchange, or its diff against another,
as text or JSON (docs/cli.md).

Secret values (cookies, tokens, credential headers and query parameters) are their name
and a fingerprint (``analysis.handshake_diff.mask_handshake``) unless ``show_secrets``.
Text is plain: untrusted values go through ``safe_text``, so a header cannot move the
cursor or colour the terminal.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from devconsole.analysis.handshake import lint_handshake
from devconsole.analysis.handshake_diff import (
    HandshakeDiff,
    diff_summary,
    likely_cause,
    mask_handshake,
    render_diff_text,
)
from devconsole.decoders import safe_text
from devconsole.model import Connection, HandshakeEvent, RefusedEvent
from devconsole.store.export import event_dict
from devconsole.text import conn_tag, fmt_datetime, fmt_duration

_ICONS = {"error": "✗", "warning": "⚠", "info": "i"}


def handshake_json(
    conn: Connection, *, show_secrets: bool = False, diff: HandshakeDiff | None = None
) -> dict[str, Any]:
    """The ``tail --json`` object of the connection's handshake (``"event"``:
    ``"handshake"`` or ``"refused"``), with ``state``, the lint's ``flags`` and the
    ``likely_cause`` of a refusal."""
    hs = conn.handshake if show_secrets else mask_handshake(conn.handshake)
    ev = RefusedEvent(hs) if conn.refused else HandshakeEvent(hs)
    out = event_dict(ev, redact=False) or {}
    out["state"] = conn.state
    out["flags"] = [
        {"level": f.level, "topic": f.topic, "message": f.message}
        for f in lint_handshake(conn.handshake)
    ]
    out["likely_cause"] = likely_cause(conn, diff)
    return out


def diff_json(
    conn: Connection, diff: HandshakeDiff, *, show_secrets: bool = False
) -> dict[str, Any]:
    """``HandshakeDiff.to_dict`` and the ``likely_cause`` it leads to."""
    out = diff.to_dict(show_secrets)
    out["likely_cause"] = likely_cause(conn, diff)
    return out


def _s(value: str) -> str:
    return safe_text(value)


def _title(conn: Connection, tz: _dt.tzinfo | None, url: str) -> list[str]:
    hs = conn.handshake
    line = f"{conn.state}"
    if hs.status is not None:
        line += f"  HTTP {hs.status} {_s(hs.reason)}".rstrip()
    elif hs.error:
        line += f"  {_s(hs.error)}"
    line += f"  client {_s(hs.client)}  server {_s(hs.server)}  {fmt_datetime(hs.ts, tz)}"
    if hs.ts_response is not None:
        line += f"  answered in {fmt_duration(max(0.0, hs.ts_response - hs.ts))}"
    return [f"{conn_tag(conn.id)} {_s(url)}", line]


def handshake_text(
    conn: Connection,
    tz: _dt.tzinfo | None = None,
    *,
    show_secrets: bool = False,
    diff: HandshakeDiff | None = None,
) -> str:
    """The exchange as an HTTP client prints it (request, then response and body), after
    a summary line, the likely cause and the lint's flags."""
    real = conn.handshake
    hs = real if show_secrets else mask_handshake(real)
    lines = _title(conn, tz, hs.url)
    cause = likely_cause(conn, diff)
    if cause:
        lines.append(f"likely cause: {_s(cause)}")
    flags = lint_handshake(real)
    if flags:
        lines.append("")
        lines.extend(f"{_ICONS[f.level]} {f.level:<7}  {_s(f.message)}" for f in flags)
    lines.append("")
    target = hs.path
    if hs.query:
        target += "?" + "&".join(f"{k}={v}" if v else k for k, v in hs.query)
    lines.append(f"> {_s(hs.method)} {_s(target)} {_s(hs.http_version)}")
    lines.extend(f"> {_s(k)}: {_s(v)}" for k, v in hs.request_headers)
    lines.append("")
    if hs.status is None:
        lines.append(f"< no response{': ' + _s(hs.error) if hs.error else ''}")
    else:
        lines.append(f"< {_s(hs.http_version)} {hs.status} {_s(hs.reason)}".rstrip())
        lines.extend(f"< {_s(k)}: {_s(v)}" for k, v in hs.response_headers)
        if hs.body:
            lines.append("")
            lines.append(
                safe_text(hs.body.decode("utf-8", "replace"), keep_newlines=True).rstrip("\n")
            )
            if len(hs.body) < hs.body_size:
                lines.append(f"(first {len(hs.body)} of {hs.body_size} bytes)")
    if diff is not None:
        lines.append("")
        lines.append(
            f"diff against {conn_tag(diff.reference)}: {diff_summary(diff)} "
            f"(devconsole handshake {conn.id} --diff {diff.reference})"
        )
    return "\n".join(lines).rstrip("\n") + "\n"


def diff_text(
    conn: Connection,
    diff: HandshakeDiff,
    tz: _dt.tzinfo | None = None,
    *,
    show_secrets: bool = False,
) -> str:
    """A summary of the connection, the likely cause, then one line per change."""
    hs = conn.handshake if show_secrets else mask_handshake(conn.handshake)
    lines = _title(conn, tz, hs.url)
    cause = likely_cause(conn, diff)
    if cause:
        lines.append(f"likely cause: {_s(cause)}")
    lines.append("")
    return (
        "\n".join(lines)
        + "\n"
        + safe_text(render_diff_text(diff, show_secrets), keep_newlines=True)
    )
