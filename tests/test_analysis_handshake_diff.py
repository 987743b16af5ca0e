"""The handshake diff: what an upgrade request lacks, adds or changes compared with an
accepted one on the same endpoint, its choice of reference, and the likely cause of a
refusal it leads to."""

from __future__ import annotations

import json

from devconsole.analysis.handshake_diff import (
    ReferenceIndex,
    auto_diff,
    diff_handshakes,
    likely_cause,
    newest_connection,
    reference_candidates,
    reference_for,
    render_diff_text,
)
from devconsole.analysis.secrets import fingerprint
from devconsole.model import Connection, ConnState
from devconsole.samples import T0, handshake

SESSION = "alice-7f3a9c2e41d0"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def conn(cid: str, **kw) -> Connection:
    hs = handshake(cid, **kw)
    state = ConnState.REFUSED if hs.status not in (101, None) else ConnState.OPEN
    return Connection(cid, hs, state=state)


def good(**kw):
    kw.setdefault("cookies", (("session", SESSION),))
    kw.setdefault("origin", "http://localhost:3000")
    kw.setdefault("conn", "1")
    return handshake(path="/app", **kw)


# ------------------------------------------------------------------ the rules


def test_missing_cookie_and_different_origin_exactly() -> None:
    ref = good()
    this = handshake("2", path="/app", cookies=(), origin="http://127.0.0.1:5173", status=403)
    d = diff_handshakes(this, ref).to_dict()
    assert d["reference"] == "1" and d["conn"] == "2"
    assert d["missing"] == {
        "cookies": ["session"],
        "headers": [],
        "query": [],
        "subprotocols": [],
        "extensions": [],
    }
    assert d["extra"] == {k: [] for k in d["extra"]}
    assert d["different"]["headers"] == [
        ["Origin", "http://127.0.0.1:5173", "http://localhost:3000"]
    ]
    assert all(not v for k, v in d["different"].items() if k != "headers")


def test_identical_requests_have_no_difference_despite_the_nonce() -> None:
    ref = good()
    this = good(conn="2")
    # another Sec-WebSocket-Key and a trace id: different on every request by design
    this.request_headers = [
        (k, "b3RoZXIgbm9uY2U=" if k == "Sec-WebSocket-Key" else v) for k, v in this.request_headers
    ] + [("traceparent", "00-abc-01")]
    assert this.request_header("sec-websocket-key") != ref.request_header("sec-websocket-key")
    d = diff_handshakes(this, ref)
    assert not d
    assert d.same > 5
    assert "no difference" in render_diff_text(d)


def test_headers_by_name_case_insensitive_duplicates_kept() -> None:
    ref = good(extra_headers=[("X-Trace", "one"), ("X-Trace", "two"), ("X-A", "1"), ("X-A", "2")])
    this = handshake(
        "2",
        path="/app",
        cookies=(("session", SESSION),),
        origin=None,
        extra_headers=[
            ("origin", "http://localhost:3000"),  # same header, other case: no change
            ("x-trace", "two"),  # pairs off with the reference's second X-Trace
            ("X-New", "v"),
            ("X-New", "w"),
        ],
    )
    d = diff_handshakes(this, ref)
    assert d.names("missing", "headers") == ["X-Trace", "X-A", "X-A"]
    assert [c.ref_value for c in d.of("missing", "headers")] == ["one", "1", "2"]
    assert d.names("extra", "headers") == ["X-New", "X-New"]
    assert not d.of("different")
    # one of two values differs: "different", spelled as this request spelled it
    this2 = handshake(
        "3",
        path="/app",
        cookies=(("session", SESSION),),
        origin="http://localhost:3000",
        extra_headers=[("x-trace", "one"), ("x-trace", "three"), ("X-A", "1"), ("X-A", "2")],
    )
    d2 = diff_handshakes(this2, ref)
    assert d2.to_dict()["different"]["headers"] == [["x-trace", "three", "two"]]
    assert not d2.of("missing") and not d2.of("extra")


def test_cookies_query_subprotocols_extensions() -> None:
    ref = good(
        cookies=(("session", SESSION), ("theme", "dark")),
        query=[("room", "lobby"), ("v", "2")],
        protocols=["chat.v2", "chat.v1"],
        offered_extensions=["permessage-deflate; client_max_window_bits"],
    )
    this = handshake(
        "2",
        path="/app",
        origin="http://localhost:3000",
        cookies=(("Session", SESSION), ("theme", "light")),  # cookie names keep their case
        query=[("room", "ops")],
        protocols=["chat.v1"],
        offered_extensions=["permessage-deflate; server_no_context_takeover", "x-webkit"],
    )
    d = diff_handshakes(this, ref).to_dict(show_secrets=True)
    assert d["missing"]["cookies"] == ["session"]
    assert d["extra"]["cookies"] == ["Session"]
    assert d["different"]["cookies"] == [["theme", "light", "dark"]]
    assert d["missing"]["query"] == ["v"]
    assert d["different"]["query"] == [["room", "ops", "lobby"]]
    assert d["missing"]["subprotocols"] == ["chat.v2"]
    assert d["extra"]["extensions"] == ["x-webkit"]
    assert d["different"]["extensions"] == [
        [
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits",
        ]
    ]
    # the Cookie, Sec-WebSocket-Protocol and -Extensions headers are not compared again
    assert d["different"]["headers"] == [] and d["missing"]["headers"] == []


