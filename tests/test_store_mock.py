"""The mock server answering a real websockets client: pushes with their timing, answers
by order and by JSON structure, the recorded close, a recorded refusal, path routing;
and ``devconsole mock`` as a real process serving a HAR file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devconsole.model import ControlFrame, HandshakeEvent, Message, Opcode, RefusedEvent
from devconsole.session import Session
from devconsole.store.mock import MockServer
from tests.factories import make_handshake


def m(seq: int, side: str, text: str, ts: float, conn: str = "1") -> Message:
    return Message(seq, conn, ts, side, Opcode.TEXT, text.encode(), len(text), 0)  # type: ignore[arg-type]


def recorded() -> Session:
    s = Session()
    s.apply(
        HandshakeEvent(
            make_handshake("1", ts=10.0, ts_response=10.0, path="/prices", subprotocol="v1")
        )
    )
    s.apply(HandshakeEvent(make_handshake("2", ts=20.0, path="/other")))
    s.apply(
        RefusedEvent(
            make_handshake(
                "3",
                ts=30.0,
                path="/private",
                status=401,
                reason="Unauthorized",
                body=b"login first",
                body_size=11,
            )
        )
    )
    s.apply_all(
        [
            m(1, "server", '{"type":"hello"}', 10.2),
            m(2, "client", '{"op":"sub","id":1,"ch":"eur"}', 10.5),
            m(3, "server", '{"id":1,"ok":true,"ch":"eur"}', 10.6),
            m(4, "server", '{"tick":1.1}', 10.9),
            m(5, "client", '{"op":"bye","id":2}', 11.0),
            m(6, "server", '{"id":2,"ok":true}', 11.05),
            ControlFrame(7, "1", 11.1, "server", Opcode.CLOSE, b"\x0f\xa1done", 8, 4001, "done"),
            m(8, "client", "other-q", 20.5, "2"),
            m(9, "server", "other-a", 20.6, "2"),
        ]
    )
    return s


async def test_mock_answers_a_real_client_in_order_and_closes_like_the_server() -> None:
    srv = MockServer(recorded())
    host, port = await srv.start()
    try:
        async with connect(f"ws://{host}:{port}/prices", subprotocols=["v1"]) as ws:
            assert ws.subprotocol == "v1"
            t0 = time.monotonic()
            assert json.loads(await ws.recv()) == {"type": "hello"}
            assert time.monotonic() - t0 >= 0.1  # pushed with its recorded delay (0.2 s)
            await ws.send('{"op":"sub","id":1,"ch":"eur"}')
            assert json.loads(await ws.recv()) == {"id": 1, "ok": True, "ch": "eur"}
            assert json.loads(await ws.recv()) == {"tick": 1.1}
            await ws.send('{"op":"bye","id":2}')
            assert json.loads(await ws.recv()) == {"id": 2, "ok": True}
            with pytest.raises(ConnectionClosed) as exc:
                await ws.recv()
            assert exc.value.rcvd is not None and exc.value.rcvd.code == 4001
        async with connect(f"ws://{host}:{port}/other") as ws:
            await ws.send("anything")
            assert await ws.recv() == "other-a"
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{host}:{port}/private")
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"login first"
    finally:
        await srv.stop()
    assert srv.stats.connections == 2 and srv.stats.received == 3


async def test_mock_matches_by_json_structure_and_puts_back_the_new_ids() -> None:
    srv = MockServer(recorded(), conn="1", match="json")
    host, port = await srv.start()
    try:
        async with connect(f"ws://{host}:{port}/anything") as ws:
            assert json.loads(await ws.recv()) == {"type": "hello"}
            await ws.send('{"op":"bye","id":"b-9"}')  # the second request first
            assert json.loads(await ws.recv()) == {"id": "b-9", "ok": True}
            await ws.send('{"op":"sub","id":5,"ch":"usd"}')
            assert json.loads(await ws.recv()) == {"id": 5, "ok": True, "ch": "usd"}
    finally:
        await srv.stop()


@pytest.mark.slow
async def test_devconsole_mock_serves_a_har_file(tmp_path: Path) -> None:
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "WebInspector", "version": "1"},
            "entries": [
                {
                    "startedDateTime": "2024-01-01T00:00:00.000Z",
                    "time": 10,
                    "request": {
                        "method": "GET",
                        "url": "wss://api.example/ws",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "queryString": [],
                        "cookies": [],
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "response": {
                        "status": 101,
                        "statusText": "",
                        "httpVersion": "HTTP/1.1",
                        "headers": [],
                        "cookies": [],
                        "content": {"size": 0, "mimeType": ""},
                        "redirectURL": "",
                        "headersSize": -1,
                        "bodySize": 0,
                    },
                    "cache": {},
                    "timings": {"send": 0, "wait": 0, "receive": 0},
                    "_resourceType": "websocket",
                    "_webSocketMessages": [
                        {"type": "send", "time": 1704067200.1, "opcode": 1, "data": "ping"},
                        {"type": "receive", "time": 1704067200.2, "opcode": 1, "data": "pong"},
                    ],
                }
            ],
        }
    }
    path = tmp_path / "x.har"
    path.write_text(json.dumps(har))
    proc = subprocess.Popen(
        [sys.executable, "-m", "devconsole", "mock", str(path), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("ws://127.0.0.1:")
        async with connect(url + "ws") as ws:
            await ws.send("ping")
            assert await ws.recv() == "pong"
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
