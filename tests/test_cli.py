"""The CLI as a user runs it: `devconsole proxy` in a subprocess, real websockets traffic,
and `devconsole tail/conns/kill/inject` reading the tap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from devconsole.cli import build_parser, main
from tests.conftest import ROOT, devconsole_cmd, run_cli, ws_server

LISTEN_RE = re.compile(r"listening on (\S+):(\d+); tap at (\S+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


class ProxyProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int, tap: str) -> None:
        self.proc = proc
        self.port = port
        self.tap = tap


@contextlib.contextmanager
def proxy_process(tmp: Path, *args: str) -> Iterator[ProxyProcess]:
    tap = args[args.index("--tap") + 1] if "--tap" in args else str(tmp / "tap.sock")
    extra = [] if "--tap" in args else ["--tap", tap]
    proc = subprocess.Popen(
        devconsole_cmd(
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--confdir",
            str(tmp / "conf"),
            "--log",
            "quiet",
            *extra,
            *args,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=str(ROOT),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = LISTEN_RE.search(line)
        if not m:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"proxy did not start: {line!r} {err!r}")
        yield ProxyProcess(proc, int(m.group(2)), m.group(3))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def cli(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *devconsole_cmd(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
        cwd=str(ROOT),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def echo_upstream() -> AsyncIterator[int]:
    async with ws_server() as (_, port):
        yield port


async def test_tail_json_reports_a_session_completely(short_tmp: Path) -> None:
    async with echo_upstream() as up:
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:
            tail = await asyncio.create_subprocess_exec(
                *devconsole_cmd("tail", "--json", "--tap", px.tap),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=_env(),
                cwd=str(ROOT),
            )
            assert tail.stdout is not None
            async with connect(
                f"ws://127.0.0.1:{px.port}/chat?ticket=t1",
                additional_headers={"Cookie": "session=abc"},
                compression=None,
            ) as ws:
                # tail attached: it printed the handshake (live, or from the backlog)
                lines: list[dict] = [json.loads(await asyncio.wait_for(tail.stdout.readline(), 20))]
                await ws.send("hello")
                await ws.recv()
                await ws.send(b"\x00\xff")
                await ws.recv()
                await ws.send(["a", "b", "c"])
                await ws.recv()
                await (await ws.ping(b"p1"))
                await ws.close(4000, "bye now")
            while not any(x["event"] == "end" for x in lines):
                raw = await asyncio.wait_for(tail.stdout.readline(), 10)
                assert raw, "tail exited"
                lines.append(json.loads(raw))
            tail.terminate()
            await tail.wait()

    hs = lines[0]
    assert hs["event"] == "handshake"
    assert hs["url"].endswith("/chat?ticket=t1") and hs["url"].startswith("ws://")
    assert hs["request"]["method"] == "GET"
    assert ["Cookie", "session=abc"] in hs["request"]["headers"]
    assert hs["response"]["status"] == 101
    assert re.match(r"127\.0\.0\.1:\d+$", hs["client"])
    conn = hs["conn"]
    msgs = [x for x in lines if x["event"] == "message"]
    assert [(m["from"], m["type"], m.get("text"), m.get("b64")) for m in msgs] == [
        ("client", "text", "hello", None),
        ("server", "text", "hello", None),
        ("client", "binary", None, "AP8="),
        ("server", "binary", None, "AP8="),
        ("client", "text", "abc", None),
        ("server", "text", "abc", None),
    ]
    assert msgs[4]["frames"] == 4 and msgs[0]["frames"] == 1
    assert all(m["compressed"] is False and m["conn"] == conn for m in msgs)
    assert all(m["size"] == len(m.get("text", "")) or m["type"] == "binary" for m in msgs)
    pings = [x for x in lines if x["event"] == "ping"]
    pongs = [x for x in lines if x["event"] == "pong"]
    assert pings[0]["from"] == "client" and pings[0]["b64"] == "cDE="
    assert pongs[0]["from"] == "server"
    closes = [x for x in lines if x["event"] == "close"]
    assert (closes[0]["from"], closes[0]["code"], closes[0]["reason"]) == (
        "client",
        4000,
        "bye now",
    )
    assert closes[1]["from"] == "server"
    end = lines[-1]
    assert end == {
        "event": "end",
        "conn": conn,
        "ts": end["ts"],
        "clean": True,
        "closed_by": "client",
    }
    seqs = [x["seq"] for x in lines if "seq" in x]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_conns_kill_and_inject_from_the_cli(short_tmp: Path) -> None:
    async with echo_upstream() as up:
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:
            async with connect(f"ws://127.0.0.1:{px.port}/live") as ws:
                await ws.send("x")
                await ws.recv()
                rc, out, err = await cli("conns", "--json", "--tap", px.tap)
                assert rc == 0, err
                [c] = json.loads(out)
                assert c["state"] == "open" and c["msgs_out"] == 1 and c["msgs_in"] == 1
                rc, out, _ = await cli("conns", "--tap", px.tap)
                assert "ID" in out and "/live" in out

                rc, _, err = await cli(
                    "inject", c["id"], "--tap", px.tap, "--to", "client", "--text", "hi!"
                )
                assert rc == 0, err
                assert await asyncio.wait_for(ws.recv(), 5) == "hi!"

                rc, _, err = await cli(
                    "kill", c["id"], "--tap", px.tap, "--code", "4003", "--reason", "kicked"
                )
                assert rc == 0, err
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 5)
                assert (ws.close_code, ws.close_reason) == (4003, "kicked")

            rc, _, err = await cli("kill", c["id"], "--tap", px.tap, "--abort")
            assert rc == 1 and "closed" in err and "Traceback" not in err
            rc, _, err = await cli("kill", "nope", "--tap", px.tap, "--half-open")
            assert rc == 1 and "unknown connection" in err
            rc, _, err = await cli(
                "inject", c["id"], "--tap", px.tap, "--to", "server", "--hex", "zz"
            )
            assert rc == 1 and "hex" in err


async def test_tcp_tap_requires_the_token(short_tmp: Path) -> None:
    async with echo_upstream() as up:
        with proxy_process(
            short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}", "--tap", "tcp://127.0.0.1:0"
        ) as px:
            assert px.tap.startswith("tcp://127.0.0.1:")
            rc, _, err = await cli("conns", "--tap", px.tap, "--token", "wrong")
            assert rc == 1 and "token" in err and "Traceback" not in err
            rc, out, err = await cli("conns", "--json", "--tap", px.tap)  # token from its file
            assert rc == 0, err
            assert json.loads(out) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["proxy", "--listen", "nonsense"], "bad --listen"),
        (["proxy", "--listen", "127.0.0.1:99999"], "out of range"),
        (["proxy", "--listen", "127.0.0.1:0", "--mode", "bogus:x"], "bad --mode"),
        (["tail", "--tap", "{tmp}/none.sock"], "no devconsole tap"),
        (["conns", "--tap", "tcp://127.0.0.1:1"], "tap"),
    ],
)
def test_usage_errors_are_one_clear_line(
    short_tmp: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    # in-process: these fail before any proxy or logging is set up
    args = [a.replace("{tmp}", str(short_tmp)) for a in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert needle in err and err.startswith("devconsole: "), err
    assert len(err.strip().splitlines()) == 1, err


def test_startup_errors_of_the_real_binary_are_one_clear_line(short_tmp: Path) -> None:
    # mitmproxy's own option checks, through `python -m devconsole` as a user runs it
    cases = [
        (["--set", "no_such_option=1"], "no_such_option"),
        (["--set", "ssl_insecure=maybe"], "ssl_insecure"),
    ]
    for extra, needle in cases:
        r = run_cli(
            "proxy",
            "--listen",
            "127.0.0.1:0",
            *extra,
            "--tap",
            str(short_tmp / "t.sock"),
            "--confdir",
            str(short_tmp / "c"),
        )
        assert r.returncode == 1, extra
        assert needle in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2, r.stderr


def test_port_in_use_is_a_clear_error(short_tmp: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = run_cli(
            "proxy",
            "--listen",
            f"127.0.0.1:{port}",
            "--tap",
            str(short_tmp / "t.sock"),
            "--confdir",
            str(short_tmp / "c"),
        )
    finally:
        s.close()
    assert r.returncode == 1
    assert "address already in use" in r.stderr.lower() and "Traceback" not in r.stderr


def test_every_command_is_registered_with_its_handler() -> None:
    parser = build_parser()
    assert parser.parse_args([]).handler is not None  # no command: the proxy and the TUI
    for argv in (
        ["proxy"],
        ["tail"],
        ["conns"],
        ["attach"],
        ["kill", "3", "--abort"],
        ["inject", "3", "--to", "client", "--ping"],
        ["report"],
        ["record"],
        ["open", "x.dcap"],
        ["export", "x.dcap"],
        ["demo"],
        ["handshake", "3", "--diff", "auto"],
    ):
        assert callable(parser.parse_args(argv).handler), argv


def test_main_dispatches_and_turns_user_errors_into_one_line(
    short_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # in-process: the handler runs, a user error is one line and exit code 1
    assert main(["inject", "3", "--to", "client", "--hex", "zz"]) == 1
    assert capsys.readouterr().err == "devconsole: --hex: not hexadecimal: 'zz'\n"
    assert main(["conns", "--tap", str(short_tmp / "none.sock")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("devconsole: ") and "no devconsole tap" in err
    with pytest.raises(SystemExit) as info:
        main(["kill", "3", "--rst", "--code", "4000"])
    assert info.value.code == 2
    assert "--rst goes with --abort" in capsys.readouterr().err


def test_help_lists_every_command() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "devconsole", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=30,
    )
    assert r.returncode == 0
    for cmd in (
        "proxy",
        "tail",
        "conns",
        "attach",
        "kill",
        "inject",
        "report",
        "demo",
        "handshake",
    ):
        assert cmd in r.stdout


async def test_report_measures_a_known_backoff_schedule(short_tmp: Path) -> None:
    """A client that reconnects 0.4 s, 0.8 s, 1.6 s after successive kills: `report --json`
    gives those delays, in order, and judges them exponential.

    The proxy measures a delay from the end of one connection to the upgrade request of
    the next, so it also holds the time the client takes to notice the end and to connect
    again: tens of milliseconds, more on a loaded machine (0.13 s seen). Each delay is
    therefore checked against what the client did, on the same clock: at least the
    client's sleep (less a little: the proxy may record the end after the client saw it),
    at most from the kill being sent to the next connection being open."""
    schedule = [0.4, 0.8, 1.6]
    connected = asyncio.Queue()  # type: asyncio.Queue[None]
    opened: list[float] = []  # time.time() when each connection was open, client side
    kill_sent: list[float] = []

    async with echo_upstream() as up:
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:

            async def backoff_client() -> None:
                for attempt in range(len(schedule) + 1):
                    async with connect(
                        f"ws://127.0.0.1:{px.port}/feed",
                        additional_headers={"Origin": "http://app.test"},
                    ) as ws:
                        opened.append(time.time())
                        await connected.put(None)
                        with contextlib.suppress(ConnectionClosed):
                            while True:
                                await ws.recv()
                    if attempt < len(schedule):
                        await asyncio.sleep(schedule[attempt])

            task = asyncio.ensure_future(backoff_client())
            try:
                for _ in range(len(schedule)):
                    await asyncio.wait_for(connected.get(), 10)
                    rc, out, err = await cli("conns", "--json", "--tap", px.tap)
                    live = [c for c in json.loads(out) if c["state"] == "open"]
                    assert len(live) == 1, out
                    kill_sent.append(time.time())
                    rc, _, err = await cli("kill", live[0]["id"], "--tap", px.tap, "--code", "1012")
                    assert rc == 0, err
                await asyncio.wait_for(connected.get(), 10)
                rc, out, err = await cli("report", "--json", "--tap", px.tap)
                assert rc == 0, err
                rc2, text, _ = await cli("report", "--tap", px.tap)
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    report = json.loads(out)
    [ep] = [e for e in report["endpoints"] if e["path"] == "/feed"]
    assert ep["origin"] == "http://app.test"
    assert ep["connections"] == 4
    delays = ep["reconnect_delays"]
    assert len(delays) == 3, delays
    for i, (got, slept) in enumerate(zip(delays, schedule, strict=True)):
        assert slept - 0.05 <= got <= opened[i + 1] - kill_sent[i], (delays, schedule)
    assert ep["backoff"]["pattern"] == "exponential", (delays, ep["backoff"])
    assert 1.4 < ep["backoff"]["factor"] < 2.6, (delays, ep["backoff"])
    assert "checklist" in ep and "heartbeat" in ep
    assert rc2 == 0 and "/feed" in text


def needs_session_cookie(connection, request):  # type: ignore[no-untyped-def]
    """The chat app of issue 16 refuses an upgrade without a ``session`` cookie (403)."""
    if "session=" not in (request.headers.get("Cookie") or ""):
        return connection.respond(HTTPStatus.FORBIDDEN, "no session\n")
    return None


async def test_report_judges_each_client_of_an_endpoint_apart(short_tmp: Path) -> None:
    """Issue 16.1, through the real proxy: a good client, a client without the cookie
    refused and retrying every 0.3 s, and a client backing off 0.2/0.4/0.8/1.6 s on the
    same endpoint. `report --json` judges the backoff client's delays exponential and
    reports the refused retries apart, instead of one merged "fixed" series."""
    schedule = [0.2, 0.4, 0.8, 1.6]
    stop = asyncio.Event()

    async with ws_server(process_request=needs_session_cookie) as (_, up):
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:
            url = f"ws://127.0.0.1:{px.port}/chat"

            async def good() -> None:
                async with connect(url, additional_headers={"Cookie": "session=good"}):
                    await stop.wait()

            async def no_cookie() -> None:
                while not stop.is_set():
                    with contextlib.suppress(InvalidStatus):
                        async with connect(url):
                            pass
                    await asyncio.sleep(0.3)

            async def backoff() -> None:
                for delay in [*schedule, None]:
                    async with connect(url, additional_headers={"Cookie": "session=bo"}):
                        await asyncio.sleep(0.2)
                    if delay is not None:
                        await asyncio.sleep(delay)

            tasks = [asyncio.ensure_future(f()) for f in (good, no_cookie)]
            try:
                await asyncio.wait_for(backoff(), 30)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*tasks), 10)
                rc, out, err = await cli("report", "--json", "--tap", px.tap)
                assert rc == 0, err
            finally:
                stop.set()
                for t in tasks:
                    t.cancel()
    [ep] = [e for e in json.loads(out)["endpoints"] if e["path"] == "/chat"]
    assert ep["backoff"]["pattern"] == "exponential", ep
    assert 1.7 < ep["backoff"]["factor"] < 2.3
    assert ep["reconnect_delays"] == pytest.approx(schedule, abs=0.1)
    clients = {c["client"]: c for c in ep["clients"]}
    assert len(clients) == 3, clients
    [refused] = [c for c in ep["clients"] if c["refused"] == c["connections"]]
    assert "session" not in refused["client"]
    rr = ep["refused_retries"]
    assert rr["clients"] == 1 and rr["status"] == 403
    assert rr["count"] == refused["connections"] >= 5
    assert 0.25 < rr["interval"] < 0.6
    item = ep["checklist"]["reconnect"]
    assert item["ok"] is True and "exponential" in item["detail"], item
    assert "fixed" not in item["detail"]


async def chat_server(ws) -> None:  # type: ignore[no-untyped-def]
    """Answers {"type":"ping"} with {"type":"pong"} and floods presence updates at 20/s."""

    async def presence() -> None:
        while True:
            await ws.send('{"type":"presence","user":"bob","online":true}')
            await asyncio.sleep(0.05)

    flood = asyncio.ensure_future(presence())
    try:
        async for msg in ws:
            if json.loads(msg).get("type") == "ping":
                await ws.send('{"type":"pong"}')
    except ConnectionClosed:
        pass
    finally:
        flood.cancel()


async def test_report_after_a_half_open_counts_only_real_answers(short_tmp: Path) -> None:
    """Issue 16.2, through the real proxy: a client with an app heartbeat (every 0.6 s)
    beside a presence flood and the server's protocol pings; devconsole half-opens the
    connection; the client misses 3 pongs and closes with 4001. The report names the pong
    (not a presence update) as the answer, invents no server heartbeat, counts the
    dropped pings and says what happened in one sentence; the 4001 is the connection's."""
    closed = asyncio.Event()
    ready = asyncio.Event()

    async with ws_server(chat_server, ping_interval=0.5, ping_timeout=None) as (_, up):
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:

            async def client() -> None:
                async with connect(
                    f"ws://127.0.0.1:{px.port}/chat", ping_interval=None, close_timeout=0.5
                ) as ws:
                    answered = asyncio.Event()

                    async def read() -> None:
                        with contextlib.suppress(ConnectionClosed):
                            async for msg in ws:
                                if json.loads(msg).get("type") == "pong":
                                    answered.set()

                    reader = asyncio.ensure_future(read())
                    missed = sent = 0
                    while missed < 3:
                        answered.clear()
                        await ws.send(json.dumps({"type": "ping", "ts": sent}))
                        sent += 1
                        if sent == 8:
                            ready.set()
                        await asyncio.sleep(0.6)
                        missed = 0 if answered.is_set() else missed + 1
                    await ws.close(4001, "heartbeat timeout")
                    reader.cancel()
                closed.set()

            task = asyncio.ensure_future(client())
            try:
                await asyncio.wait_for(ready.wait(), 20)
                rc, out, err = await cli("conns", "--json", "--tap", px.tap)
                [conn] = [c["id"] for c in json.loads(out) if c["state"] == "open"]
                rc, _, err = await cli("kill", conn, "--half-open", "--tap", px.tap)
                assert rc == 0, err
                await asyncio.wait_for(closed.wait(), 20)
                await asyncio.wait_for(task, 5)
                rc, out, err = await cli("report", "--json", "--tap", px.tap)
                assert rc == 0, err
                rc, conns_out, _ = await cli("conns", "--json", "--tap", px.tap)
            finally:
                task.cancel()
    [ep] = json.loads(out)["endpoints"]
    hb = ep["heartbeat"]
    assert [(a["side"], a["signature"], a["reply"]) for a in hb["app"]] == [
        ("client", '{"type":"ping"}', '{"type":"pong"}')
    ]
    [ho] = hb["half_open"]
    assert ho["conn"] == conn
    assert ho["app_unanswered"] >= 3
    assert ho["pings_unanswered"].get("server", 0) >= 1  # dropped protocol pings count
    assert (ho["closed_by"], ho["close_code"]) == ("client", 4001)
    assert ho["summary"].startswith(f"{ho['app_unanswered']} app pings unanswered; ")
    assert "client closed 4001 " in ho["summary"] and "after half-open" in ho["summary"]
    assert "presence" not in ep["checklist"]["heartbeat"]["detail"]
    assert f"#{conn} after half-open: " in ep["checklist"]["heartbeat"]["detail"]
    assert hb["server_pings"]["unanswered"] >= 1
    [c] = [c for c in json.loads(conns_out) if c["id"] == conn]
    assert (c["close_code"], c["closed_by"]) == (4001, "client")


