from __future__ import annotations

import itertools
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devconsole.analysis.heartbeat import (
    MAX_OUTSTANDING,
    RECENT,
    HeartbeatMonitor,
    RunningStats,
    median,
    signature,
)
from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    EndEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    Side,
)
from devconsole.session import Session
from tests.factories import make_handshake

_seq = itertools.count(1)


def ping(conn: str, ts: float, side: Side, payload: bytes = b"") -> ControlFrame:
    return ControlFrame(next(_seq), conn, ts, side, Opcode.PING, payload, 2 + len(payload))


def pong(conn: str, ts: float, side: Side, payload: bytes = b"") -> ControlFrame:
    return ControlFrame(next(_seq), conn, ts, side, Opcode.PONG, payload, 2 + len(payload))


def msg(conn: str, ts: float, side: Side, data: str | bytes) -> Message:
    payload = data.encode() if isinstance(data, str) else data
    op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    return Message(next(_seq), conn, ts, side, op, payload, len(payload), len(payload) + 2)


def handshake(conn: str, ts: float) -> Handshake:
    return make_handshake(
        conn=conn,
        ts=ts,
        client="127.0.0.1:50000",
        server="127.0.0.1:9000",
        scheme="ws",
        url="ws://127.0.0.1:9000/ws",
        method="GET",
        path="/ws",
        query=[],
        http_version="HTTP/1.1",
        request_headers=[("Host", "127.0.0.1:9000")],
        cookies=[],
        status=101,
        ts_response=ts + 0.001,
    )


# --------------------------------------------------------------------------- helpers


def test_running_stats_matches_direct_computation() -> None:
    xs = [3.0, 2.9, 3.1, 3.05, 2.95]
    rs = RunningStats()
    for x in xs:
        rs.add(x)
    mean = sum(xs) / len(xs)
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    assert rs.n == 5
    assert rs.mean == pytest.approx(mean)
    assert rs.variance == pytest.approx(var)
    assert (rs.min, rs.max) == (2.9, 3.1)
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    assert median([]) is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"type":"ping","ts":1712345678901}', '{"type":"ping"}'),
        ('{"type":"ping","id":"a1b2c3d4e5"}', '{"type":"ping"}'),
        ('{"op":1,"d":251}', "{}"),  # discord-like: every value volatile
        ('{"type":"pong","data":{"t":5,"ok":true}}', '{"type":"pong","data":{"ok":true}}'),
        ('[null,"12","phoenix","heartbeat",{}]', '[null,"*","phoenix","heartbeat",{}]'),
        ("2", "2"),  # socket.io / engine.io ping: short text kept as is
        ("heartbeat 12345 at 17:01", "heartbeat # at #:#"),
        (b"\x01\x02", "bin:0102"),
    ],
)
def test_signature_removes_volatile_values(data: str | bytes, expected: str) -> None:
    payload = data.encode() if isinstance(data, str) else data
    op = Opcode.TEXT if isinstance(data, str) else Opcode.BINARY
    assert signature(op, payload) == expected


# --------------------------------------------------------------------------- protocol pings


def test_server_pings_interval_jitter_and_rtt() -> None:
    mon = HeartbeatMonitor()
    rng = random.Random(1)
    t = 100.0
    intervals = []
    for i in range(20):
        payload = rng.randbytes(4)
        mon.observe(ping("c1", t, SERVER, payload))
        mon.observe(pong("c1", t + 0.005 + 0.001 * (i % 3), CLIENT, payload))
        step = 3.0 + (0.1 if i % 2 else -0.1)
        intervals.append(step)
        t += step
    rep = mon.report("c1", now=t)
    assert rep.pinger == "server"
    sp = rep.server_pings
    assert sp.count == 20
    assert sp.interval_mean == pytest.approx(3.0, abs=0.01)
    assert sp.interval_jitter == pytest.approx(0.1, abs=0.01)
    assert sp.rtt_count == 20
    assert sp.rtt_mean == pytest.approx(0.006, abs=0.001)
    assert sp.rtt_p50 == pytest.approx(0.006, abs=0.0011)
    assert sp.rtt_max == pytest.approx(0.007, abs=1e-9)
    assert sp.unanswered == 0 and sp.pending == 0
    assert rep.client_pings.count == 0
    assert rep.seen
    d = rep.to_dict()
    json.dumps(d)
    assert d["pinger"] == "server"
    assert d["server_pings"]["interval_mean"] == pytest.approx(3.0, abs=0.01)


