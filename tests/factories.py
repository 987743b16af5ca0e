"""Builders of model objects for tests: one place for a Handshake's many fields."""

from __future__ import annotations

from typing import Any

from devconsole.model import Handshake


def make_handshake(conn: str = "c1", ts: float = 1.0, **overrides: Any) -> Handshake:
    """A 101 upgrade of ``ws://example.com/<conn>``; any field can be overridden."""
    fields: dict[str, Any] = dict(
        conn=conn,
        ts=ts,
        client="127.0.0.1:5000",
        server="example.com:80",
        scheme="ws",
        url=f"ws://example.com/{conn}",
        method="GET",
        path=f"/{conn}",
        query=[],
        http_version="HTTP/1.1",
        request_headers=[("Upgrade", "websocket")],
        cookies=[],
        status=101,
        reason="Switching Protocols",
        ts_response=ts + 0.01,
    )
    fields.update(overrides)
    return Handshake(**fields)