def test_secrets_are_fingerprinted_unless_asked() -> None:
    ref = good(
        query=[("access_token", "tk_live_abcdefghijklmnop1234")],
        extra_headers=[("Authorization", f"Bearer {TOKEN}"), ("X-Api-Key", "k-123")],
        protocols=["access_token", TOKEN],
    )
    other = TOKEN[:-4] + "AAAA"
    this = handshake(
        "2",
        path="/app",
        cookies=(("session", "bob-000000000000"),),
        origin="http://localhost:3000",
        query=[("access_token", "tk_live_zzzzzzzzzzzzzzzz9999")],
        extra_headers=[("Authorization", f"Bearer {other}")],
        protocols=["access_token", other],
        status=403,
    )
    d = diff_handshakes(this, ref)
    hidden = json.dumps(d.to_dict()) + render_diff_text(d)
    for secret in (
        SESSION,
        "bob-000000000000",
        TOKEN,
        other,
        "k-123",
        "tk_live_abcdefghijklmnop1234",
    ):
        assert secret not in hidden
    assert fingerprint(SESSION) in hidden and fingerprint(other) in hidden
    assert f"Bearer ‹secret {fingerprint(other)}" in hidden  # the scheme stays readable
    # names are always shown
    assert d.names("missing", "headers") == ["X-Api-Key"]
    assert [c.name for c in d.of("different")] == [
        "session",
        "Authorization",
        "access_token",
        "access_token token",  # the token after the marker compares as one item
    ]
    shown = json.dumps(d.to_dict(show_secrets=True)) + render_diff_text(d, show_secrets=True)
    for secret in (SESSION, TOKEN, other, "k-123"):
        assert secret in shown
    # an ordinary value is never masked
    plain = diff_handshakes(
        good(conn="3", cookies=(("session", SESSION), ("theme", "dark"))), good()
    )
    assert plain.names("extra", "cookies") == ["theme"]
    assert "theme  dark" in render_diff_text(plain)


# ------------------------------------------------------------------ the reference


def test_reference_is_the_latest_accepted_before_on_the_same_endpoint() -> None:
    a = conn("1", path="/app", ts=T0)
    b = conn("2", path="/app", ts=T0 + 10)
    other_path = conn("3", path="/other", ts=T0 + 20)
    refused = conn("4", path="/app", status=403, ts=T0 + 30)
    later = conn("5", path="/app", ts=T0 + 40)
    other_host = conn("6", path="/app", host="elsewhere.test", ts=T0 + 35)
    everyone = [a, b, other_path, refused, later, other_host]
    assert reference_for(refused, everyone) is b
    assert reference_for(b, everyone) is a
    assert reference_for(a, everyone) is b  # nothing before: the first one after
    assert reference_for(other_path, everyone) is None
    assert reference_for(other_host, everyone) is None
    # refused upgrades are never a reference
    lone = conn("7", path="/solo", status=401, ts=T0)
    assert reference_for(lone, [lone, conn("8", path="/solo", status=403, ts=T0 - 5)]) is None
    # the candidates the user can pick from: same endpoint first, then the rest
    ids = [c.id for c in reference_candidates(refused, everyone)]
    assert ids[:3] == ["2", "1", "5"] and set(ids) == {"1", "2", "3", "5", "6"}
    found = auto_diff(refused, everyone)
    assert found is not None and found[0] is b


