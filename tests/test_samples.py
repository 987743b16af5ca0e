"""The sample traffic shared by the TUI tests and the docs screenshots: deterministic,
proxy-like ids, and one Handshake builder whose fields can all be overridden."""

from __future__ import annotations

from devconsole.model import HandshakeEvent, Message, RefusedEvent
from devconsole.samples import T0, Traffic, demo_traffic, fault_traffic, handshake
from devconsole.session import Session


def test_the_sample_sessions_are_deterministic() -> None:
    assert demo_traffic().events == demo_traffic().events
    assert fault_traffic().events == fault_traffic().events


def test_sample_ids_are_the_proxys_kind_and_seqs_grow() -> None:
    s = Session()
    s.apply_all(fault_traffic().events)
    assert list(s.connections) == ["1", "2", "3", "4", "5"]
    seqs = [ev.seq for ev in fault_traffic().events if isinstance(ev, Message)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_handshake_builds_a_browser_upgrade_and_takes_overrides() -> None:
    hs = handshake("7", query=[("room", "a")], protocols=["chat"], subprotocol="chat")
    assert hs.url == "wss://api.example.com/ws?room=a" and hs.ts == T0
    assert hs.request_header("origin") == "https://app.example.com"
    assert hs.requested_subprotocols == ["chat"] and hs.subprotocol == "chat"
    assert hs.response_header("sec-websocket-protocol") == "chat"
    refused = handshake("8", status=403, body=b"no")
    assert (refused.reason, refused.body_size, refused.ts_response) == ("Forbidden", 2, T0 + 0.012)
    raw = handshake("9", url="ws://x/", request_headers=[], ts_response=None)
    assert (raw.url, raw.request_headers, raw.ts_response) == ("ws://x/", [], None)


def test_traffic_events() -> None:
    t = Traffic()
    t.open("1")
    t.refused("2")
    t.text("1", "client", "hi")
    kinds = [type(ev) for ev in t.take()]
    assert kinds == [HandshakeEvent, RefusedEvent, Message]
    assert t.take() == []


def test_intercept_traffic_holds_three_messages_with_two_decided() -> None:
    from devconsole.samples import intercept_traffic

    s = Session()
    s.apply_all(intercept_traffic().events)
    assert sorted(s.held) == [3, 4, 5] and s.held_count("2") == 2
    assert [bp.enabled for bp in s.breakpoints] == [True, True, False]
    outcomes = {it.seq: it.outcome for it in s.buffer if it.held}
    assert outcomes == {3: "edited", 5: "dropped", 8: "", 10: "", 11: ""}
