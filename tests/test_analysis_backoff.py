from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole.analysis.backoff import (
    analyze_endpoints,
    client_ip,
    default_lineage_key,
    judge,
    split_runs,
)
from devconsole.model import (
    Connection,
    EndEvent,
    Handshake,
    HandshakeEvent,
    RefusedEvent,
    StateEvent,
)
from devconsole.session import Session
from tests.factories import make_handshake

_ids = itertools.count(1)


def hs(
    ts: float,
    *,
    path: str = "/feed",
    origin: str | None = "http://app.test",
    client: str = "10.0.0.5:40000",
    ua: str = "client/1.0",
    cookie: str | None = "session=abc",
    status: int = 101,
    ts_response: float | None = None,
) -> Handshake:
    headers = [("Host", "srv.test"), ("User-Agent", ua)]
    if origin is not None:
        headers.append(("Origin", origin))
    cookies: list[tuple[str, str]] = []
    if cookie is not None:
        headers.append(("Cookie", cookie))
        cookies = [tuple(p.strip().split("=", 1)) for p in cookie.split(";")]  # type: ignore[misc]
    return make_handshake(
        conn=f"c{next(_ids)}",
        ts=ts,
        client=client,
        server="srv.test:80",
        scheme="ws",
        url=f"ws://srv.test{path}",
        method="GET",
        path=path,
        query=[],
        http_version="HTTP/1.1",
        request_headers=headers,
        cookies=cookies,
        status=status,
        reason="",
        ts_response=ts_response if ts_response is not None else ts + 0.001,
    )


class Sim:
    """Builds a Session the way the capture addon would feed it."""

    def __init__(self) -> None:
        self.session = Session()

    def connect(self, ts: float, end: float | None = None, **kw: object) -> str:
        h = hs(ts, **kw)  # type: ignore[arg-type]
        self.session.apply(HandshakeEvent(h))
        if end is not None:
            self.session.apply(EndEvent(h.conn, end, clean=True, closed_by="server"))
        return h.conn

    def refuse(self, ts: float, ts_response: float, status: int = 503, **kw: object) -> str:
        h = hs(ts, status=status, ts_response=ts_response, **kw)  # type: ignore[arg-type]
        self.session.apply(RefusedEvent(h))
        return h.conn

    def kill(self, conn: str, ts: float) -> None:
        self.session.apply(StateEvent(conn, ts, "killed"))
        self.session.apply(EndEvent(conn, ts, clean=False, closed_by="proxy"))

    def endpoints(self, **kw: object) -> list:  # type: ignore[type-arg]
        return analyze_endpoints(self.session.connections.values(), **kw)  # type: ignore[arg-type]


def schedule(sim: Sim, start: float, delays: list[float], *, refuse_for: float = 0.002) -> float:
    """A connection killed at ``start``, then refused attempts after each delay; the last
    attempt succeeds. Returns the end of the last attempt."""
    conn = sim.connect(start - 30.0)
    sim.kill(conn, start)
    t = start
    for i, d in enumerate(delays):
        t += d
        if i < len(delays) - 1:
            sim.refuse(t, t + refuse_for)
            t += refuse_for
        else:
            sim.connect(t)
    return t


# --------------------------------------------------------------------------- endpoints


def test_known_exponential_schedule_is_measured_to_the_millisecond() -> None:
    sim = Sim()
    schedule(sim, 100.0, [0.3, 0.6, 1.2])
    (ep,) = sim.endpoints()
    assert ep.path == "/feed"
    assert ep.origin == "http://app.test"
    assert ep.connections == 4
    assert ep.refused == 2
    assert ep.reconnect_delays == pytest.approx([0.3, 0.6, 1.2], abs=0.001)
    b = ep.backoff
    assert b.pattern == "exponential"
    assert b.factor == pytest.approx(2.0, rel=0.01)
    assert not b.jitter
    assert b.cap is None
    assert (b.min, b.max) == pytest.approx((0.3, 1.2), abs=0.001)
    d = ep.to_dict()
    json.dumps(d)
    assert d["backoff"]["pattern"] == "exponential"
    assert d["reconnect_delays"] == pytest.approx([0.3, 0.6, 1.2], abs=0.001)


def test_storm() -> None:
    sim = Sim()
    schedule(sim, 10.0, [0.004, 0.006, 0.003, 0.005, 0.004, 0.007, 0.005])
    b = sim.endpoints()[0].backoff
    assert b.pattern == "storm"
    assert b.max is not None and b.max < 0.1


