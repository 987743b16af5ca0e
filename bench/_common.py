"""Shared helpers of the benchmark scripts: the processes under test (websockets server,
plain mitmdump, devconsole proxy, tap client), /proc readings and table printing.

Loopback only. Every wait is bounded; every process started here is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# --tls: the server speaks wss with a self-signed certificate (TLS_FILES), the proxies
# terminate TLS on both sides (reverse:https, ssl_insecure), clients do not verify
TLS_FILES: tuple[str, str] | None = None


def make_cert(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (with `cryptography`, a mitmproxy
    dependency); returns (certfile, keyfile)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devconsole-bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    certfile = os.path.join(directory, "bench-cert.pem")
    keyfile = os.path.join(directory, "bench-key.pem")
    with open(certfile, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(keyfile, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return certfile, keyfile


def upstream(target: int) -> str:
    """The reverse-proxy mode in front of the benchmark server."""
    return f"reverse:{'https' if TLS_FILES else 'http'}://{HOST}:{target}"


def tool(name: str) -> str:
    """A console script of the running venv (mitmdump, devconsole), else from PATH."""
    p = BIN / name
    if p.exists():
        return str(p)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found next to {sys.executable} nor on PATH")
    return found


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("PYTHONASYNCIODEBUG", None)
    return e


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    port: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def readline(self, timeout: float) -> str:
        assert self.popen.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.popen.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                raise TimeoutError(f"{self.name}: no output within {timeout}s")
        finally:
            sel.close()
        return self.popen.stdout.readline()

    def stop(self, timeout: float = 10) -> str:
        """SIGTERM (then SIGKILL); returns what remained on stdout."""
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        out = ""
        if p.stdout is not None:
            with contextlib.suppress(Exception):
                out = p.stdout.read()
            p.stdout.close()
        return out


def _popen(cmd: Sequence[str], stderr: Any = subprocess.DEVNULL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env(),
        cwd=str(ROOT),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{proc.name} not listening on {port} after {timeout}s")


def start_server() -> Proc:
    cmd = [PY, str(BENCH / "_server.py")]
    if TLS_FILES:
        cmd += ["--cert", TLS_FILES[0], "--key", TLS_FILES[1]]
    p = Proc("server", _popen(cmd))
    line = p.readline(20)
    if not line.startswith("port "):
        p.stop()
        raise RuntimeError(f"server: unexpected output {line!r}")
    p.port = int(line.split()[1])
    return p


def mitmdump_cmd(target: int, port: int, confdir: str, websocket: bool = True) -> list[str]:
    """Plain mitmdump as a reverse proxy in front of 127.0.0.1:``target``, no addon;
    ``websocket=False`` is mitmproxy's raw TCP relay."""
    cmd = [
        tool("mitmdump"),
        "--mode",
        upstream(target),
        "--listen-host",
        HOST,
        "--listen-port",
        str(port),
        "-q",
        "--set",
        f"confdir={confdir}",
    ]
    if not websocket:
        cmd += ["--set", "websocket=false"]
    if TLS_FILES:
        cmd += ["--set", "ssl_insecure=true"]
    return cmd


def start_mitmdump(target: int, confdir: str, websocket: bool = True) -> Proc:
    port = free_port()
    cmd = mitmdump_cmd(target, port, confdir, websocket)
    p = Proc("mitmdump" + ("" if websocket else " websocket=false"), _popen(cmd))
    p.port = port
    try:
        wait_listening(port, p)
    except BaseException:
        p.stop()
        raise
    return p


def start_bare_relay(target: int) -> Proc:
    """bench/_bare_relay.py in front of 127.0.0.1:``target``: an asyncio relay, no capture."""
    p = Proc("bare relay", _popen([PY, str(BENCH / "_bare_relay.py"), "--target", str(target)]))
    line = p.readline(20)
    if not line.startswith("port "):
        p.stop()
        raise RuntimeError(f"bare relay: unexpected output {line!r}")
    p.port = int(line.split()[1])
    return p


