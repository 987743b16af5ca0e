"""The screen's protocol analysis (``devconsole.tui.decoding``): what a row previews, the
decode budget under a flood, decoding off the event thread, the fan-out lookups."""

from __future__ import annotations

import threading

from devconsole.model import CLIENT, SERVER, HandshakeEvent
from devconsole.samples import Traffic, handshake, protocol_traffic
from devconsole.session import Session
from devconsole.tui.decoding import LiveAnalysis


def fed(t: Traffic, **kw) -> tuple[Session, LiveAnalysis]:
    s = Session()
    live = LiveAnalysis.attach(s, **kw)
    s.apply_all(t.events)
    return s, live


def test_rows_preview_the_protocol_and_requests_pair_with_replies() -> None:
    s, live = fed(protocol_traffic())
    assert live.preview(s.get(4), 80) == 'sio "chat" {"text":"hi all","room":"lobby"} ack 1'
    assert live.preview(s.get(7), 80) == 'rpc eth_subscribe id=7 ["newHeads"]'
    assert live.pairs.partner(4) == 6 and live.pairs.partner(15) == 14
    # a narrow row is clipped, never wrapped
    assert len(live.preview(s.get(4), 20)) == 20
    rep = live.heartbeat.report("1", 1_700_000_010.0)
    (beat,) = rep.protocol
    assert (beat.protocol, beat.side, beat.negotiated_interval) == ("socket.io", SERVER, 25.0)


def test_a_session_already_holding_traffic_is_read_first() -> None:
    s = Session()
    s.apply_all(protocol_traffic().events)
    live = LiveAnalysis.attach(s)  # the screen opened on a filled session
    assert live.protocol_of("1") == "socket.io"
    assert live.pairs.partner(7) == 8
    assert live.preview(s.get(9), 40) == "eio ping"


def test_a_flood_is_decoded_within_the_budget_and_the_rest_counted() -> None:
    t = Traffic()
    t.open("1", path="/socket.io/", query=[("EIO", "4"), ("transport", "websocket")])
    for i in range(300):
        t.text("1", CLIENT, f'42{i}["chat",{{"n":{i}}}]', dt_=0.0001)
    now = [0.0]
    s, live = fed(t, budget=100, clock=lambda: now[0])
    assert live.fed == 100 and live.skipped == 200
    # what was not decoded as it arrived is still decoded when shown
    assert live.preview(s.get(250), 80).startswith('sio "chat" {"n":249}')
    now[0] = 1.5  # the next second has a budget again
    t2 = Traffic(ts=t.ts)
    t2.seq = t.seq
    t2.text("1", CLIENT, '42["late"]')
    s.apply_all(t2.events)
    assert live.fed == 101


def test_connections_nobody_decodes_cost_no_budget() -> None:
    t = Traffic()
    t.open("1", path="/chat")
    for i in range(50):
        t.json("1", SERVER, {"type": "msg", "n": i})
    _, live = fed(t, budget=10)
    assert live.skipped == 0 and live.protocol_of("1") is None


def test_decoding_off_the_event_thread_leaves_the_cache_alone() -> None:
    s = Session()
    live = LiveAnalysis.attach(s)
    s.apply(HandshakeEvent(handshake("1", path="/rpc")))
    t = Traffic()
    t.json("1", CLIENT, {"jsonrpc": "2.0", "method": "a", "id": 1})
    s.apply_all(t.events)
    item = s.get(1)
    before = len(live.tracker._cache)
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(live.decoded(item)))
    worker.start()
    worker.join()
    assert got[0] is not None and got[0].protocol == "jsonrpc"  # type: ignore[attr-defined]
    assert len(live.tracker._cache) == before


def test_an_override_is_counted_so_views_redraw() -> None:
    s, live = fed(protocol_traffic())
    v = live.version
    live.set_override("2", "none")
    assert live.version == v + 1 and live.decoded(s.get(7)) is None
    assert live.preview(s.get(7), 80).startswith('{"jsonrpc":"2.0"')


def test_publications_read_as_such_and_lead_to_their_trace() -> None:
    t = Traffic()
    t.backplane("bp", "chat:*")
    t.open("1", path="/chat")
    t.open("2", path="/chat")
    pub = t.publication("bp", "chat:lobby", '{"id":1,"text":"hi"}')
    d1 = t.text("1", SERVER, '{"id":1,"text":"hi"}', dt_=0.01)
    t.text("2", SERVER, '{"id":1,"text":"hi"}', dt_=0.2)
    s, live = fed(t)
    assert live.preview(pub, 80) == 'publish chat:lobby {"id":1,"text":"hi"}'
    tr = live.trace_of(pub)
    assert tr is not None and tr.receivers == 2
    assert live.trace_of(d1) is tr  # a frame leads to the publication it carried
    assert live.trace_of(s.get(1)) is tr  # so does the publication itself