def test_fixed_interval_without_and_with_jitter() -> None:
    sim = Sim()
    t = 0.0
    for _ in range(6):  # each connection lives 1 s, the client comes back 2 s later
        sim.connect(t, t + 1.0)
        t += 3.0
    (ep,) = sim.endpoints()
    assert ep.reconnect_delays == pytest.approx([2.0] * 5)
    assert ep.backoff.pattern == "fixed"
    assert not ep.backoff.jitter

    rng = random.Random(5)
    delays = [2.0 * rng.uniform(0.8, 1.2) for _ in range(12)]
    b = judge(delays)
    assert b.pattern == "fixed"
    assert b.jitter


def test_exponential_with_jitter_and_cap() -> None:
    rng = random.Random(11)
    base = [0.5 * 2**i for i in range(5)] + [8.0] * 5  # 0.5 .. 8, then capped at 8
    delays = [min(d, 8.0) * rng.uniform(0.8, 1.2) for d in base]
    sim = Sim()
    schedule(sim, 50.0, delays)
    (ep,) = sim.endpoints()
    assert ep.reconnect_delays == pytest.approx(delays, abs=0.001)
    b = ep.backoff
    assert b.pattern == "exponential"
    assert b.jitter
    assert 1.6 <= (b.factor or 0) <= 2.5
    assert b.cap == pytest.approx(8.0, rel=0.2)


def test_exact_cap_without_jitter() -> None:
    b = judge([0.5, 1, 2, 4, 8, 8, 8, 8])
    assert b.pattern == "exponential"
    assert b.factor == pytest.approx(2.0)
    assert b.cap == pytest.approx(8.0)
    assert not b.jitter


def test_backoff_resets_after_success_form_runs() -> None:
    # 0.5, 1, 2, then a stable connection, then 0.5, 1, 2 again
    assert split_runs([0.5, 1, 2, 0.5, 1, 2]) == [[0.5, 1, 2], [0.5, 1, 2]]
    assert split_runs([1, 1, 1], [False, True, False]) == [[1], [1, 1]]
    b = judge([0.5, 1, 2, 0.5, 1, 2])
    assert (b.pattern, b.runs) == ("exponential", 2)
    assert b.factor == pytest.approx(2.0)


def test_reset_on_every_stable_connection_shows_as_fixed_base_delay() -> None:
    sim = Sim()
    t = 0.0
    for _ in range(5):
        sim.connect(t, t + 12.0)  # stable for 12 s, then the server restarts
        t += 12.5
    (ep,) = sim.endpoints()
    assert ep.reconnect_delays == pytest.approx([0.5] * 4)
    assert ep.backoff.pattern == "fixed"
    assert ep.backoff.runs == 4


def test_linear_and_irregular_and_trivial_series() -> None:
    lin = judge([1, 2, 3, 4, 5])
    assert lin.pattern == "linear"
    assert lin.step == pytest.approx(1.0)
    assert judge([]).pattern == "none"
    single = judge([0.7])
    assert (single.pattern, single.min, single.max) == ("single", 0.7, 0.7)
    assert judge([5.0, 0.4, 12.0, 3.0, 3.5, 0.7, 20.0, 2.0]).pattern == "irregular"


def test_lineages_keep_interleaved_clients_apart() -> None:
    sim = Sim()
    # Two clients of the same endpoint, different cookies, reconnecting on their own
    # schedules; interleaved in time.
    a, b = "session=alice", "session=bob"
    sim.connect(0.0, 10.0, cookie=a)
    sim.connect(0.5, 10.2, cookie=b)
    sim.connect(11.0, 20.0, cookie=a)  # alice: 1.0 s
    sim.connect(13.2, None, cookie=b)  # bob: 3.0 s
    sim.connect(21.0, None, cookie=a)  # alice: 1.0 s
    (ep,) = sim.endpoints()
    assert len(ep.lineages) == 2
    by_cookie = {lin.key.split("\x1f")[1]: lin.delays for lin in ep.lineages}
    assert by_cookie[a] == pytest.approx([1.0, 1.0])
    assert by_cookie[b] == pytest.approx([3.0])
    assert ep.reconnect_delays == pytest.approx([1.0, 3.0, 1.0])  # in the order they happened
    # two clients reconnected: the endpoint has no one backoff (each is judged apart)
    assert ep.backoff.pattern == "mixed"
    assert ep.to_dict()["reconnect_delays"] == "mixed"
    assert ep.to_dict()["backoff"]["see"] == "clients"