async def flood_server(ws) -> None:  # type: ignore[no-untyped-def]
    """Sends small messages at about 5,000/s until the client goes (at most 60 s)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    with contextlib.suppress(ConnectionClosed):
        while loop.time() - start < 60:
            for _ in range(50):
                await ws.send(f'{{"type":"presence","n":{sent}}}')
                sent += 1
            ahead = sent / 5000 - (loop.time() - start)
            await asyncio.sleep(max(ahead, 0))


async def test_conns_and_report_answer_under_a_flood(short_tmp: Path) -> None:
    """Issue 16.4: under traffic `conns` and `report` waited for a quiet 0.3 s that never
    came, until their 10 s timeout. The backlog now ends with a marker: they answer as
    soon as they have it (the time itself is measured by bench/oneshot.py)."""
    async with ws_server(flood_server) as (_, up):
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:
            async with connect(f"ws://127.0.0.1:{px.port}/presence") as ws:
                for _ in range(5000):  # a second of flood in the proxy's buffer
                    await ws.recv()
                reader = asyncio.ensure_future(drain(ws))
                try:
                    rc, out, err = await asyncio.wait_for(
                        cli("conns", "--json", "--tap", px.tap), 8
                    )
                    assert rc == 0, err
                    rc, rep, err = await asyncio.wait_for(
                        cli("report", "--json", "--tap", px.tap), 8
                    )
                    assert rc == 0, err
                finally:
                    reader.cancel()
    [conn] = json.loads(out)
    assert conn["state"] == "open" and conn["msgs_in"] >= 5000
    [ep] = json.loads(rep)["endpoints"]
    assert ep["path"] == "/presence"


async def drain(ws) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def test_the_cli_finds_the_tuis_proxy_without_tap(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16.3: with `devconsole` (proxy + TUI) running, `devconsole conns` in another
    terminal failed with "no devconsole tap at .../tap.sock": the TUI's proxy listens on
    tap-PID.sock, beside stale sockets of dead ones. Now the one live proxy is found, the
    stale sockets are removed, and with two running they are listed to choose from."""
    from devconsole.childproxy import ChildProxy

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(short_tmp))
    runtime = short_tmp / "devconsole"
    runtime.mkdir(mode=0o700)
    stale = runtime / "tap-999999.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    async with echo_upstream() as up:
        args = build_parser().parse_args(
            ["--listen", "127.0.0.1:0", "--confdir", str(short_tmp / "conf"),
             "--mode", f"reverse:http://127.0.0.1:{up}"]
        )  # fmt: skip
        child = ChildProxy(args)  # what `devconsole` starts before its TUI
        try:
            child.wait_ready()
            assert Path(child.tap).parent == runtime and child.tap != str(stale)
            async with connect(f"ws://{child.listen}/found") as ws:
                await ws.send("x")
                await ws.recv()
                rc, out, err = await cli("conns", "--json")
                assert rc == 0, err
                assert [c["url"].rsplit("/", 1)[1] for c in json.loads(out)] == ["found"]
                assert not stale.exists()
                with proxy_process(short_tmp, "--tap", str(runtime / "tap.sock")) as other:
                    rc, out, err = await cli("conns")
                    assert rc == 1 and out == ""
                    [line] = err.splitlines()
                    assert "2 devconsole proxies are running, choose one with --tap: " in line
                    assert child.tap in line and other.tap in line
                    rc, out, err = await cli("conns", "--tap", child.tap)
                    assert rc == 0, err
        finally:
            child.stop()
    rc, out, err = await cli("conns")
    assert rc == 1 and "no devconsole proxy is running" in err


