"""Shared fixtures: real websockets servers, a real devconsole proxy (mitmproxy) on loopback,
and a tap client Session. Loopback only; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from websockets.asyncio.server import Server, ServerConnection, serve

from devconsole.model import Event
from devconsole.session import Session

ROOT = Path(__file__).resolve().parent.parent

# CI runs the property tests derandomized, so a landing never depends on luck; locally
# they explore new examples on every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (Unix socket paths are limited to ~107 bytes)."""
    d = tempfile.mkdtemp(prefix="dc", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def echo_handler(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for msg in ws:
            await ws.send(msg)


@contextlib.asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Awaitable[None]] = echo_handler, **kwargs: Any
) -> AsyncIterator[tuple[Server, int]]:
    kwargs.setdefault("max_size", 64 << 20)
    async with serve(handler, "127.0.0.1", 0, **kwargs) as srv:
        port = srv.sockets[0].getsockname()[1]
        yield srv, port


@dataclass
class RunningProxy:
    proxy: Any  # DevconsoleProxy
    port: int
    tap: str
    confdir: str

    @property
    def capture(self) -> Any:
        return self.proxy.capture

    @property
    def session(self) -> Session:
        return self.proxy.capture.session


@contextlib.asynccontextmanager
async def running_proxy(
    mode: str, tmp: Path, confdir: Path | None = None, **config: Any
) -> AsyncIterator[RunningProxy]:
    from devconsole.proxy import DevconsoleProxy, ProxyConfig

    confdir = confdir or tmp / "conf"
    cfg = ProxyConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        mode=mode,
        confdir=str(confdir),
        tap=str(tmp / "tap.sock"),
        **config,
    )
    p = DevconsoleProxy(cfg)
    addrs = await p.start()
    try:
        yield RunningProxy(p, addrs[0][1], p.tap_address, str(confdir))
    finally:
        await p.stop()


class Viewer:
    """A tap client applying events to its own Session, like the TUI does."""

    def __init__(self, tap: str, token: str | None = None) -> None:
        from devconsole.tap import TapClient

        self.client = TapClient(tap, token)
        self.session = Session(max_items=1_000_000, max_bytes=1 << 32)
        self.events: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    def _on(self, evs: list[Event]) -> None:
        self.events.extend(evs)
        self.session.apply_all(evs)

    async def start(self) -> Viewer:
        await self.client.connect()
        self._task = asyncio.ensure_future(self.client.run(self._on))
        return self

    async def wait_for(self, cond: Callable[[Viewer], bool], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not cond(self):
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the viewer")
            if self._task is not None and self._task.done():
                self._task.result()
                raise AssertionError("the tap connection ended")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.client.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


@contextlib.asynccontextmanager
async def viewer(tap: str, token: str | None = None) -> AsyncIterator[Viewer]:
    v = Viewer(tap, token)
    await v.start()
    try:
        yield v
    finally:
        await v.close()


async def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ TLS test material


@pytest.fixture(scope="session")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, made with `cryptography`
    (a mitmproxy dependency)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("cert")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devconsole-test")])
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile = d / "cert.pem"
    keyfile = d / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def server_ssl(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def client_ssl_trusting(ca_pem: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_pem))
    return ctx


# ------------------------------------------------------------------ subprocess CLI


def devconsole_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "devconsole", *args]


def run_cli(*args: str, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    return subprocess.run(
        devconsole_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(ROOT),
        **kw,
    )


def need_binary(*names: str) -> str:
    """The path of the first of ``names`` on PATH (or in /usr/sbin, where Debian puts
    daemons such as mosquitto). Missing: the test is skipped with the reason, except in
    CI (CI=1/true), where it fails: CI installs it (.ci/run)."""
    for name in names:
        path = shutil.which(name) or shutil.which(name, path="/usr/sbin")
        if path:
            return path
    why = f"{' / '.join(names)} is not installed (apt-get install -y {names[0]})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why}: CI must install it (.ci/run)")
    pytest.skip(why)


# ------------------------------------------------------------------ Redis (scale-out)

from tests.scale_helpers import redis_server  # noqa: E402, F401  (a fixture)


@pytest.fixture(autouse=True)
def _decoders_named_in_a_test_stay_in_it() -> Iterator[None]:
    """``get_protocol("protobuf:live.Update")`` keeps the decoder it makes (a user who
    chose it sees it in menus from then on); a test that made one must not add a row to
    another test's protocol menu snapshot."""
    from devconsole.decoders import protocols

    before = dict(protocols._DECODERS)
    yield
    protocols._DECODERS.clear()
    protocols._DECODERS.update(before)
