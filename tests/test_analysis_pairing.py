from __future__ import annotations

from devconsole.analysis.pairing import PairTracker, percentile
from devconsole.decoders.base import Decoded, Packet
from devconsole.model import EndEvent, HandshakeEvent, Message, Opcode
from tests.factories import make_handshake


def item(seq: int, side: str, ts: float, conn: str = "c1") -> Message:
    return Message(seq, conn, ts, side, Opcode.TEXT, b"x", 1, 3)  # type: ignore[arg-type]


def pk(key: str | None, role: str | None, method: str | None = None) -> Decoded:
    return Decoded("p", (Packet(f"{role} {key}", {}, key, role, method),))


def tracker() -> PairTracker:
    p = PairTracker()
    p.on_event(HandshakeEvent(make_handshake("c1", path="/api")))
    return p


def test_request_reply_latency_and_partners() -> None:
    p = tracker()
    p.on_decoded(item(1, "client", 10.0), pk("id:1", "request", "add"))
    p.on_decoded(item(2, "client", 10.5), pk("id:2", "request", "add"))
    p.on_decoded(item(3, "server", 10.1), pk("id:1", "reply"))
    p.on_decoded(item(4, "server", 11.5), pk("id:2", "reply"))
    rep = p.endpoint_report("/api")
    [m] = rep["methods"]
    assert (m["method"], m["count"], m["p50"], m["p95"], m["max"]) == ("add", 2, 0.1, 1.0, 1.0)
    assert p.partner(1) == 3 and p.partner(3) == 1 and p.partner(4) == 2
    assert rep["unanswered"] == 0 and rep["requests"] == 2


def test_a_reply_from_the_requesting_side_does_not_count() -> None:
    p = tracker()
    p.on_decoded(item(1, "client", 1.0), pk("k", "request", "m"))
    p.on_decoded(item(2, "client", 2.0), pk("k", "reply"))
    assert p.partner(1) is None
    # the server's requests are separate from the client's, even with the same key
    p.on_decoded(item(3, "server", 3.0), pk("k", "request", "n"))
    p.on_decoded(item(4, "client", 3.5), pk("k", "reply"))
    assert p.partner(3) == 4


def test_streams_partials_then_complete() -> None:
    p = tracker()
    p.on_decoded(item(1, "client", 0.0), pk("op:1", "request", "Sub"))
    p.on_decoded(item(2, "server", 0.2), pk("op:1", "partial"))
    p.on_decoded(item(3, "server", 0.4), pk("op:1", "partial"))
    p.on_decoded(item(4, "server", 0.6), pk("op:1", "reply"))
    [m] = p.endpoint_report("/api")["methods"]
    assert m["count"] == 1 and m["max"] == 0.2  # to the first answer
    assert p.partner(1) == 2 and p.partner(3) == 1 and p.partner(4) == 1
    assert p.pending() == []


def test_unanswered_at_the_end_cancel_and_reuse() -> None:
    p = tracker()
    p.on_decoded(item(1, "client", 0.0), pk("a", "request", "never"))
    p.on_decoded(item(2, "client", 0.0), pk("b", "request", "cancelled"))
    p.on_decoded(item(3, "client", 0.1), pk("b", "cancel"))
    p.on_decoded(item(4, "client", 0.2), pk("c", "request", "reused"))
    p.on_decoded(item(5, "client", 0.3), pk("c", "request", "reused"))
    p.on_decoded(item(6, "server", 0.4), pk("zz", "reply"))
    assert [r["method"] for r in p.pending()] == ["never", "reused"]
    p.on_event(EndEvent("c1", 1.0, True, "client"))
    rep = p.endpoint_report("/api")
    assert rep["unanswered"] == 3 and rep["unmatched_replies"] == 1
    whys = {(u["method"], u["why"]) for u in rep["unanswered_requests"]}
    assert whys == {
        ("never", "the connection ended"),
        ("reused", "the connection ended"),
        ("reused", "its key was reused before a reply"),
    }


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0], 0.95) == 1.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0
    assert percentile([1.0, 2.0], 0.5) == 1.0