async def test_record_then_export_redacted_and_not(short_tmp: Path) -> None:
    cap = short_tmp / "session.dcap"
    async with echo_upstream() as up:
        with proxy_process(short_tmp, "--mode", f"reverse:http://127.0.0.1:{up}") as px:
            async with connect(
                f"ws://127.0.0.1:{px.port}/secret?ticket=tkt-123",
                additional_headers={"Cookie": "session=sekrit"},
            ) as ws:
                await ws.send('{"password": "hunter2", "text": "hi"}')
                await ws.recv()
            rc, _, err = await cli("record", str(cap), "--tap", px.tap, "--duration", "1.0")
            assert rc == 0, err
    assert cap.exists()
    rc, out, err = await cli("export", str(cap))
    assert rc == 0, err
    assert "hunter2" not in out and "sekrit" not in out and "tkt-123" not in out
    assert "[REDACTED]" in out and "password" in out  # the name stays, the value goes
    rc, out, err = await cli("export", str(cap), "--no-redact")
    assert rc == 0 and "hunter2" in out and "sekrit" in out
    har = short_tmp / "s.har"
    rc, _, err = await cli("export", str(cap), "--format", "har", "-o", str(har))
    assert rc == 0, err
    log = json.loads(har.read_text())["log"]
    assert log["version"] == "1.2" and len(log["entries"]) == 1
    rc, _, err = await cli("export", str(short_tmp / "missing.dcap"))
    assert rc == 1 and "Traceback" not in err
    (short_tmp / "junk.dcap").write_bytes(b"not a capture")
    rc, _, err = await cli("export", str(short_tmp / "junk.dcap"))
    assert rc == 1 and "capture" in err and "Traceback" not in err