def test_pong_matched_by_payload_out_of_order_and_skipped_pings() -> None:
    mon = HeartbeatMonitor()
    mon.observe(ping("c", 0.0, CLIENT, b"a"))
    mon.observe(ping("c", 1.0, CLIENT, b"b"))
    mon.observe(pong("c", 1.010, SERVER, b"b"))  # answers only the latest ping
    rep = mon.report("c", now=2.0)
    cp = rep.client_pings
    assert rep.pinger == "client"
    assert cp.rtt_count == 1
    assert cp.rtt_mean == pytest.approx(0.010)
    assert cp.unanswered == 1  # "a" was skipped
    assert cp.pending == 0


def test_empty_payload_pongs_match_fifo() -> None:
    mon = HeartbeatMonitor()
    mon.observe(ping("c", 0.0, SERVER))
    mon.observe(ping("c", 0.5, SERVER))
    mon.observe(pong("c", 0.6, CLIENT))
    mon.observe(pong("c", 0.7, CLIENT))
    sp = mon.report("c", now=1.0).server_pings
    assert sp.rtt_count == 2
    assert sp.rtt_max == pytest.approx(0.6)
    assert sp.rtt_mean == pytest.approx(0.4)


def test_stale_pings_are_not_fifo_matched() -> None:
    mon = HeartbeatMonitor(pong_timeout=5.0)
    mon.observe(ping("c", 0.0, SERVER))
    mon.observe(ping("c", 30.0, SERVER))
    mon.observe(pong("c", 30.02, CLIENT))
    sp = mon.report("c", now=31.0).server_pings
    assert sp.rtt_count == 1
    assert sp.rtt_max == pytest.approx(0.02)
    assert sp.unanswered == 1


def test_unanswered_after_timeout_and_at_end() -> None:
    mon = HeartbeatMonitor(pong_timeout=10.0)
    mon.observe(ping("c", 0.0, SERVER, b"x"))
    assert mon.report("c", now=1.0).server_pings.pending == 1
    assert mon.report("c", now=1.0).server_pings.unanswered == 0
    assert mon.report("c", now=11.0).server_pings.unanswered == 1
    assert mon.report("c", now=11.0).server_pings.pending == 0
    mon.observe(ping("c", 20.0, SERVER, b"y"))
    mon.end("c", 20.5)
    rep = mon.report("c", now=100.0)
    assert rep.ended
    assert rep.server_pings.unanswered == 2
    assert rep.server_pings.pending == 0


def test_unsolicited_pongs_and_both_pingers() -> None:
    mon = HeartbeatMonitor()
    mon.observe(pong("c", 0.0, CLIENT, b"u1"))
    mon.observe(pong("c", 5.0, CLIENT, b"u2"))
    rep = mon.report("c", now=6.0)
    assert rep.unsolicited_pongs_client == 2
    assert rep.pinger == "none"
    assert rep.seen  # one-way heartbeat by unsolicited pongs
    mon.observe(ping("c", 7.0, CLIENT, b"p"))
    mon.observe(ping("c", 7.5, SERVER, b"q"))
    mon.observe(pong("c", 7.6, SERVER, b"p"))
    mon.observe(pong("c", 7.7, CLIENT, b"q"))
    rep = mon.report("c", now=8.0)
    assert rep.pinger == "both"
    assert rep.client_pings.rtt_mean == pytest.approx(0.6)
    assert rep.server_pings.rtt_mean == pytest.approx(0.2)


def test_time_since_last_frame_each_way() -> None:
    mon = HeartbeatMonitor()
    mon.observe(msg("c", 10.0, CLIENT, "hello"))
    mon.observe(ping("c", 12.0, SERVER))
    rep = mon.report("c", now=15.0)
    assert rep.since_last_client == pytest.approx(5.0)
    assert rep.since_last_server == pytest.approx(3.0)
    mon.end("c", 13.0)
    rep = mon.report("c", now=15.0)  # measured to the end for ended connections
    assert rep.since_last_client == pytest.approx(3.0)


def test_unknown_connection_gives_empty_report() -> None:
    rep = HeartbeatMonitor().report("nope", now=1.0)
    assert not rep.known
    assert not rep.seen
    assert rep.to_dict()["pinger"] == "none"


