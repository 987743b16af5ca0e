"""The handshake lint: the classic mistakes of an upgrade, flagged from its Handshake."""

from __future__ import annotations

import pytest

from devconsole.analysis.handshake import explain_status, is_loopback_host, lint_handshake
from devconsole.samples import handshake


def topics(hs) -> dict[str, str]:
    return {f.topic: f.level for f in lint_handshake(hs)}


def test_clean_handshake_has_no_flags() -> None:
    hs = handshake(protocols=["chat"], subprotocol="chat")
    assert lint_handshake(hs) == []


def test_no_credentials_flagged() -> None:
    hs = handshake(cookies=())
    assert topics(hs)["auth"] == "warning"
    # any one credential is enough
    assert "auth" not in topics(handshake(cookies=(), query=[("access_token", "x")]))
    assert "auth" not in topics(
        handshake(cookies=(), extra_headers=[("Authorization", "Bearer abc")])
    )
    assert "auth" not in topics(handshake(cookies=(("sid", "1"),)))
    # a token smuggled in Sec-WebSocket-Protocol (browsers cannot set headers)
    assert "auth" not in topics(
        handshake(cookies=(), protocols=["access_token", "eyJhbGciOi.eyJzdWIi.sig"])
    )


def test_credential_in_query_is_noted() -> None:
    flags = lint_handshake(handshake(cookies=(), query=[("ticket", "tk_1"), ("room", "a")]))
    query = [f for f in flags if f.topic == "query"]
    assert len(query) == 1
    assert "ticket" in query[0].message
    assert "room" not in query[0].message


def test_subprotocol_requested_not_accepted() -> None:
    hs = handshake(protocols=["graphql-transport-ws", "graphql-ws"], subprotocol=None)
    flag = next(f for f in lint_handshake(hs) if f.topic == "subprotocol")
    assert flag.level == "error"
    assert "graphql-transport-ws" in flag.message


def test_subprotocol_accepted_not_requested() -> None:
    assert topics(handshake(protocols=(), subprotocol="mqtt"))["subprotocol"] == "error"
    assert topics(handshake(protocols=["a"], subprotocol="b"))["subprotocol"] == "error"
    # a refused upgrade negotiates nothing: no subprotocol flag there
    assert "subprotocol" not in topics(handshake(protocols=["a"], status=403))


def test_extension_accepted_not_offered() -> None:
    assert topics(handshake(extensions=["permessage-deflate"]))["extensions"] == "error"
    ok = handshake(
        offered_extensions=["permessage-deflate; client_max_window_bits"],
        extensions=["permessage-deflate; server_no_context_takeover"],
    )
    assert "extensions" not in topics(ok)


@pytest.mark.parametrize(
    ("host", "flagged"),
    [
        ("api.example.com", True),
        ("10.0.0.5", True),
        ("localhost", False),
        ("app.localhost", False),
        ("127.0.0.1", False),
        ("127.1.2.3", False),
        ("[::1]", False),
    ],
)
def test_plain_ws_to_remote_host(host: str, flagged: bool) -> None:
    hs = handshake(scheme="ws", host=host)
    assert ("scheme" in topics(hs)) is flagged
    assert "scheme" not in topics(handshake(scheme="wss", host=host))


def test_loopback_helper() -> None:
    assert is_loopback_host("::1")
    assert not is_loopback_host("example.com")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "credentials"),
        (403, "Origin"),
        (426, "Sec-WebSocket-Version"),
        (200, "does not speak WebSocket"),
        (404, "no WebSocket endpoint"),
        (502, "backend"),
        (503, "down"),
        (500, "failed"),
        (599, "server error"),
        (418, "client error"),
        (204, "plain HTTP"),
    ],
)
def test_refused_status_explained(status: int, words: str) -> None:
    hs = handshake(status=status)
    flags = lint_handshake(hs)
    assert flags[0].topic == "status"
    assert flags[0].level == "error"
    assert words in flags[0].message


def test_redirect_and_no_response() -> None:
    hs = handshake(status=302, response_headers=[("Location", "https://login.example.com/")])
    assert "https://login.example.com/" in (explain_status(hs) or "")
    down = handshake(status=None, error="connection refused")
    assert "connection refused" in (explain_status(down) or "")
    assert explain_status(handshake()) is None


def test_version_and_origin() -> None:
    hs = handshake(origin=None)
    hs.request_headers = [
        (k, "8" if k == "Sec-WebSocket-Version" else v) for k, v in hs.request_headers
    ]
    t = topics(hs)
    assert t["version"] == "error"
    assert t["origin"] == "info"
    hs.request_headers = [h for h in hs.request_headers if h[0] != "Sec-WebSocket-Version"]
    assert topics(hs)["version"] == "error"


def test_flags_sorted_by_severity() -> None:
    hs = handshake(status=401, cookies=(), scheme="ws", origin=None)
    levels = [f.level for f in lint_handshake(hs)]
    assert levels == sorted(levels, key=["error", "warning", "info"].index)


def test_refused_without_credentials_leads_with_that_and_demotes_the_origin() -> None:
    flags = lint_handshake(handshake(cookies=(), status=403, origin="http://127.0.0.1:5173"))
    assert flags[0].topic == "status"
    assert flags[0].message.startswith("403 Forbidden and no credentials were sent")
    assert "Origin" not in flags[0].message
    assert flags[-1].topic == "origin" and flags[-1].level == "info"
    assert "http://127.0.0.1:5173" in flags[-1].message
    # with credentials, a 403 still names both usual causes in its explanation
    with_cookie = lint_handshake(handshake(status=403))
    assert "credentials were rejected" in with_cookie[0].message
    assert "Origin" in with_cookie[0].message