def test_busy_addresses_are_one_line_each(short_tmp: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    busy = s.getsockname()[1]
    conf = ["--confdir", str(short_tmp / "c")]
    try:
        with proxy_process(short_tmp, "--tap", str(short_tmp / "held.sock")):
            cases = [
                (
                    ["proxy", "--listen", f"127.0.0.1:{busy}", "--tap", str(short_tmp / "a.sock")],
                    f"devconsole: cannot listen on 127.0.0.1:{busy}: address already in use",
                ),
                (
                    ["proxy", "--listen", "127.0.0.1:0", "--tap", f"tcp://127.0.0.1:{busy}"],
                    f"devconsole: cannot listen on tap tcp://127.0.0.1:{busy}: address in use",
                ),
                (
                    ["proxy", "--listen", "127.0.0.1:0", "--tap", str(short_tmp / "held.sock")],
                    f"devconsole: tap socket {short_tmp / 'held.sock'} is in use",
                ),
                (
                    ["proxy", "--listen", "127.0.0.1:0", "--mode", "reverse:notaurl"],
                    "devconsole: bad --mode 'reverse:notaurl': ",
                ),
            ]
            for args, first in cases:
                r = run_cli(*args, *conf)
                assert r.returncode == 1, (args, r.stderr)
                assert r.stderr.startswith(first), (args, r.stderr)
                assert len(r.stderr.splitlines()) == 1, r.stderr
    finally:
        s.close()


def test_listening_on_every_interface_is_warned_about(short_tmp: Path) -> None:
    proc = subprocess.Popen(
        devconsole_cmd(
            "proxy", "--listen", "*:0", "--tap", f"tcp://0.0.0.0:{free_port()}",
            "--confdir", str(short_tmp / "c"), "--log", "quiet",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=str(ROOT),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()  # it runs, and ...
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    lines = [line for line in err.splitlines() if "warning" in line]
    assert len(lines) == 2, err  # ... says so once for each
    assert lines[0].startswith("devconsole: warning: the proxy listens on *:0: ")
    assert lines[1].startswith("devconsole: warning: the tap listens on tcp://0.0.0.0:")
    assert all("reachable from the network" in line for line in lines)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_export_refuses_to_overwrite_its_input(short_tmp: Path) -> None:
    from devconsole.model import HandshakeEvent
    from devconsole.store.capture import save_capture
    from tests.factories import make_handshake

    cap = short_tmp / "s.dcap"
    save_capture(cap, [HandshakeEvent(make_handshake("1"))])
    before = cap.read_bytes()
    link = short_tmp / "link.dcap"
    link.symlink_to(cap)
    hard = short_tmp / "hard.dcap"
    os.link(cap, hard)
    for args in (
        [str(cap), "-o", str(cap)],
        [str(cap), "-o", str(link)],
        [str(link), "-o", str(cap)],
        [str(cap), "-o", str(hard), "--format", "har"],
    ):
        r = run_cli("export", *args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("devconsole: "), r.stderr
        assert "is the capture being exported" in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert cap.read_bytes() == before
    r = run_cli("export", str(cap), "-o", str(short_tmp / "out.jsonl"))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "127.0.0.1:0"],
        ["demo", "--listen", "127.0.0.1:0"],
        ["attach", "--tap", "/nonexistent/tap.sock"],
        ["open", "/nonexistent/capture.dcap"],
    ],
    ids=["default", "demo", "attach", "open"],
)
def test_the_tui_without_a_terminal_says_so_in_one_line(args: list[str]) -> None:
    """`devconsole demo | tee log`: no TUI drawn into the pipe (and over the screen)."""
    try:
        r = run_cli(*args, timeout=20, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError("the TUI started without a terminal") from None
    assert r.returncode == 1, r
    assert r.stdout == ""
    [line] = r.stderr.splitlines()
    assert line.startswith("devconsole: ") and "not a terminal" in line, line
    assert "devconsole proxy" in line and "devconsole tail" in line, line
    if args[0] == "demo":
        assert "--headless" in line


def test_only_chaos_takes_what_follows_double_dash_as_a_command_line() -> None:
    """``devconsole chaos ... -- CMD ARGS``: the client's options stay its own (argparse
    alone would read ``--mode`` after ``--`` as a stray argument); any other command
    parses ``--`` as argparse does."""
    from devconsole.cli import _parse

    parser = build_parser()
    args = _parse(
        parser,
        ["chaos", "s.toml", "--mode", "reverse:http://h:1", "--", "./c", "--mode", "x", "{url}"],
    )
    assert args.scenario == "s.toml" and args.mode == "reverse:http://h:1"
    assert args.client == ["./c", "--mode", "x", "{url}"]
    args = _parse(parser, ["chaos", "s.toml", "--mode", "reverse:http://h:1"])
    assert args.client == []
    args = _parse(parser, ["inject", "--to", "client", "--text", "hi", "--", "-3"])
    assert args.conn == "-3" and args.text == "hi" and not hasattr(args, "client")
    with pytest.raises(SystemExit):
        _parse(parser, ["conns", "--", "chaos"])  # not chaos's: argparse's own error
