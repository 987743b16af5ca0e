"""The private redis-server the tests, the demo and the benches start: plain, TLS-only
with a password, and a restart that keeps the port but loses the data."""

from __future__ import annotations

import contextlib
import socket
import ssl
from pathlib import Path

import pytest

from devconsole.scale.redisserver import RedisServer, RedisServerError
from tests.scale_helpers import need_redis_server


def _ask(port: int, *lines: bytes, ctx: ssl.SSLContext | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1") if ctx else raw
        s.sendall(b"".join(line + b"\r\n" for line in lines))
        out = b""
        while out.count(b"\r\n") < len(lines):
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
        return out


def test_plain_server_answers_on_loopback_and_restart_loses_the_data() -> None:
    need_redis_server()
    with RedisServer() as rs:
        assert rs.url == f"redis://127.0.0.1:{rs.port}/0"
        assert _ask(rs.port, b"SET k v", b"GET k") == b"+OK\r\n$1\r\nv\r\n"
        port = rs.port
        rs.restart()
        assert rs.port == port
        assert _ask(rs.port, b"GET k") == b"$-1\r\n"  # no persistence
        d = rs.dir
    assert not d.exists()  # its files go with it


def test_tls_only_with_a_password(server_cert: tuple[Path, Path]) -> None:
    need_redis_server()
    with RedisServer(tls=server_cert, password="pw") as rs:
        assert rs.url == f"rediss://127.0.0.1:{rs.port}/0?ssl_ca_certs={server_cert[0]}"
        ctx = ssl.create_default_context(cafile=str(server_cert[0]))
        assert _ask(rs.port, b"PING", ctx=ctx).startswith(b"-NOAUTH")
        assert _ask(rs.port, b"AUTH pw", b"PING", ctx=ctx) == b"+OK\r\n+PONG\r\n"
        # plain text on the TLS port gets no answer
        out = b""
        with contextlib.suppress(OSError):
            out = _ask(rs.port, b"PING")
        assert not out.startswith((b"+PONG", b"-NOAUTH"))


def test_a_bad_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RedisServerError, match="redis-server exited"):
        fake = tmp_path / "redis-server"
        fake.write_text("#!/bin/sh\necho 'bad config' >&2\nexit 1\n")
        fake.chmod(0o755)
        RedisServer(binary=str(fake)).start(timeout=5)
