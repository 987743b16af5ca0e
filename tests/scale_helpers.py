"""Helpers for the scale-out tests: a real redis-server, devconsole proxies as
subprocesses (one mitmproxy per process, as in production), the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devconsole.scale.redisserver import RedisServer, find_redis_server
from tests.conftest import ROOT, devconsole_cmd

LISTEN_RE = re.compile(r"listening on (\S+):(\d+); tap at (\S+)")


def need_redis_server() -> None:
    """Skip (fail in CI) when redis-server is not installed."""
    if find_redis_server() is not None:
        return
    msg = "redis-server is not installed (apt-get install -y redis-server; .ci/run does it)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    need_redis_server()
    with RedisServer() as rs:
        yield rs


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT)
    e.pop("DEVCONSOLE_REDIS_PASSWORD", None)
    return e


class ProxyProcess:
    def __init__(self, proc: subprocess.Popen[str], port: int, tap: str) -> None:
        self.proc = proc
        self.port = port
        self.tap = tap


@contextlib.contextmanager
def proxy_process(tmp: Path, *args: str) -> Iterator[ProxyProcess]:
    tmp.mkdir(parents=True, exist_ok=True)
    argv = [
        "proxy",
        "--listen", "127.0.0.1:0",
        "--confdir", str(tmp / "conf"),
        "--tap", str(tmp / "tap.sock"),
        "--log", "quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(
        devconsole_cmd(*argv, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
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
        env=env(),
        cwd=str(ROOT),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
