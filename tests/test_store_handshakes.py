"""What ``devconsole handshake`` prints: text that cannot drive the terminal, secrets as
fingerprints unless asked, and the JSON shapes of docs/cli.md."""

from __future__ import annotations

import json

from devconsole.analysis.handshake_diff import diff_connections
from devconsole.analysis.secrets import fingerprint
from devconsole.model import Connection, ConnState
from devconsole.samples import EVIL_TEXT, T0, UTC, handshake
from devconsole.store.handshakes import diff_json, diff_text, handshake_json, handshake_text

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def _pair() -> tuple[Connection, Connection]:
    good = handshake(
        "1",
        path="/app",
        cookies=(("session", "alice-secret-value"),),
        extra_headers=[("Authorization", f"Bearer {TOKEN}")],
        query=[("access_token", "tk_123456"), ("room", "ops")],
    )
    bad = handshake(
        "2",
        path="/app",
        cookies=(),
        query=[("room", "ops")],
        extra_headers=[("X-Evil", EVIL_TEXT)],
        status=403,
        body=b'{"error":"forbidden"}\x1b[2J',
        ts=T0 + 3,
    )
    return Connection("1", good), Connection("2", bad, state=ConnState.REFUSED)


def test_handshake_text_is_safe_and_masks_secrets() -> None:
    good, bad = _pair()
    text = handshake_text(good, UTC)
    assert "alice-secret-value" not in text and TOKEN not in text and "tk_123456" not in text
    assert f"session=‹secret {fingerprint('alice-secret-value')}" in text
    assert "> Authorization: Bearer ‹secret " in text
    assert "?access_token=‹secret " in text and "room=ops" in text
    assert "< HTTP/1.1 101 Switching Protocols" in text
    shown = handshake_text(good, UTC, show_secrets=True)
    assert "alice-secret-value" in shown and TOKEN in shown
    refused = handshake_text(bad, UTC, diff=diff_connections(bad, good))
    assert "\x1b" not in refused and "\x9b" not in refused
    assert "[link=file:///etc/passwd]" in refused  # shown as it is, never interpreted
    assert refused.splitlines()[0] == "#2 wss://api.example.com/app?room=ops"
    assert "likely cause: 403 Forbidden and no credentials were sent" in refused
    assert "cookie session, header Authorization" in refused
    assert "diff against #1: 3 missing, 0 different, 1 extra" in refused


def test_json_shapes() -> None:
    good, bad = _pair()
    diff = diff_connections(bad, good)
    d = diff_json(bad, diff)
    assert set(d) == {"conn", "reference", "missing", "extra", "different", "likely_cause"}
    assert d["missing"]["cookies"] == ["session"]
    assert d["missing"]["headers"] == ["Authorization"]
    assert d["missing"]["query"] == ["access_token"]
    assert d["extra"]["headers"] == ["X-Evil"]
    assert "alice-secret-value" not in json.dumps(d)
    hs = handshake_json(bad, diff=diff)
    assert hs["event"] == "refused" and hs["state"] == "refused"
    assert hs["response"]["status"] == 403
    assert hs["flags"][0]["topic"] == "status"
    assert hs["likely_cause"] == d["likely_cause"]
    hs_good = handshake_json(good)
    assert "alice-secret-value" not in json.dumps(hs_good)
    assert "alice-secret-value" in json.dumps(handshake_json(good, show_secrets=True))


def test_diff_text() -> None:
    good, bad = _pair()
    text = diff_text(bad, diff_connections(bad, good), UTC)
    lines = text.splitlines()
    assert lines[0].startswith("#2 ")
    assert lines[1].startswith("refused  HTTP 403 Forbidden")
    assert lines[2].startswith("likely cause: ")
    assert "#2 compared with #1: 3 missing, 0 different, 1 extra" in text
    assert "\x1b" not in text