def test_a_dropped_ping_was_sent_and_is_unanswered() -> None:
    """Issue 16.2: a ping devconsole did not forward (half-open) reached nobody; it was
    sent all the same, and no pong can answer it (the report said "0 without pong")."""
    mon = HeartbeatMonitor()
    f = ping("c", 0.0, SERVER, b"z")
    f.dropped = True
    mon.observe(f)
    rep = mon.report("c", now=1.0)
    assert rep.pinger == "server"
    assert (rep.server_pings.count, rep.server_pings.unanswered, rep.server_pings.pending) == (
        1,
        1,
        0,
    )


def test_devconsoles_own_pings_are_not_the_peers_heartbeat() -> None:
    mon = HeartbeatMonitor()
    f = ping("c", 0.0, SERVER, b"devconsole")
    f.injected = True  # devconsole inject --ping --to client
    mon.observe(f)
    answer = pong("c", 0.01, CLIENT, b"devconsole")
    answer.dropped = True  # consumed by devconsole
    mon.observe(answer)
    rep = mon.report("c", now=20.0)
    assert rep.pinger == "none" and rep.unsolicited_pongs_client == 0


# --------------------------------------------------------------------------- app heartbeats


def test_app_json_heartbeat_with_reply_amid_chat_noise() -> None:
    mon = HeartbeatMonitor()
    rng = random.Random(7)
    t = 0.0
    n = 0
    while t < 60.0:
        n += 1
        mon.observe(msg("c", t, CLIENT, json.dumps({"type": "ping", "ts": int(t * 1000)})))
        mon.observe(msg("c", t + 0.012, SERVER, json.dumps({"type": "pong", "ts": n})))
        if rng.random() < 0.5:
            text = rng.choice(["hi", "hello", "lol", "brb", "ok"])
            mon.observe(msg("c", t + 0.7, SERVER, json.dumps({"type": "chat", "text": text})))
        t += 2.0 + rng.uniform(-0.05, 0.05)
    rep = mon.report("c", now=t)
    assert rep.pinger == "none"
    assert len(rep.app_heartbeats) == 1, rep.app_heartbeats
    hb = rep.app_heartbeats[0]
    assert hb.side == CLIENT
    assert hb.signature == '{"type":"ping"}'
    assert hb.interval_mean == pytest.approx(2.0, abs=0.05)
    assert hb.interval_cv < 0.05
    assert hb.reply == '{"type":"pong"}'
    assert hb.replies >= n - 1
    assert hb.rtt_p50 == pytest.approx(0.012, abs=0.001)
    assert rep.seen
    json.dumps(rep.to_dict())


def test_server_app_heartbeat_without_reply_and_socketio() -> None:
    mon = HeartbeatMonitor()
    for i in range(6):
        t = i * 25.0
        mon.observe(msg("c", t, SERVER, "2"))  # engine.io ping
        mon.observe(msg("c", t + 0.003, CLIENT, "3"))  # engine.io pong
    hbs = mon.report("c", now=200.0).app_heartbeats
    assert [(h.side, h.signature, h.reply) for h in hbs] == [(SERVER, "2", "3")]
    assert hbs[0].interval_mean == pytest.approx(25.0)


def test_irregular_or_too_fast_small_messages_are_not_heartbeats() -> None:
    mon = HeartbeatMonitor()
    rng = random.Random(3)
    t = 0.0
    for _ in range(40):
        mon.observe(msg("c", t, CLIENT, '{"type":"typing"}'))
        t += rng.choice([0.3, 1.0, 4.0, 9.0])
    for i in range(2000):  # a flood: regular but far too fast for a heartbeat
        mon.observe(msg("c", 500.0 + i * 0.001, SERVER, json.dumps({"type": "tick", "n": i})))
    for i in range(2):  # only two occurrences
        mon.observe(msg("c", 600.0 + i * 5, CLIENT, '{"type":"hb"}'))
    assert mon.report("c", now=700.0).app_heartbeats == []


def test_large_messages_are_not_heartbeat_candidates() -> None:
    mon = HeartbeatMonitor(app_max_size=64)
    big = json.dumps({"type": "status", "pad": "x" * 100})
    for i in range(10):
        mon.observe(msg("c", i * 2.0, SERVER, big))
    assert mon.report("c", now=30.0).app_heartbeats == []


