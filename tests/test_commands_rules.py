"""``devconsole rules check | dry-run | load | clear`` as a user runs them (subprocesses)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from websockets.asyncio.client import connect

from devconsole.model import Handshake, HandshakeEvent, Message, Opcode
from devconsole.store.capture import save_capture
from tests.conftest import run_cli, running_proxy, ws_server

RULES = """
[[rule]]
name = "third"
match = "from:server"
nth = 3
drop = true

[[rule]]
name = "mock"
match = "from:client json:op=sub"
respond = { json = { re = "${json.id}" } }

[[handshake]]
path = "/x"
refuse = 503
"""


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_cli, *args)


def test_check_ok_and_errors(short_tmp: Path) -> None:
    good = short_tmp / "good.toml"
    good.write_text(RULES)
    r = run_cli("rules", "check", str(good))
    assert r.returncode == 0
    assert r.stdout.strip() == f"{good}: ok, 2 message rules, 1 handshake rule"
    bad = short_tmp / "bad.toml"
    bad.write_text('[[rule]]\nmatch = "x"\ndelay = "3 parsecs"\n')
    r = run_cli("rules", "check", str(bad))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip() == (
        f"devconsole: {bad}:3:9: delay: expected a duration like 200ms or 1.5s, not '3 parsecs'"
    )
    r = run_cli("rules", "check", str(short_tmp / "missing.toml"))
    assert r.returncode == 1 and "No such file" in r.stderr


def test_dry_run_over_a_capture_file(short_tmp: Path) -> None:
    rules = short_tmp / "r.toml"
    rules.write_text(RULES)
    hs = Handshake("1", 1.0, "c:1", "s:2", "ws", "ws://h/feed", "GET", "/feed", [], "1.1", [], [])
    hs.status = 101
    events = [HandshakeEvent(hs)]
    texts = [("server", '{"n": 1}'), ("client", '{"op": "sub", "id": 5}'), ("server", '{"n": 2}')]
    texts += [("server", '{"n": 3}'), ("server", '{"n": 4}')]
    for i, (side, text) in enumerate(texts, 1):
        b = text.encode()
        events.append(Message(i, "1", 1.0 + i, side, Opcode.TEXT, b, len(b), len(b) + 2))  # type: ignore[arg-type]
    cap = short_tmp / "s.dcap"
    save_capture(cap, events)
    r = run_cli("rules", "dry-run", str(rules), str(cap))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "mock: respond instead" in lines[0] and '"op": "sub"' in lines[0]
    assert 'answered: {"re":5}' in lines[1]
    assert "third: drop" in lines[2] and '{"n": 3}' in lines[2]
    assert lines[3] == "2 message(s) matched (third: 1, mock: 1)"
    assert "handshake rules are not replayed (1)" in lines[4]
    r = run_cli("rules", "dry-run", str(rules), str(cap), "--json")
    objs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(o["seq"], o["rules"], o["actions"]) for o in objs] == [
        (2, ["mock"], ["respond instead"]),
        (4, ["third"], ["drop"]),
    ]
    assert objs[0]["responses"] == ['{"re":5}']


async def test_load_and_clear_on_a_running_proxy(short_tmp: Path) -> None:
    rules = short_tmp / "r.toml"
    rules.write_text('[[rule]]\nmatch = "from:client drop-me"\ndrop = true\n')
    async with ws_server() as (_, port):
        async with running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as rp:
            r = await cli("rules", "load", str(rules), "--tap", rp.tap)
            assert r.returncode == 0 and r.stdout.strip() == "1 rule(s) in effect", r.stderr
            async with connect(f"ws://127.0.0.1:{rp.port}/e") as ws:
                await ws.send("drop-me")
                await ws.send("keep")
                assert await asyncio.wait_for(ws.recv(), 5) == "keep"
                r = await cli("rules", "clear", "--tap", rp.tap)
                assert r.returncode == 0
                await ws.send("drop-me")
                assert await asyncio.wait_for(ws.recv(), 5) == "drop-me"
            bad = short_tmp / "bad.toml"
            bad.write_text('[[rule]]\nmatch = "(x"\ndrop = true\n')
            r = await cli("rules", "load", str(bad), "--tap", rp.tap)
            assert r.returncode == 1 and f"{bad}:2:10: match: unclosed" in r.stderr