def test_reference_index_agrees_with_a_scan() -> None:
    conns = [
        conn(str(i), path="/app", ts=T0 + (i // 2), status=403 if i % 3 == 0 else 101)
        for i in range(1, 40)
    ]
    index = ReferenceIndex(conns)
    for c in conns:
        ref = index.reference_for(c)
        assert ref is not None and ref.id != c.id and ref.handshake.status == 101
        before = [
            o
            for o in conns
            if o.id != c.id and o.handshake.status == 101 and o.handshake.ts <= c.handshake.ts
        ]
        if before:
            assert ref.handshake.ts == max(o.handshake.ts for o in before)


def test_newest_connection_prefers_a_refusal_that_came_last() -> None:
    a = conn("1", ts=T0)
    b = conn("2", ts=T0 + 5)
    r = conn("3", status=403, ts=T0 + 4.999)  # started first, answered after #2's upgrade
    r.handshake.ts_response = T0 + 6
    assert newest_connection([a, r, b]) is r
    assert newest_connection([a, b]) is b
    assert newest_connection([]) is None


# ------------------------------------------------------------------ the likely cause


def test_likely_cause_leads_with_the_credentials() -> None:
    ref = Connection("1", good())
    refused = conn("2", path="/app", cookies=(), origin="http://127.0.0.1:5173", status=403)
    cause = likely_cause(refused, auto_diff(refused, [ref, refused])[1])  # type: ignore[index]
    assert cause is not None
    assert cause.startswith("403 Forbidden and no credentials were sent: cookie session missing")
    assert "(the accepted #1 sent it)" in cause
    assert cause.index("session") < cause.index("Origin")
    assert "http://127.0.0.1:5173" in cause and SESSION not in cause
    # without a reference to compare with
    assert likely_cause(refused) == (
        "403 Forbidden and no credentials were sent (no cookie, Authorization header or token)."
    )
    # credentials sent, but another value: expired?
    stale = conn(
        "3",
        path="/app",
        cookies=(("session", "old"),),
        status=401,
        reason="Unauthorized",
        origin="http://localhost:3000",
    )
    cause = likely_cause(stale, auto_diff(stale, [ref, stale])[1])  # type: ignore[index]
    assert cause is not None and cause.startswith("401 Unauthorized: credentials were sent")
    assert "cookie session differs from #1's" in cause
    # same credentials, other Origin: the Origin is the suspect
    cors = conn(
        "4", path="/app", cookies=(("session", SESSION),), status=403, origin="https://evil.test"
    )
    cause = likely_cause(cors, auto_diff(cors, [ref, cors])[1])  # type: ignore[index]
    assert cause is not None and "refuses this Origin (https://evil.test" in cause
    # an accepted upgrade that lacks nothing: nothing to say; a 503 is not about credentials
    assert likely_cause(ref) is None
    assert likely_cause(conn("5", status=503)) is None


def test_mask_handshake_hides_secret_values_everywhere_and_keeps_the_rest() -> None:
    from devconsole.analysis.handshake_diff import mask_handshake

    hs = handshake(
        cookies=(("session", SESSION), ("theme", "dark")),
        query=[("ticket", "tk_5f2a"), ("room", "lobby")],
        extra_headers=[("Authorization", f"Bearer {TOKEN}"), ("X-Api-Key", "k-123")],
        protocols=["access_token", TOKEN],
    )
    m = mask_handshake(hs)
    text = repr(m)
    for secret in (SESSION, TOKEN, "tk_5f2a", "k-123"):
        assert secret not in text
    assert (
        m.url
        == f"wss://api.example.com/ws?ticket=‹secret {fingerprint('tk_5f2a')}, 7 chars›&room=lobby"
    )
    assert dict(m.cookies)["theme"] == "dark"
    assert (
        m.request_header("cookie")
        == f"session=‹secret {fingerprint(SESSION)}, 18 chars›; theme=dark"
    )
    assert m.request_header("authorization").startswith("Bearer ‹secret ")
    assert m.request_header("sec-websocket-protocol").startswith("access_token, ‹secret ")
    assert m.request_header("sec-websocket-key") == hs.request_header("sec-websocket-key")
    assert m.request_header("user-agent") == hs.request_header("user-agent")
    assert hs.cookies[0][1] == SESSION  # the original is untouched


def test_mask_handshake_url_encoding_paths_and_set_cookie() -> None:
    from devconsole.analysis.handshake_diff import mask_handshake

    # the URL carries the value percent-encoded, the query pairs decoded
    hs = handshake(
        query=[("token", "a+b/c=d"), ("room", "x y")],
        url="wss://api.example.com/ws/" + TOKEN + "?token=a%2Bb%2Fc%3Dd&room=x%20y",
        path="/ws/" + TOKEN,
        status=401,
        response_headers=[("Set-Cookie", "sid=s3cr3t-v4lue; Path=/; HttpOnly")],
    )
    m = mask_handshake(hs)
    assert "a%2Bb" not in m.url and "a+b/c=d" not in m.url and TOKEN not in m.url
    assert m.url.endswith(f"?token=‹secret {fingerprint('a+b/c=d')}, 7 chars›&room=x y")
    assert TOKEN not in m.path and m.path.startswith("/ws/‹secret ")
    assert m.response_headers == [
        ("Set-Cookie", f"sid=‹secret {fingerprint('s3cr3t-v4lue')}, 12 chars›; Path=/; HttpOnly")
    ]


def test_missing_credential_labels_agree_with_the_diff() -> None:
    from devconsole.analysis.handshake_diff import credential_items, missing_credential_labels

    refs = [
        good(),
        good(cookies=(("session", SESSION), ("theme", "dark"), ("theme", "light"))),
        good(
            query=[("access_token", "tk"), ("room", "a")],
            extra_headers=[("Authorization", "Bearer x"), ("X-Api-Key", "k"), ("X-Trace", "1")],
            protocols=["access_token", TOKEN, "chat.v2"],
        ),
    ]
    others = [
        handshake("2", path="/app", cookies=()),
        handshake("3", path="/app", cookies=(("theme", "dark"),)),
        handshake("4", path="/app", cookies=(("session", "x"),), query=[("access_token", "t")]),
        handshake(
            "5",
            path="/app",
            cookies=(("session", "x"),),
            extra_headers=[("authorization", "Basic y")],
            protocols=["chat.v2"],
        ),
    ]
    for ref in refs:
        for this in others:
            expected = list(
                dict.fromkeys(c.label for c in diff_handshakes(this, ref).missing_credentials)
            )
            assert missing_credential_labels(this, credential_items(ref)) == expected, (ref, this)
