"""The Capture addon's options and HTTP hooks, called directly inside mitmproxy's
``taddons.context`` with ``tflow`` flows: no proxy, no socket. What the relay does with
the upgraded bytes is tested end to end on a real mitmproxy (tests/test_capture.py)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.http import Headers
from mitmproxy.test import taddons, tflow, tutils

from devconsole.capture import Capture
from devconsole.model import ConnState, HandshakeEvent, RefusedEvent


def upgrade_request(path: bytes = b"/chat?ticket=t1") -> object:
    return tutils.treq(
        path=path,
        headers=Headers(
            host="example.com",
            upgrade="websocket",
            connection="Upgrade",
            cookie="session=abc",
            sec_websocket_version="13",
        ),
    )


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("devconsole_buffer_messages", 0, "at least 1"),
        ("devconsole_buffer_bytes", "lots", "invalid devconsole_buffer_bytes"),
        ("devconsole_max_payload", "-1", "devconsole_max_payload"),
        ("devconsole_tap", "tcp://127.0.0.1:http", "port must be a number"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(option: str, value: object, needle: str):
    capture = Capture()
    with taddons.context(capture) as tctx, pytest.raises(exceptions.OptionsError, match=needle):
        tctx.configure(capture, **{option: value})


def test_options_size_the_backlog_and_turn_mitmproxys_websocket_layer_off() -> None:
    capture = Capture()
    with taddons.context(capture) as tctx:
        tctx.configure(
            capture,
            devconsole_buffer_messages=10,
            devconsole_buffer_bytes="1k",
            devconsole_max_payload="64",
        )
        assert capture.session.buffer.max_items == 10
        assert capture.session.buffer.max_bytes == 1024
        assert capture.max_payload == 64
        assert tctx.options.websocket is False and tctx.options.rawtcp is True


def test_an_upgrade_is_connecting_then_open_with_the_proxys_ids() -> None:
    capture = Capture()
    with taddons.context(capture):
        flow = tflow.tflow(req=upgrade_request())
        capture.request(flow)
        [conn] = capture.session.connections.values()
        assert conn.id == "1" and conn.state == ConnState.CONNECTING
        # tflow's client connection has TLS: the scheme follows the client side
        assert conn.url == "wss://example.com/chat?ticket=t1" and conn.path == "/chat"
        assert conn.handshake.query == [("ticket", "t1")]
        assert conn.handshake.cookies == [("session", "abc")]
        flow.response = tutils.tresp(
            status_code=101,
            reason=b"Switching Protocols",
            headers=Headers(
                upgrade="websocket",
                connection="Upgrade",
                sec_websocket_extensions="permessage-deflate",
            ),
            content=b"",
        )
        capture.response(flow)
        assert conn.state == ConnState.OPEN and conn.handshake.status == 101
        assert conn.handshake.extensions == ["permessage-deflate"]
        capture.request(tflow.tflow(req=upgrade_request(b"/other")))
        assert list(capture.session.connections) == ["1", "2"]


def test_a_refused_upgrade_keeps_status_headers_and_body() -> None:
    capture = Capture()
    events: list[object] = []
    capture.session.observers.append(events.append)
    with taddons.context(capture):
        flow = tflow.tflow(req=upgrade_request())
        capture.request(flow)
        flow.response = tutils.tresp(
            status_code=401,
            reason=b"Unauthorized",
            headers=Headers(content_type="application/json"),
            content=b'{"error":"no ticket"}',
        )
        capture.response(flow)
    assert [type(e) for e in events] == [HandshakeEvent, RefusedEvent]
    conn = capture.session.connections["1"]
    assert conn.refused and conn.handshake.status == 401
    assert conn.handshake.body == b'{"error":"no ticket"}'
    assert ("content-type", "application/json") in conn.handshake.response_headers


def test_an_unreachable_server_is_a_refused_upgrade_with_the_error() -> None:
    capture = Capture()
    with taddons.context(capture):
        flow = tflow.tflow(req=upgrade_request(), err=True)
        capture.request(flow)
        capture.error(flow)
    conn = capture.session.connections["1"]
    assert conn.refused and conn.handshake.status is None and conn.handshake.error


def test_plain_http_is_ignored() -> None:
    capture = Capture()
    with taddons.context(capture):
        flow = tflow.tflow(resp=True)
        capture.request(flow)
        capture.response(flow)
    assert capture.session.connections == {}
