"""The handshake the non-TUI tests start from, built by the one Handshake builder
(``devconsole.samples.handshake``)."""

from __future__ import annotations

from typing import Any

from devconsole.model import Handshake
from devconsole.samples import handshake


def make_handshake(conn: str = "c1", ts: float = 1.0, **overrides: Any) -> Handshake:
    """A plain 101 upgrade of ``ws://example.com/<conn>`` with an Upgrade header and
    nothing else; any field can be overridden."""
    fields: dict[str, Any] = dict(
        host="example.com",
        scheme="ws",
        path=f"/{conn}",
        client="127.0.0.1:5000",
        cookies=(),
        origin=None,
        url=f"ws://example.com/{conn}",
        query=[],
        request_headers=[("Upgrade", "websocket")],
        response_headers=[],
        reason="Switching Protocols",
        ts_response=ts + 0.01,
    )
    fields.update(overrides)
    return handshake(conn, ts=ts, **fields)