def test_endpoints_by_path_and_origin_and_custom_key() -> None:
    sim = Sim()
    sim.connect(0.0, 1.0, path="/chat")
    sim.connect(0.1, 1.0, path="/chat", origin="http://other.test")
    sim.connect(0.2, None, path="/ticker")
    sim.connect(2.0, None, path="/chat")
    eps = sim.endpoints()
    assert [(e.path, e.origin, e.connections) for e in eps] == [
        ("/chat", "http://app.test", 2),
        ("/chat", "http://other.test", 1),
        ("/ticker", "http://app.test", 1),
    ]
    assert eps[0].reconnect_delays == pytest.approx([1.0])
    # A key that ignores cookies merges the clients.
    sim2 = Sim()
    sim2.connect(0.0, 1.0, cookie="a=1")
    sim2.connect(1.5, None, cookie="a=2")
    assert sim2.endpoints()[0].reconnect_delays == []
    merged = sim2.endpoints(key=lambda c: client_ip(c.client))
    assert merged[0].reconnect_delays == pytest.approx([0.5])


def test_overlapping_connections_and_long_gaps_are_not_reconnects() -> None:
    sim = Sim()
    sim.connect(0.0, 10.0)
    sim.connect(5.0, 20.0)  # opened while the first was still up: a second tab
    sim.connect(1000.0, None)  # 980 s after the last end: a new visit, not a reconnect
    (ep,) = sim.endpoints()
    assert ep.reconnect_delays == []
    assert ep.backoff.pattern == "none"
    (ep,) = sim.endpoints(max_delay=None)
    assert ep.reconnect_delays == pytest.approx([980.0])


def test_zero_length_refused_attempts() -> None:
    sim = Sim()
    t = 0.0
    for _ in range(4):
        sim.refuse(t, t, status=401)  # answered in the same instant
        t += 20.0
    (ep,) = sim.endpoints()
    (lin,) = ep.lineages
    assert lin.delays == pytest.approx([20.0] * 3)
    assert lin.backoff.pattern == "fixed"
    # refused every time: retries, not the backoff of a connected client
    assert ep.backoff.pattern == "none" and ep.reconnect_delays == []
    assert ep.refused_retries.count == 4
    assert ep.refused_retries.interval == pytest.approx(20.0)
    assert ep.refused_retries.status == 401


def test_client_ip() -> None:
    assert client_ip("10.0.0.5:40000") == "10.0.0.5"
    assert client_ip("[::1]:40000") == "::1"
    assert client_ip("::1:40000") == "::1"
    assert client_ip("10.0.0.5") == "10.0.0.5"
    conn = Connection("x", hs(0.0, client="[::1]:1234", cookie="a=b"))
    assert default_lineage_key(conn) == "client/1.0\x1fa=b\x1f::1"


def test_ten_thousand_connections_are_all_accounted_for() -> None:
    sim = Sim()
    rng = random.Random(2)
    t = 0.0
    for i in range(10_000):
        cookie = f"session=u{i % 100}"
        if i % 7 == 0:
            sim.refuse(t, t + 0.01, cookie=cookie)
        else:
            sim.connect(t, t + rng.uniform(0.1, 5.0), cookie=cookie)
        t += rng.uniform(0.001, 0.2)
    eps = sim.endpoints()  # how fast: bench/timings.py
    assert sum(e.connections for e in eps) == 10_000


# --------------------------------------------------------------------------- properties

PATTERNS = {"exponential", "linear", "fixed", "storm", "single", "none", "irregular", "mixed"}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False), max_size=40),
    st.lists(st.booleans(), max_size=40),
)
def test_arbitrary_delay_series_never_raise(delays: list[float], starts: list[bool]) -> None:
    b = judge(delays, starts)
    assert b.pattern in PATTERNS
    assert b.reconnects == len(delays)
    if delays:
        assert b.min is not None and b.max is not None and b.min <= b.max
    if b.factor is not None:
        assert b.factor > 0
    if b.cap is not None:
        assert b.cap > 0
    json.dumps(b.to_dict())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1000, allow_nan=False),
            st.one_of(st.none(), st.floats(min_value=0, max_value=100, allow_nan=False)),
            st.booleans(),
            st.sampled_from(["a=1", "a=2"]),
        ),
        max_size=40,
    )
)
def test_arbitrary_connection_sets_never_raise(
    specs: list[tuple[float, float | None, bool, str]],
) -> None:
    sim = Sim()
    for start, dur, refused, cookie in specs:
        if refused:
            sim.refuse(start, start + (dur or 0.0), cookie=cookie)
        else:
            sim.connect(start, None if dur is None else start + dur, cookie=cookie)
    for ep in sim.endpoints():
        assert all(d >= 0 for d in ep.reconnect_delays)
        assert ep.backoff.pattern in PATTERNS
        json.dumps(ep.to_dict())