def test_many_distinct_small_messages_keep_memory_bounded() -> None:
    mon = HeartbeatMonitor(max_candidates=8)
    for i in range(200):
        mon.observe(msg("c", i * 0.1, CLIENT, f"word{chr(97 + i % 26)}{chr(97 + i // 26)}"))
    assert len(mon._conns["c"].candidates) <= 8


def test_state_stays_bounded_for_long_lived_connection() -> None:
    mon = HeartbeatMonitor()
    t = 0.0
    for i in range(20_000):
        mon.observe(ping("c", t, SERVER, i.to_bytes(4, "big")))
        if i % 3:  # a third of the pings never get a pong
            mon.observe(pong("c", t + 0.002, CLIENT, i.to_bytes(4, "big")))
        t += 1.0
    c = mon._conns["c"]
    p = c.pings[SERVER]
    assert len(p.outstanding) <= MAX_OUTSTANDING
    assert len(p.recent_intervals) <= RECENT
    assert len(p.recent_rtts) <= RECENT
    sp = mon.report("c", now=t).server_pings
    assert sp.count == 20_000
    assert sp.rtt_count + sp.unanswered + sp.pending == 20_000


def test_max_connections_evicts_ended_first() -> None:
    mon = HeartbeatMonitor(max_connections=3)
    for i in range(3):
        mon.observe(msg(f"c{i}", float(i), CLIENT, "x"))
    mon.end("c1", 5.0)
    mon.observe(msg("c3", 6.0, CLIENT, "x"))
    assert sorted(mon.conn_ids()) == ["c0", "c2", "c3"]


# --------------------------------------------------------------------------- session


def test_session_observer_and_from_session() -> None:
    session = Session()
    mon = HeartbeatMonitor()
    session.observers.append(mon.on_event)
    session.apply(HandshakeEvent(handshake("s1", 0.0)))
    session.apply(msg("s1", 0.1, CLIENT, '{"type":"auth","token":"abc"}'))
    for i in range(5):
        session.apply(ping("s1", 1.0 + 3 * i, SERVER, bytes([i])))
        session.apply(pong("s1", 1.004 + 3 * i, CLIENT, bytes([i])))
    session.apply(ping("s1", 16.0, SERVER, b"last"))
    session.apply(EndEvent("s1", 16.5, clean=False, closed_by=None))
    rep = mon.report("s1", now=20.0)
    assert rep.pinger == "server"
    assert rep.server_pings.count == 6
    assert rep.server_pings.rtt_count == 5
    assert rep.server_pings.unanswered == 1
    assert rep.ended
    assert mon.first_client_message("s1") == (Opcode.TEXT, b'{"type":"auth","token":"abc"}')

    replay = HeartbeatMonitor.from_session(session)
    assert replay.report("s1", now=20.0).to_dict() == rep.to_dict()


# --------------------------------------------------------------------------- properties

