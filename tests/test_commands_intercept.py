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
                # tail must be following live events before the message is held and
                # released: one that connects after the outcome gets only the backlog
                # (the message, already released) and never prints an outcome line
                await wait_until(lambda: any(c.ready for c in rp.capture.tap.clients), 30)
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


async def test_every_option_and_outcome_from_the_command_line(short_tmp: Path) -> None:
    """``forward --text/--file``, ``forward|drop --all [--conn]``, ``break add --conn``
    (a valid id) and ``--on-timeout``, ``break rm ID``; and ``tail --json`` showing each
    outcome: forwarded, edited, dropped, timeout-forwarded, timeout-dropped."""
    received: list[tuple[str, str | bytes]] = []

    async def sink(ws) -> None:  # type: ignore[no-untyped-def]
        path = ws.request.path
        async for m in ws:
            received.append((path, m))

    def arrived(path: str) -> list[str | bytes]:
        return [m for p, m in received if p == path]

    async with ws_server(sink) as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            tap = ("--tap", rp.tap)
            tail = subprocess.Popen(
                devconsole_cmd("tail", "--json", *tap),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=str(ROOT),
            )
            try:
                # tail is attached before the first message is held
                await wait_until(lambda: len(rp.capture.tap.clients) == 1, 20)
                async with (
                    connect(f"ws://127.0.0.1:{rp.port}/a") as a,
                    connect(f"ws://127.0.0.1:{rp.port}/b") as b,
                ):
                    await wait_until(lambda: len(rp.session.connections) == 2)
                    ids = {c.handshake.path: cid for cid, c in rp.session.connections.items()}
                    ca, cb = ids["/a"], ids["/b"]

                    # --conn with a valid id: only that connection's messages are held
                    r = await cli("break", "add", "from:client", "--conn", ca, *tap)
                    assert r.returncode == 0, r.stderr
                    bp = r.stdout.strip()
                    await b.send("b passes")
                    await wait_until(lambda: arrived("/b") == ["b passes"])
                    await a.send("a text")
                    await a.send(b"a binary")
                    await wait_until(lambda: len(rp.session.held) == 2)
                    assert all(it.conn == ca for it in rp.session.held.values())
                    h_text, h_bin = sorted(rp.session.held)

                    # --text replaces the body (and sends text)
                    r = await cli("forward", str(h_text), "--text", "édité", *tap)
                    assert r.returncode == 0, r.stderr
                    # --file: the file's bytes; the message stays binary
                    body = short_tmp / "body.bin"
                    body.write_bytes(b"\x00from a file\xff")
                    r = await cli("forward", str(h_bin), "--file", str(body), *tap)
                    assert r.returncode == 0, r.stderr
                    await wait_until(lambda: len(arrived("/a")) == 2)
                    assert arrived("/a") == ["édité", b"\x00from a file\xff"]
                    r = await cli("forward", "1", "--file", str(short_tmp / "nope"), *tap)
                    assert r.returncode == 1 and "nope" in r.stderr

                    # break rm ID: the breakpoint is gone, messages flow again
                    r = await cli("break", "rm", bp, *tap)
                    assert r.returncode == 0, r.stderr
                    r = await cli("break", "list", "--json", *tap)
                    assert r.returncode == 0 and r.stdout == ""
                    await a.send("a free")
                    await wait_until(lambda: len(arrived("/a")) == 3)
                    r = await cli("break", "rm", bp, *tap)
                    assert r.returncode == 1 and "\n" not in r.stderr.strip()

                    # forward|drop --all --conn: one connection's held messages only
                    r = await cli("break", "add", "hold", *tap)
                    assert r.returncode == 0, r.stderr
                    await a.send("hold a1")
                    await b.send("hold b1")
                    await wait_until(lambda: len(rp.session.held) == 2)
                    r = await cli("drop", "--all", "--conn", ca, *tap)
                    assert r.returncode == 0 and r.stdout.strip() == "1 held message(s) dropped"
                    assert [it.conn for it in rp.session.held.values()] == [cb]
                    r = await cli("forward", "--all", "--conn", cb, *tap)
                    assert r.returncode == 0
                    assert r.stdout.strip() == "1 held message(s) forwarded"
                    await wait_until(lambda: arrived("/b")[-1:] == ["hold b1"])

                    # drop --all: every connection's; what follows still arrives, in order
                    await a.send("hold a2")
                    await b.send("hold b2")
                    await wait_until(lambda: len(rp.session.held) == 2)
                    await a.send("after a2")  # queued behind the held one
                    r = await cli("drop", "--all", *tap)
                    assert r.returncode == 0 and r.stdout.strip() == "2 held message(s) dropped"
                    await wait_until(lambda: arrived("/a")[-1:] == ["after a2"])
                    assert "hold a1" not in arrived("/a") and "hold a2" not in arrived("/a")
                    assert "hold b2" not in arrived("/b")
                    r = await cli("break", "rm", "--all", *tap)
                    assert r.returncode == 0, r.stderr

                    # --on-timeout drop, and the default (forward)
                    r = await cli(
                        "break", "add", "expire", "--timeout", "0.5", "--on-timeout", "drop", *tap
                    )
                    assert r.returncode == 0, r.stderr
                    r = await cli("break", "add", "linger", "--timeout", "0.5", *tap)
                    assert r.returncode == 0, r.stderr
                    await b.send("expire me")
                    await b.send("linger me")
                    await b.send("last")
                    await wait_until(lambda: arrived("/b")[-1:] == ["last"], 20)
                    assert arrived("/b")[-2:] == ["linger me", "last"]
                    assert "expire me" not in arrived("/b")

                want = {"forwarded", "edited", "dropped", "timeout-forwarded", "timeout-dropped"}
                lines: list[dict] = []  # type: ignore[type-arg]

                def read_outcomes() -> None:
                    assert tail.stdout is not None
                    seen: set[str] = set()
                    for line in tail.stdout:
                        lines.append(json.loads(line))
                        if lines[-1]["event"] == "outcome":
                            seen.add(lines[-1]["outcome"])
                            if seen >= want and lines[-1]["outcome"] == "timeout-forwarded":
                                return

                await asyncio.wait_for(asyncio.to_thread(read_outcomes), 20)
            finally:
                tail.terminate()
                tail.wait(10)
    held = {o["held_id"]: o for o in lines if o["event"] == "message" and o.get("held")}
    outcomes = [o for o in lines if o["event"] == "outcome"]
    by_text = {held[o["held_id"]].get("text"): o for o in outcomes}
    assert by_text["a text"]["outcome"] == "edited" and by_text["a text"]["text"] == "édité"
    assert by_text["hold a1"]["outcome"] == "dropped"
    assert by_text["hold b1"]["outcome"] == "forwarded"
    assert by_text["hold a2"]["outcome"] == "dropped"
    assert by_text["expire me"]["outcome"] == "timeout-dropped"
    assert by_text["linger me"]["outcome"] == "timeout-forwarded"
    edited_file = next(o for o in outcomes if o["held_id"] == h_bin)
    assert edited_file["outcome"] == "edited"
    assert base64.b64decode(edited_file["b64"]) == b"\x00from a file\xff"
    for o in outcomes:  # every outcome names the message it ends
        assert o["seq"] == held[o["held_id"]]["seq"]


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


def test_held_json_names_the_rule_that_holds_a_message() -> None:
    """``devconsole held --json``: a message a rules file's hold holds has breakpoint 0
    and says which rule; one a breakpoint holds has no ``rule``."""
    from devconsole.commands.intercept import held_json
    from devconsole.samples import Traffic

    t = Traffic()
    t.open("1")
    by_rule = t.text("1", "client", "buy", held=1, rule="catch buys", action="hold 30s then drop")
    by_bp = t.text("1", "client", "sell", held=2, breakpoint=3)
    a, b = held_json(by_rule, by_rule.ts + 2), held_json(by_bp, by_bp.ts)
    assert (a["breakpoint"], a["rule"], a["held_for"]) == (0, "catch buys", 2.0)
    assert b["breakpoint"] == 3 and "rule" not in b
