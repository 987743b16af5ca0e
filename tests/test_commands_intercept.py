"""``devconsole break | held | forward | drop`` (and ``tail --json``) as a user runs them:
subprocesses against a real proxy with real websockets peers."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import ROOT, devconsole_cmd, run_cli, running_proxy, wait_until, ws_server


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args)


async def test_break_held_forward_drop_from_the_command_line(short_tmp: Path) -> None:
    received: list[str | bytes] = []

    async def sink(ws) -> None:  # type: ignore[no-untyped-def]
        async for m in ws:
            received.append(m)

    async with ws_server(sink) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            tap = ("--tap", rp.tap)
            r = await cli("break", "add", "json:op=order", "--timeout", "60", *tap)
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip() == "1"
            r = await cli("break", "add", "from:client binary", "--conn", "99", *tap)
            assert r.returncode == 1 and "99" in r.stderr and "\n" not in r.stderr.strip()
            r = await cli("break", "add", "(oops", *tap)
            assert r.returncode == 1 and r.stderr.startswith("devconsole: bad filter")
            r = await cli("break", "list", "--json", *tap)
            [bp] = [json.loads(line) for line in r.stdout.splitlines()]
            assert bp == {
                "id": 1,
                "filter": "json:op=order",
                "conn": None,
                "timeout": 60.0,
                "on_timeout": "forward",
                "control": False,
                "enabled": True,
            }
            async with connect(f"ws://127.0.0.1:{rp.port}/cli") as ws:
                await ws.send('{"op": "order", "qty": 1}')
                await ws.send('{"op": "order", "qty": 2}')
                await ws.send('{"op": "note"}')
                await wait_until(lambda: len(rp.session.held) == 2)
                r = await cli("held", "--json", *tap)
                assert r.returncode == 0, r.stderr
                held = [json.loads(line) for line in r.stdout.splitlines()]
                assert [h["text"] for h in held] == [
                    '{"op": "order", "qty": 1}',
                    '{"op": "order", "qty": 2}',
                ]
                h1, h2 = held
                assert set(h1) >= {"id", "conn", "from", "type", "size", "held_for", "breakpoint"}
                assert (h1["from"], h1["type"], h1["size"], h1["breakpoint"]) == (
                    "client",
                    "text",
                    25,
                    1,
                )
                assert h1["held_for"] >= 0
                r = await cli("held", *tap)
                assert r.returncode == 0 and "order" in r.stdout

                r = await cli(
                    "forward", str(h1["id"]), "--json", '{"op": "order", "qty": 10}', *tap
                )
                assert r.returncode == 0, r.stderr
                r = await cli("forward", str(h2["id"]), "--json", "{not json", *tap)
                assert r.returncode == 1 and "not valid JSON" in r.stderr
                r = await cli("drop", str(h2["id"]), *tap)
                assert r.returncode == 0, r.stderr
                await wait_until(lambda: len(received) == 2)
                assert received == ['{"op": "order", "qty": 10}', '{"op": "note"}']

                r = await cli("drop", str(h2["id"]), *tap)
                assert r.returncode == 1
                assert r.stderr.strip() == f"devconsole: message {h2['id']} is no longer held"
                r = await cli("forward", "4242", *tap)
                assert r.returncode == 1
                assert r.stderr.strip() == "devconsole: no held message 4242"

                # --all, a binary message kept binary with --hex edits
                await ws.send(b'{"op": "order"}')
                await wait_until(lambda: len(rp.session.held) == 1)
                r = await cli("forward", "--all", *tap)
                assert r.returncode == 0 and r.stdout.strip() == "1 held message(s) forwarded"
                await wait_until(lambda: len(received) == 3)
                assert received[2] == b'{"op": "order"}'

                r = await cli("break", "rm", "--all", *tap)
                assert r.returncode == 0, r.stderr
                r = await cli("break", "list", *tap)
                assert r.returncode == 0 and r.stdout == ""
                await ws.send('{"op": "order"}')
                await wait_until(lambda: len(received) == 4)


async def test_tail_json_shows_held_and_outcome(short_tmp: Path) -> None:
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            tail = subprocess.Popen(
                devconsole_cmd("tail", "--json", "--tap", rp.tap),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=str(ROOT),
            )
            try:
                r = await cli("break", "add", "from:client edit-me", "--tap", rp.tap)
                assert r.returncode == 0, r.stderr
                async with connect(f"ws://127.0.0.1:{rp.port}/t") as ws:
                    await ws.send(b"edit-me")
                    await wait_until(lambda: len(rp.session.held) == 1)
                    [hid] = rp.session.held
                    r = await cli("forward", str(hid), "--hex", "00ff", "--tap", rp.tap)
                    assert r.returncode == 0, r.stderr
                    # edited bytes keep the message binary; the echo server returns them
                    assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\xff"
                lines: list[dict] = []  # type: ignore[type-arg]

                def read_until_outcome() -> None:
                    assert tail.stdout is not None
                    for line in tail.stdout:
                        lines.append(json.loads(line))
                        if lines[-1]["event"] == "outcome":
                            return

                await asyncio.wait_for(asyncio.to_thread(read_until_outcome), 20)
            finally:
                tail.terminate()
                tail.wait(10)
            [msg] = [o for o in lines if o["event"] == "message" and o.get("held")]
            assert msg["held"] is True and msg["held_id"] == hid and msg["breakpoint"] == 1
            assert base64.b64decode(msg["b64"]) == b"edit-me"
            outcome = lines[-1]
            assert outcome["outcome"] == "edited" and outcome["held_id"] == hid
            assert outcome["seq"] == msg["seq"]
            assert base64.b64decode(outcome["b64"]) == b"\x00\xff"


@pytest.mark.parametrize(
    "args",
    [
        ("forward",),
        ("forward", "1", "--all"),
        ("drop", "--conn", "1"),
        ("forward", "--all", "--text", "x"),
    ],
)
def test_bad_usage_is_one_line(args: tuple[str, ...], short_tmp: Path) -> None:
    r = run_cli(*args, "--tap", str(short_tmp / "none.sock"))
    assert r.returncode in (1, 2)
    assert r.stderr.strip().count("\n") <= 2 and "Traceback" not in r.stderr


def test_no_proxy_is_one_line(short_tmp: Path) -> None:
    r = run_cli("held", "--tap", str(short_tmp / "none.sock"))
    assert r.returncode == 1 and r.stderr.startswith("devconsole: no devconsole tap at")


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_decoded_breakpoint_and_forward_decoded_with_python_socketio(
    short_tmp: Path,
) -> None:
    """``break add d:event=chat`` holds a Socket.IO event that asks for an ack (the
    proxy knows the protocol from the URL; the content alone would not say), and
    ``forward ID --decoded`` replaces it with an edited event whose arguments hold bytes:
    the placeholder and its binary attachment reach python-socketio's server, before the
    event that was queued behind the held one, and the client gets its ack."""
    import socketio
    from aiohttp import web

    from tests.protocol_servers import aiohttp_server

    sio = socketio.AsyncServer(async_mode="aiohttp")
    web_app = web.Application()
    sio.attach(web_app)
    got: list[tuple[str, list[object]]] = []

    @sio.on("chat")  # type: ignore[misc]
    async def chat(sid: str, *args: object) -> object:
        got.append(("chat", list(args)))
        return {"ok": True, "n": len(args)}

    @sio.on("note")  # type: ignore[misc]
    async def note(sid: str, *args: object) -> None:
        got.append(("note", list(args)))

    async with (
        aiohttp_server(web_app) as port,
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp,
    ):
        tap = ("--tap", rp.tap)
        r = await cli("break", "add", "d:event=chat", "--timeout", "60", *tap)
        assert r.returncode == 0, r.stderr
        client = socketio.AsyncClient()
        await client.connect(
            f"http://127.0.0.1:{rp.port}", transports=["websocket"], wait_timeout=10
        )
        try:
            call = asyncio.ensure_future(client.call("chat", {"text": "hi"}, timeout=60))
            await wait_until(lambda: len(rp.session.held) == 1)
            await client.emit("note", "after")
            [hid] = rp.session.held
            held = rp.session.held[hid]
            assert re.match(rb"42\d+\[", held.payload)  # an ack id: not sniffable alone
            ack = int(held.payload[2 : held.payload.index(b"[")])
            await asyncio.sleep(0.2)
            assert got == []  # held, and the note waits behind it

            # a packet the protocol cannot encode: one line, and it stays held
            r = await cli("forward", str(hid), "--decoded", '{"type": "nope"}', *tap)
            assert r.returncode == 1 and r.stderr.startswith("devconsole: socket.io: unknown")
            assert r.stderr.strip().count("\n") == 0
            r = await cli("forward", str(hid), "--decoded", "[1, 2", *tap)
            assert r.returncode == 1 and "--decoded: not JSON" in r.stderr
            r = await cli("forward", str(hid), "--proto", "stomp", *tap)
            assert r.returncode == 1 and "--proto goes with --decoded" in r.stderr
            assert hid in rp.session.held

            fields = {
                "type": "event",
                "namespace": "/",
                "event": "chat",
                "args": [{"text": "edited"}, {"$b64": "AAEC"}],
                "ack": ack,
            }
            r = await cli("forward", str(hid), "--decoded", json.dumps(fields), *tap)
            assert r.returncode == 0, r.stderr
            assert await asyncio.wait_for(call, 20) == {"ok": True, "n": 2}
            await wait_until(lambda: len(got) == 2)
            assert got == [("chat", [{"text": "edited"}, b"\x00\x01\x02"]), ("note", ["after"])]
            # the outcome is "edited"; the attachment shows as sent by devconsole
            await wait_until(lambda: rp.session.get(held.seq).outcome == "edited")
            injected = [m for m in rp.session.items() if getattr(m, "injected", False)]
            assert [m.payload for m in injected] == [b"\x00\x01\x02"]
        finally:
            await client.disconnect()