# --------------------------------------------------------------------------- per client


def chat_app(sim: Sim) -> dict[str, list[str]]:
    """The chat app of issue 16 on one endpoint: a good client that stays connected, a
    client without the session cookie refused (403) every 5 s, and a client with a
    0.5/1/2/4 s backoff, its connections dropped now and then."""
    ids: dict[str, list[str]] = {"good": [], "nocookie": [], "backoff": []}
    ids["good"].append(sim.connect(0.0, cookie="session=good", client="10.0.0.5:40001"))
    for i in range(12):
        t = 1.0 + 5.01 * i
        ids["nocookie"].append(
            sim.refuse(t, t + 0.003, status=403, cookie=None, client="10.0.0.5:41000")
        )
    t = 2.0
    conn = sim.connect(t, cookie="session=bo", client="10.0.0.5:42000")
    ids["backoff"].append(conn)
    t += 20.0
    sim.kill(conn, t)
    for d in (0.51, 1.01, 2.01, 4.01):
        t += d
        conn = sim.connect(t, t + 0.2, cookie="session=bo", client="10.0.0.5:42000")
        ids["backoff"].append(conn)
        t += 0.2
    return ids


def test_each_client_is_judged_apart_and_refused_retries_are_not_a_backoff() -> None:
    """Issue 16.1: the no-cookie client's refused retries every 5.01 s must not become the
    endpoint's "fixed interval": the connected client with backoff is the one judged."""
    sim = Sim()
    ids = chat_app(sim)
    (ep,) = sim.endpoints()
    assert len(ep.lineages) == 3
    by_first = {lin.conn_ids[0]: lin for lin in ep.lineages}
    good = by_first[ids["good"][0]]
    nocookie = by_first[ids["nocookie"][0]]
    backoff = by_first[ids["backoff"][0]]
    assert good.backoff.pattern == "none"
    assert nocookie.never_connected and nocookie.backoff.pattern == "fixed"
    assert backoff.delays == pytest.approx([0.51, 1.01, 2.01, 4.01], abs=0.001)
    # the endpoint's backoff is the one connected client that reconnected
    assert ep.backoff.pattern == "exponential"
    assert ep.backoff.factor == pytest.approx(1.99, abs=0.01)
    assert ep.reconnect_delays == pytest.approx([0.51, 1.01, 2.01, 4.01], abs=0.001)
    rr = ep.refused_retries
    assert (rr.count, rr.clients, rr.status) == (12, 1, 403)
    assert rr.interval == pytest.approx(5.01, abs=0.01)
    d = ep.to_dict()
    json.dumps(d)
    assert [c["connections"] for c in d["clients"]] == [1, 12, 5]
    assert d["clients"][2]["backoff"]["pattern"] == "exponential"
    # no secret in the client keys: cookie names only
    assert [c["client"] for c in d["clients"]] == [
        "client/1 session",
        "client/1",
        "client/1 session (2)",
    ]
    assert "bo" not in json.dumps(d["clients"]).replace("backoff", "")


def test_two_reconnecting_clients_make_the_endpoint_mixed() -> None:
    sim = Sim()
    chat_app(sim)
    t = 100.0
    for _ in range(5):  # a second connected client retrying every 3 s, no growth
        sim.connect(t, t + 1.0, cookie="session=other", client="10.0.0.6:1")
        t += 4.0
    (ep,) = sim.endpoints()
    assert ep.mixed
    assert {lin.backoff.pattern for lin in ep.reconnecting} == {"exponential", "fixed"}
    d = ep.to_dict()
    assert d["reconnect_delays"] == "mixed"
    assert d["backoff"]["pattern"] == "mixed" and d["backoff"]["see"] == "clients"
