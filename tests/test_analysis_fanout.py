"""The fan-out trace, with no I/O: publications, deliveries, delays and missed ones."""

from __future__ import annotations

import json

import pytest

from devconsole.analysis.fanout import (
    FanoutTracer,
    is_backplane,
    json_of,
    key_of,
    parse_path,
    percentile,
)
from devconsole.analysis.readiness import build_report
from devconsole.model import EndEvent, HandshakeEvent, Message, Publication
from devconsole.session import Session
from tests.factories import make_handshake

_seq = 0


def _next() -> int:
    global _seq
    _seq += 1
    return _seq


def pseudo(conn: str = "bp", trace_key: str | None = None) -> HandshakeEvent:
    query = [("pattern", "chat:*")]
    if trace_key:
        query.append(("trace_key", trace_key))
    return HandshakeEvent(
        make_handshake(
            conn, scheme="redis", method="PSUBSCRIBE", path="chat:*", query=query,
            url="redis://127.0.0.1:6379/0 PSUBSCRIBE chat:*",
        )
    )  # fmt: skip


def ws(conn: str, path: str = "/chat") -> HandshakeEvent:
    return HandshakeEvent(make_handshake(conn, path=path, url=f"ws://example.com{path}"))


def pub(payload: bytes, ts: float, conn: str = "bp", channel: str = "chat:room1") -> Publication:
    return Publication(
        _next(), conn, ts, "server", 1, payload, len(payload), len(payload), channel=channel
    )


def frame(conn: str, payload: bytes, ts: float, side: str = "server") -> Message:
    return Message(_next(), conn, ts, side, 1, payload, len(payload), len(payload) + 2)  # type: ignore[arg-type]


def feed(tracer: FanoutTracer, *events: object) -> Session:
    session = Session()
    session.observers.append(tracer.on_event)
    session.apply_all(events)  # type: ignore[arg-type]
    return session


def test_keys_same_payload_or_a_json_path_at_any_depth() -> None:
    assert key_of(b"hello", None) == b"hello"
    spec = parse_path("id")
    assert key_of(b'{"data": {"id": 7, "text": "x"}}', spec) == "7"
    assert key_of(b'42["chat",{"id":7}]', spec) == "7"  # Socket.IO frame
    assert key_of(b'42/admin,["chat",{"id":"a"}]', spec) == '"a"'  # with a namespace
    assert key_of(b'{"method":"emit","data":{"id":7}}', parse_path("$.data.id")) == "7"
    assert key_of(b'{"id": 7}', parse_path("$.data.id")) is None  # anchored at the root
    assert key_of(b"not json", spec) is None
    assert key_of(b'{"items": [{"id": 1}, {"id": 2}]}', parse_path("items.1.id")) == "2"
    assert json_of(b"\xff\xfe") is not None  # undecodable: the missing marker, no crash
    with pytest.raises(ValueError):
        parse_path("$")


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([0.3, 0.1, 0.2], 0.5) == 0.2
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


def test_a_publication_delivered_to_three_of_four_has_one_missed_and_the_delays() -> None:
    tr = FanoutTracer(window=5.0)
    conns = ["a/1", "a/2", "b/1", "b/2"]
    events: list[object] = [pseudo(), *(ws(c) for c in conns)]
    events.append(pub(b"m1", 100.0))
    events += [frame(c, b"m1", 100.01) for c in conns]
    events.append(pub(b"m2", 101.0))
    events += [frame("a/1", b"m2", 101.1), frame("a/2", b"m2", 101.2), frame("b/1", b"m2", 101.4)]
    feed(tr, *events)
    p1, p2 = tr.publications
    assert p1.receivers == 4 and tr.missed(p1, 200.0) == []
    assert p2.receivers == 3
    assert p2.instances == ["a", "b"]
    assert [round(d, 3) for d in sorted(p2.delays)] == [0.1, 0.2, 0.4]
    assert p2.delay_p50 == pytest.approx(0.2)
    assert p2.delay_max == pytest.approx(0.4)
    # not missed yet within the window; missed once the window has passed
    assert tr.missed(p2, 102.0) == []
    assert tr.missed(p2, 106.5) == ["b/2"]
    s = tr.summary(None, 106.5)
    assert (s["publications"], s["deliveries"], s["missed"]) == (2, 7, 1)
    assert s["instances"]["b"]["deliveries"] == 3


