"""A private ``redis-server`` on a free loopback port (tests, the demo, benchmarks).

No persistence, no protected-mode surprises, bound to 127.0.0.1 only, its files in a
temporary directory that is removed on ``stop()``. ``restart()`` keeps the port (a Redis
that went away and came back, with its data lost, as after a crash without persistence).
With ``tls`` (a certificate and its key, PEM) it speaks TLS only (``rediss://``, the
certificate as the CA to trust); with ``password`` it asks for it (``requirepass``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = (
    "redis-server is not installed: install it (Debian/Ubuntu: apt-get install -y "
    "redis-server; macOS: brew install redis) or point devconsole at a running Redis"
)


class RedisServerError(RuntimeError):
    pass


def find_redis_server() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(
        self,
        port: int | None = None,
        binary: str | None = None,
        *,
        tls: tuple[Path, Path] | None = None,
        password: str | None = None,
    ) -> None:
        exe = binary or find_redis_server()
        if exe is None:
            raise RedisServerError(INSTALL_HINT)
        self.binary = exe
        self.port = port or free_port()
        self.tls = tls
        self.password = password
        self.dir = Path(tempfile.mkdtemp(prefix="devconsole-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its address (without the password: pass that as DEVCONSOLE_REDIS_PASSWORD or
        in the URL)."""
        if self.tls is not None:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:  # TLS only: no plain-text port
            cert, key = (str(p) for p in self.tls)
            listen = [
                "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", cert, "--tls-key-file", key,
                "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
            ]  # fmt: skip
        args = [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--protected-mode", "yes",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.dir / "redis.log").read_text(errors="replace")[-500:]
                raise RedisServerError(f"redis-server exited: {tail.strip()}")
            if self._answers():
                return self
            time.sleep(0.02)
        self.stop()
        raise RedisServerError("redis-server did not start in time")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                s = raw
                if self.tls is not None:
                    ctx = ssl.create_default_context(cafile=str(self.tls[0]))
                    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except (OSError, ssl.SSLError):
            return False

    def kill(self) -> None:
        """Stop it now (no shutdown save: the data is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
