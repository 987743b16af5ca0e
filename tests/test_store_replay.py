"""Replay against a real websockets server: an empty diff against the same echo server,
a non-empty one against a changed server, timings, headers given again, a refused
upgrade; and resend on a new connection."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection

from devconsole.cli import main
from devconsole.model import EndEvent, HandshakeEvent, Message, Opcode
from devconsole.session import Session
from devconsole.store.capture import save_capture
from devconsole.store.conversation import conversation
from devconsole.store.load import load_session
from devconsole.store.replay import ReplayError, replay, replay_headers, resend, resend_command
from tests.conftest import ws_server
from tests.factories import make_handshake


def recording(port: int, *, cookie: str = "sid=[REDACTED]") -> list:
    hs = make_handshake(
        "7",
        ts=100.0,
        url=f"ws://127.0.0.1:{port}/chat",
        path="/chat",
        request_headers=[
            ("Host", f"127.0.0.1:{port}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Cookie", cookie),
            ("X-Trace", "abc"),
        ],
    )
    msgs = []
    seq = 0
    for i, text in enumerate(['{"n":1,"ts":5}', '{"n":2,"ts":6}', "plain"]):
        for side in ("client", "server"):
            seq += 1
            msgs.append(
                Message(
                    seq,
                    "7",
                    100.0 + i * 0.05 + (0.01 if side == "server" else 0),
                    side,
                    Opcode.TEXT,
                    text.encode(),
                    len(text),
                    0,
                )
            )
    seq += 1
    msgs.append(Message(seq, "7", 100.2, "client", Opcode.BINARY, b"\x00\x01", 2, 0))
    seq += 1
    msgs.append(Message(seq, "7", 100.21, "server", Opcode.BINARY, b"\x00\x01", 2, 0))
    return [HandshakeEvent(hs), *msgs, EndEvent("7", 101.0, True, "client")]


def conv_of(events: list):
    s = Session()
    s.apply_all(events)
    return conversation(s)


headers_seen: list[dict[str, str]] = []


async def echo(ws: ServerConnection) -> None:
    headers_seen.append(dict(ws.request.headers.raw_items()) if ws.request else {})
    with contextlib.suppress(Exception):
        async for msg in ws:
            await ws.send(msg)


async def changed(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("{"):
                d = json.loads(msg)
                d["ts"] = 999
                if d["n"] == 2:
                    d["n"] = 3
                await ws.send(json.dumps(d))
            elif msg == "plain":
                continue  # no answer: missing
            else:
                await ws.send(msg)
                await ws.send("surprise")  # added


@pytest.mark.parametrize("timing", ["fast", "reply", "original"])
async def test_replay_against_the_same_server_has_no_differences(timing: str) -> None:
    async with ws_server(echo) as (_, port):
        res = await replay(
            conv_of(recording(port)), f"ws://127.0.0.1:{port}/chat", timing=timing, idle_timeout=1.0
        )
    assert res.report() == "no differences" and not res.differs
    assert [m.payload for m in res.messages if m.side == "server"] == [
        b'{"n":1,"ts":5}',
        b'{"n":2,"ts":6}',
        b"plain",
        b"\x00\x01",
    ]


async def test_replay_against_a_changed_server_reports_each_difference() -> None:
    async with ws_server(changed) as (_, port):
        res = await replay(
            conv_of(recording(port)),
            f"ws://127.0.0.1:{port}/chat",
            ignore=["ts"],
            idle_timeout=0.5,
            reply_timeout=0.5,
        )
    assert res.differs
    kinds = sorted((c.kind, c.index) for c in res.changes)
    assert ("changed", 1) in kinds and ("missing", 2) in kinds and ("added", 3) in kinds
    text = res.report()
    assert "$.n: 2 -> 3" in text and "ts" not in text.split("$.n")[0].split("~")[-1]
    assert "differences" in text.splitlines()[-1]


async def test_redacted_headers_are_left_out_unless_given_again() -> None:
    hs = conv_of(recording(1)).handshake
    hdrs, redacted = replay_headers(hs)
    assert redacted == ["Cookie"] and ("X-Trace", "abc") in hdrs
    assert not any(k.lower() in ("host", "connection", "upgrade") for k, _ in hdrs)
    headers_seen.clear()
    async with ws_server(echo) as (_, port):
        res = await replay(
            conv_of(recording(port)),
            f"ws://127.0.0.1:{port}/chat",
            headers=[("Cookie", "sid=real")],
            idle_timeout=0.5,
        )
    assert headers_seen[0]["Cookie"] == "sid=real" and headers_seen[0]["X-Trace"] == "abc"
    assert not res.redacted


async def test_a_refused_upgrade_is_a_difference_and_no_server_is_an_error() -> None:
    async def refuse(connection, request):
        return connection.respond(403, "nope\n")

    async with ws_server(echo, process_request=refuse) as (_, port):
        res = await replay(conv_of(recording(port)), f"ws://127.0.0.1:{port}/chat")
    assert res.handshake.status == 403 and res.differs
    assert "status 101 -> 403" in res.report()
    with pytest.raises(ReplayError, match="cannot connect"):
        await replay(conv_of(recording(1)), "ws://127.0.0.1:1/chat", open_timeout=2)


async def test_resend_on_a_new_connection_and_on_a_live_one() -> None:
    async with ws_server(echo) as (_, port):
        hs = make_handshake("3", url=f"ws://127.0.0.1:{port}/x")
        got = await resend(hs, Opcode.TEXT, b"again", wait=0.5)
    assert [(m.side, m.payload) for m in got] == [("client", b"again"), ("server", b"again")]
    msg = Message(5, "3", 1.0, "client", Opcode.TEXT, b"x", 1, 7)
    cmd = resend_command(msg, b"edited")
    assert (cmd.conn, cmd.to, cmd.opcode, cmd.payload) == ("3", "server", Opcode.TEXT, b"edited")


async def test_cli_replay_exit_codes_and_record(tmp_path: Path, capsys) -> None:
    import asyncio

    async with ws_server(echo) as (_, port):
        cap = tmp_path / "rec.dcap"
        save_capture(cap, recording(port))
        run = tmp_path / "run.dcap"
        code = await asyncio.to_thread(
            main, ["replay", str(cap), "--conn", "7", "--record", str(run), "--wait", "0.5"]
        )
        assert code == 0 and "no differences" in capsys.readouterr().out
        s, _ = load_session(run)
        assert s.connections["7"].msgs_in == 4
    async with ws_server(changed) as (_, port2):
        code = await asyncio.to_thread(
            main,
            [
                "replay",
                str(cap),
                "--to",
                f"ws://127.0.0.1:{port2}/chat",
                "--ignore",
                "ts",
                "--wait",
                "0.3",
                "--reply-timeout",
                "0.3",
            ],
        )
        assert code == 1 and "$.n: 2 -> 3" in capsys.readouterr().out
    code = await asyncio.to_thread(main, ["replay", str(cap), "--to", "ws://127.0.0.1:1/"])
    assert code == 2