def start_devconsole(target: int, confdir: str, tap: str, extra: Sequence[str] = ()) -> Proc:
    cmd = [
        tool("devconsole"),
        "proxy",
        "--mode",
        upstream(target),
        "--listen",
        f"{HOST}:0",
        "--tap",
        tap,
        "--confdir",
        confdir,
        "--log",
        "quiet",
        *(["--set", "ssl_insecure=true"] if TLS_FILES else []),
        *extra,
    ]
    p = Proc("devconsole", _popen(cmd))
    try:
        line = p.readline(30)
        # "devconsole proxy listening on 127.0.0.1:PORT; tap at PATH"
        addr = line.split(" on ", 1)[1].split(";", 1)[0].split(",")[0].strip()
        p.port = int(addr.rsplit(":", 1)[1])
    except BaseException:
        p.stop()
        raise
    return p


def start_tapsink(tap: str, session: bool = True, nice: int = 0) -> Proc:
    """``nice`` > 0: the tap client at that niceness (``nice`` execs, so the pid is the
    client's), to tell its CPU on a shared machine from the proxy's work."""
    cmd = [PY, str(BENCH / "_tapsink.py"), tap]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    if not session:
        cmd.append("--no-session")
    p = Proc("tap client", _popen(cmd, stderr=None))
    line = p.readline(20)
    if line.strip() != "ready":
        p.stop()
        raise RuntimeError(f"tap client: unexpected output {line!r}")
    return p


def stop_tapsink(p: Proc) -> dict[str, Any]:
    out = p.stop()
    for line in reversed(out.strip().splitlines()):
        with contextlib.suppress(ValueError):
            return dict(json.loads(line))
    return {}


def run_client(workload: str, port: int, timeout: float, **kw: Any) -> dict[str, float]:
    cmd = [PY, str(BENCH / "_client.py"), workload, "--port", str(port)]
    if TLS_FILES:
        cmd.append("--tls")
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env=env(), cwd=str(ROOT)
    )
    if r.returncode != 0:
        raise RuntimeError(f"client {workload} failed: {r.stderr.strip()[-800:]}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


@contextlib.contextmanager
def tempdir(prefix: str = "dcb") -> Iterator[str]:
    # short: Unix socket paths are limited to ~107 bytes
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ /proc


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine() -> str:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    import mitmproxy.version
    import websockets

    return (
        f"{os.cpu_count()} CPUs ({cpu}); Python {platform.python_version()}; "
        f"mitmproxy {mitmproxy.version.VERSION}; websockets {websockets.__version__}; "
        f"load average {load}"
    )


# ------------------------------------------------------------------ output


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_num(x: float) -> str:
    if x != x:  # nan
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], pad: bool = False) -> str:
    """A Markdown table (readable as is in a terminal). ``pad``: rows may be longer than
    ``headers`` (extra columns headed "notes") or shorter (filled with "")."""
    if pad:
        n = max([len(headers), *(len(r) for r in rows)])
        headers = [*headers, *(["notes"] + [""] * n)[: n - len(headers)]]
        rows = [[*r, *[""] * (n - len(r))] for r in rows]
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i and c[:1] in "0123456789+-" else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            + " |"
        )

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def save_json(name: str, data: Any) -> Path:
    d = BENCH / "results"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.json"
    p.write_text(json.dumps(data, indent=2))
    return p


async def follow_tap(tap: str, on_events: Callable[[list[Any]], None]) -> None:
    """Attach to ``tap`` and feed ``on_events`` until SIGTERM/SIGINT or the tap ends.
    Prints ``ready`` once attached (the parent waits for it)."""
    import asyncio

    from devconsole.tap import TapClient

    client = TapClient(tap)
    await client.connect()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.ensure_future(client.run(on_events))
    print("ready", flush=True)
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
    await client.close()
    for t in (run, waiter):
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
