"""The command line speaks the app's protocol: ``devconsole proxy --decoder``, ``tail``
(text, ``--json``, ``--filter d:...``), ``report --json`` latency, ``inject --sio-event``
and ``inject --proto``, and ``devconsole decoders``; against python-socketio through a
real ``devconsole proxy`` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, wait_until
from tests.protocol_servers import aiohttp_server
from tests.test_cli import cli, proxy_process

pytestmark = pytest.mark.timeout(120)


@pytest.mark.slow
async def test_tail_report_and_inject_speak_socketio(short_tmp: Path) -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    uploads: list[Any] = []

    @sio.on("chat")  # type: ignore[misc]
    async def chat(sid: str, data: Any) -> Any:
        return {"ok": True}

    @sio.on("upload")  # type: ignore[misc]
    async def upload(sid: str, *args: Any) -> None:
        uploads.append(list(args))

    async with aiohttp_server(app) as port:
        with proxy_process(
            short_tmp,
            "--mode",
            f"reverse:http://127.0.0.1:{port}",
            "--decoder",
            "/socket.io/*=socket.io",
        ) as px:
            client = socketio.AsyncClient()
            news: list[Any] = []
            client.on("news", lambda data: news.append(data))
            await client.connect(
                f"http://127.0.0.1:{px.port}", transports=["websocket"], wait_timeout=10
            )
            try:
                assert await client.call("chat", {"text": "hi"}, timeout=10) == {"ok": True}

                rc, out, err = await cli(
                    "tail",
                    "--tap",
                    px.tap,
                    "--json",
                    "--limit",
                    "1",
                    "--filter",
                    "proto:socket.io d:event=chat",
                )
                assert rc == 0, err
                [ev] = [e for e in map(json.loads, out.splitlines()) if e["event"] == "message"]
                assert ev["protocol"] == "socket.io"
                assert ev["decoded"]["event"] == "chat" and ev["decoded"]["args"] == [
                    {"text": "hi"}
                ]
                ack = ev["decoded"]["ack"]

                rc, out, err = await cli(
                    "tail", "--tap", px.tap, "--limit", "1", "--filter", "d:type=ack"
                )
                assert rc == 0, err
                assert f'sio ack {ack} [{{"ok":true}}]' in out

                rc, out, err = await cli("conns", "--tap", px.tap, "--json")
                conn = json.loads(out)[0]["id"]
                rc, out, err = await cli(
                    "inject",
                    conn,
                    "--tap",
                    px.tap,
                    "--to",
                    "server",
                    "--sio-event",
                    "upload",
                    "--args",
                    '["injected", {"$b64": "AAE="}]',
                )
                assert rc == 0, err
                await wait_until(lambda: uploads == [["injected", b"\x00\x01"]])
                rc, out, err = await cli(
                    "inject",
                    conn,
                    "--tap",
                    px.tap,
                    "--to",
                    "client",
                    "--proto",
                    "socket.io",
                    "--decoded",
                    '{"type":"event","namespace":"/","event":"news","args":["from devconsole"]}',
                )
                assert rc == 0, err
                await wait_until(lambda: news == ["from devconsole"])
                rc, out, err = await cli(
                    "inject",
                    conn,
                    "--tap",
                    px.tap,
                    "--to",
                    "client",
                    "--proto",
                    "socket.io",
                    "--decoded",
                    '{"type":"nope"}',
                )
                assert rc == 1 and "unknown Socket.IO packet type 'nope'" in err
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            await asyncio.sleep(0.3)
            rc, out, err = await cli("report", "--tap", px.tap, "--json")
            assert rc == 0, err
            [ep] = [e for e in json.loads(out)["endpoints"] if e["path"] == "/socket.io/"]
            assert ep["protocols"] == ["socket.io"]
            methods = {m["method"]: m for m in ep["latency"]["methods"]}
            assert methods["chat"]["count"] == 1 and methods["chat"]["p95"] is not None
            assert ep["checklist"]["replies"]["ok"] is True


def test_decoders_command_and_bad_decoder_options(short_tmp: Path) -> None:
    r = run_cli("decoders")
    assert r.returncode == 0 and "socket.io" in r.stdout and "wamp.2.msgpack" in r.stdout
    r = run_cli("tail", "--tap", str(short_tmp / "none.sock"), "--decoder", "/x=nope")
    assert r.returncode == 1 and "unknown decoder 'nope'" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("decoders", "--proto-desc", str(short_tmp / "missing.desc"))
    assert r.returncode == 1 and "--proto-desc" in r.stderr and "Traceback" not in r.stderr