def test_a_later_publication_makes_the_miss_certain_at_once() -> None:
    tr = FanoutTracer(window=60.0)
    feed(
        tr,
        pseudo(), ws("1"), ws("2"),
        pub(b"p1", 10.0), frame("1", b"p1", 10.1), frame("2", b"p1", 10.1),
        pub(b"p2", 11.0), frame("1", b"p2", 11.1),
        pub(b"p3", 12.0), frame("1", b"p3", 12.1), frame("2", b"p3", 12.1),
    )  # fmt: skip
    _p1, p2, p3 = tr.publications
    assert tr.missed(p2, 12.5) == ["2"]  # it got p3 but never p2
    assert tr.missed(p3, 12.5) == []


def test_connections_that_ended_or_never_subscribed_are_not_missed() -> None:
    tr = FanoutTracer(window=1.0)
    feed(
        tr,
        pseudo(), ws("1"), ws("2"), ws("3"),
        pub(b"x", 10.0), frame("1", b"x", 10.1), frame("2", b"x", 10.1),
        EndEvent("2", 10.5, True, "client"),
        pub(b"y", 11.0), frame("1", b"y", 11.1),
    )  # fmt: skip
    p2 = tr.publications[1]
    assert tr.missed(p2, 20.0) == []  # 2 left before; 3 never received the channel


def test_trace_key_from_the_recording_proxy_and_frames_seen_before_the_publication() -> None:
    tr = FanoutTracer()
    body = json.dumps({"method": "emit", "event": "chat", "data": {"id": 42, "t": "hi"}})
    feed(
        tr,
        pseudo(trace_key="id"), ws("1"), ws("2"),
        # a frame recorded a few ms before the subscriber saw the publication
        frame("1", b'42["chat",{"id":42,"t":"hi"}]', 99.995),
        pub(body.encode(), 100.0),
        frame("2", b'42["chat",{"id":42,"t":"hi"}]', 100.05),
        frame("2", b'42["chat",{"id":43}]', 100.06),
    )  # fmt: skip
    (p,) = tr.publications
    assert sorted(p.deliveries) == ["1", "2"]
    assert p.deliveries["1"].delay == 0.0  # clamped: recorded before the publication
    assert p.deliveries["2"].delay == pytest.approx(0.05)


def test_the_same_publication_recorded_twice_is_one_and_client_frames_are_ignored() -> None:
    tr = FanoutTracer()
    feed(
        tr,
        pseudo("bp1"), pseudo("bp2"), ws("1"),
        pub(b"z", 10.0, conn="bp1"), pub(b"z", 10.01, conn="bp2"),
        frame("1", b"z", 10.2, side="client"),
        frame("1", b"z", 10.3),
    )  # fmt: skip
    (p,) = tr.publications
    assert len(p.copies) == 1
    assert list(p.deliveries) == ["1"]
    assert p.deliveries["1"].delay == pytest.approx(0.3)


def test_readiness_report_has_the_backplane_per_endpoint() -> None:
    tr = FanoutTracer(window=1.0)
    session = feed(
        tr,
        pseudo(), ws("a/1"), ws("b/1"), ws("c/1", path="/other"),
        pub(b"m1", 10.0), frame("a/1", b"m1", 10.1), frame("b/1", b"m1", 10.3),
        pub(b"m2", 11.0), frame("a/1", b"m2", 11.1),
    )  # fmt: skip
    report = build_report(session, None, 20.0, fanout=tr)
    eps = {e["path"]: e for e in report["endpoints"]}
    assert "chat:*" not in eps  # the pseudo-connection is not an endpoint
    bp = eps["/chat"]["backplane"]
    assert (bp["publications"], bp["deliveries"], bp["missed"]) == (2, 3, 1)
    assert bp["delay_p50"] == pytest.approx(0.1)
    assert bp["delay_p95"] == pytest.approx(0.3)
    item = eps["/chat"]["checklist"]["backplane"]
    assert item["ok"] is False and "1 missed" in item["detail"]
    other = eps["/other"]["checklist"]["backplane"]
    assert other["ok"] is None
    # without a tracer, or with no backplane recorded: not observed, not assumed
    plain = build_report(session, None, 20.0)
    assert plain["endpoints"][0]["checklist"]["backplane"]["ok"] is None
    assert is_backplane(pseudo().handshake)