_items = st.lists(
    st.tuples(
        st.sampled_from(["ping", "pong", "text", "binary", "end"]),
        st.sampled_from(["a", "b"]),
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.sampled_from([CLIENT, SERVER]),
        st.binary(max_size=80),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(_items, st.floats(min_value=0, max_value=2e6, allow_nan=False))
def test_arbitrary_streams_never_raise(
    items: list[tuple[str, str, float, Side, bytes]], now: float
) -> None:
    mon = HeartbeatMonitor()
    for kind, conn, ts, side, payload in sorted(items, key=lambda x: x[2]):
        if kind == "ping":
            mon.observe(ping(conn, ts, side, payload[:125]))
        elif kind == "pong":
            mon.observe(pong(conn, ts, side, payload[:125]))
        elif kind == "text":
            mon.observe(msg(conn, ts, side, payload.decode("latin-1")))
        elif kind == "binary":
            mon.observe(msg(conn, ts, side, payload))
        else:
            mon.end(conn, ts)
    for conn in ("a", "b"):
        rep = mon.report(conn, now)
        d = rep.to_dict()
        json.dumps(d)
        for ps in (rep.client_pings, rep.server_pings):
            assert ps.unanswered >= 0 and ps.pending >= 0
            assert ps.rtt_count + ps.unanswered + ps.pending <= ps.count
            if ps.rtt_mean is not None:
                assert ps.rtt_mean >= 0


def test_flood_on_one_side_is_sampled_and_other_side_still_detected() -> None:
    mon = HeartbeatMonitor(app_max_rate=50)
    for i in range(30):  # client app heartbeat every 1 s
        mon.observe(msg("c", i * 1.0, CLIENT, '{"op":"hb"}'))
    for i in range(30_000):  # server flood, 1,000 small messages a second
        mon.observe(msg("c", i * 0.001, SERVER, json.dumps({"type": "tick", "n": i})))
    c = mon._conns["c"]
    flood = c.candidates[(SERVER, '{"type":"tick"}')]
    assert flood.count <= 50 * 31  # at most app_max_rate a second were analysed
    hbs = mon.report("c", now=30.0).app_heartbeats
    assert [(h.side, h.signature, h.count) for h in hbs] == [(CLIENT, '{"op":"hb"}', 30)]


# --------------------------------------------------------------------------- protocols


def test_protocol_heartbeats_with_negotiated_interval_are_not_app_heartbeats() -> None:
    from devconsole.decoders.tracker import ProtocolTracker
    from devconsole.model import HandshakeEvent
    from devconsole.session import Session
    from tests.factories import make_handshake

    session = Session()
    tracker = ProtocolTracker()
    mon = HeartbeatMonitor()
    tracker.listeners.append(mon.on_decoded)
    session.observers += [tracker.on_event, mon.on_event]
    session.apply(HandshakeEvent(make_handshake("c1", path="/socket.io/", query=[("EIO", "4")])))
    seq = iter(range(1, 10_000))

    def send(side: str, ts: float, text: str) -> None:
        p = text.encode()
        session.apply(Message(next(seq), "c1", ts, side, Opcode.TEXT, p, len(p), len(p) + 2))  # type: ignore[arg-type]

    send("server", 0.0, '0{"sid":"s","upgrades":[],"pingInterval":5000,"pingTimeout":2000}')
    for i in range(6):
        t = 1.0 + 5.0 * i + (3.0 if i == 5 else 0.0)  # the last one is late
        send("server", t, "2")
        send("client", t + 0.01, "3")
    rep = mon.report("c1", now=100.0)
    assert rep.app_heartbeats == []  # "2"/"3" are Engine.IO's, counted as such
    [hb] = rep.protocol
    assert (hb.protocol, hb.side, hb.kind, hb.count) == ("socket.io", "server", "ping", 6)
    assert hb.negotiated_interval == 5.0 and hb.negotiated_timeout == 2.0
    assert hb.interval_p50 == pytest.approx(5.0) and hb.rtt_count == 6
    assert hb.rtt_p50 == pytest.approx(0.01) and hb.late == 1 and hb.unanswered == 0
    assert rep.seen and rep.to_dict()["protocol"][0]["negotiated_interval"] == 5.0


def test_one_way_protocol_beats_are_never_unanswered() -> None:
    from devconsole.decoders.base import Decoded, Packet

    mon = HeartbeatMonitor()
    for i in range(4):
        m = Message(i + 1, "c", float(i * 3), "server", Opcode.TEXT, b"{}", 2, 4)
        mon.observe(m)
        mon.on_decoded(m, Decoded("actioncable", (Packet("cable ping", {}, role="beat"),)))
    mon.end("c", 20.0)
    [hb] = mon.report("c", 30.0).protocol
    assert hb.kind == "beat" and hb.count == 4 and hb.unanswered == 0
    assert hb.interval_mean == pytest.approx(3.0)


# --------------------------------------------------------------------------- half-open


def chat_with_half_open(half_open_at: float = 20.0, close_at: float = 25.5) -> list:
    """Issue 16.2's connection: the client sends {"type":"ping"} every 2 s (answered by
    {"type":"pong"} in 4 ms), the server floods presence updates at 20/s and sends
    protocol pings every 2 s; devconsole half-opens it at ``half_open_at`` (nothing is
    forwarded any more: frames are captured as dropped) and the client, missing its
    pongs, closes with 4001 at ``close_at``."""
    from devconsole.model import StateEvent

    timeline: list[tuple[float, str]] = []
    for k in range(20):
        timeline.append((0.5 + 2 * k, "app-ping"))
        timeline.append((1.0 + 2 * k, "ping"))
    timeline += [(0.05 * k, "presence") for k in range(1, 700)]
    events: list = [HandshakeEvent(handshake("h", 0.0))]
    closed = False
    for ts, kind in sorted(timeline):
        if ts > half_open_at and not any(isinstance(e, StateEvent) for e in events):
            events.append(StateEvent("h", half_open_at, "half-open"))
        if ts >= close_at:
            if not closed:
                f = ControlFrame(next(_seq), "h", close_at, CLIENT, Opcode.CLOSE,
                                 b"\x0f\xa1", 8, code=4001, dropped=True)  # fmt: skip
                events.append(f)
                closed = True
            continue
        dropped = ts > half_open_at
        if kind == "app-ping":
            m = msg("h", ts, CLIENT, json.dumps({"type": "ping", "ts": int(ts * 1000)}))
            m.dropped = dropped
            events.append(m)
            if not dropped:
                events.append(msg("h", ts + 0.004, SERVER, '{"type":"pong"}'))
        elif kind == "ping":
            p = ping("h", ts, SERVER, b"k")
            p.dropped = dropped
            events.append(p)
            if not dropped:
                events.append(pong("h", ts + 0.002, CLIENT, b"k"))
        else:
            m = msg("h", ts, SERVER, '{"type":"presence","user":"bob","online":true}')
            m.dropped = dropped
            events.append(m)
    events.append(EndEvent("h", close_at + 0.05, clean=False, closed_by=CLIENT))
    return events


def test_after_a_half_open_only_what_was_answered_counts() -> None:
    """Issue 16.2: the app ping was reported "answered by {"type":"presence",…}", a server
    heartbeat {"type":"pong"} answered by {"type":"ping"} was invented, a dropped protocol
    ping was not counted, and nothing said what the client did."""
    session = Session()
    mon = HeartbeatMonitor()
    session.observers.append(mon.on_event)
    session.apply_all(chat_with_half_open())
    rep = mon.report("h", now=40.0)
    hbs = [(a.side, a.signature, a.reply) for a in rep.app_heartbeats]
    assert hbs == [(CLIENT, '{"type":"ping"}', '{"type":"pong"}')]
    app = rep.app_heartbeats[0]
    assert app.rtt_p50 == pytest.approx(0.004, abs=0.001)
    assert app.unanswered == 3
    assert rep.server_pings.unanswered == 3  # dropped ones count, never as "answered"
    assert rep.server_pings.rtt_count == 10
    ho = rep.half_open
    assert ho is not None
    assert (ho.app_unanswered, ho.pings_unanswered) == (3, {SERVER: 3})
    assert (ho.closed_by, ho.close_code) == (CLIENT, 4001)
    assert ho.close_after == pytest.approx(5.5)
    assert ho.summary == (
        "3 app pings unanswered; 3 server pings without pong; client closed 4001 5.50 s "
        "after half-open"
    )
    json.dumps(rep.to_dict())
    # the captured close code is the connection's, though it never reached the server
    conn = session.connections["h"]
    assert (conn.close_code, conn.closed_by) == (4001, CLIENT)


def test_half_open_still_waiting_says_so() -> None:
    session = Session()
    mon = HeartbeatMonitor()
    session.observers.append(mon.on_event)
    events = [e for e in chat_with_half_open(close_at=1e9) if not isinstance(e, EndEvent)]
    session.apply_all(events)
    ho = mon.report("h", now=60.0).half_open
    assert ho is not None
    assert ho.summary.endswith("; nobody closed it yet")
    assert ho.app_unanswered == 10  # every ping since the half-open


def test_replies_must_look_like_replies() -> None:
    from devconsole.analysis.heartbeat import looks_like_reply

    assert looks_like_reply('{"type":"ping"}', '{"type":"pong"}')
    assert looks_like_reply('{"type":"ping"}', '{"type":"ping"}')  # an echo
    assert looks_like_reply('{"op":"PING"}', '{"op":"PONG"}')
    assert looks_like_reply('{"type":"heartbeat"}', '{"type":"heartbeat_ack"}')
    assert looks_like_reply("2", "3")  # Engine.IO
    assert not looks_like_reply('{"type":"ping"}', '{"type":"presence","user":"bob"}')
    assert not looks_like_reply('{"type":"pong"}', '{"type":"ping"}')
