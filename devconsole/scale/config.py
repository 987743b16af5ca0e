"""Redis addresses: parsing, the password from the environment, and safe display.

``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` and ``rediss://`` (TLS). When the URL has
no password, ``DEVCONSOLE_REDIS_PASSWORD`` is used. A URL is never shown with its
password. redis-py's own query options (``?ssl_cert_reqs=none``, ``?ssl_ca_certs=...``)
are passed through.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

PASSWORD_ENV = "DEVCONSOLE_REDIS_PASSWORD"
DEFAULT_STREAM = "devconsole"
DEFAULT_MAXLEN = 2_000  # stream entries; each holds up to ~128 KiB of events


class RedisConfigError(ValueError):
    """A bad Redis URL or name (one line for the user)."""


def is_redis_url(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith(("redis://", "rediss://"))


@dataclass(frozen=True, slots=True)
class RedisTarget:
    url: str  # as given (may hold a password: never display it)
    host: str
    port: int
    db: int
    tls: bool
    password_from_env: bool
    stream: str | None = None  # ?stream=NAME in the URL (devconsole's, not redis-py's)

    @property
    def display(self) -> str:
        """The address without credentials."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{host}:{self.port}/{self.db}"

    def client(self, **kwargs: Any) -> Any:
        """A ``redis.asyncio.Redis`` for this target (connects lazily). Errors are the
        caller's to retry: redis-py's own retries are off."""
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        opts: dict[str, Any] = {
            "socket_connect_timeout": 3,
            "socket_timeout": 10,
            "retry": Retry(NoBackoff(), 0),
        }
        if self.password_from_env:
            opts["password"] = os.environ.get(PASSWORD_ENV)
        opts.update(kwargs)
        return Redis.from_url(self.url, **opts)


def parse_redis_url(url: str) -> RedisTarget:
    if not is_redis_url(url):
        raise RedisConfigError(f"not a Redis URL: expected redis://HOST:PORT/DB, got {url!r}")
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError as e:
        raise RedisConfigError(f"bad Redis URL: {e}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    stream = None
    rest = []
    for k, v in query:
        if k == "stream":
            stream = check_stream_name(v)
        else:
            rest.append((k, v))
    if stream is not None:  # redis-py would take it for a connection option
        url = urlunsplit(parts._replace(query=urlencode(rest)))
    host = parts.hostname or ""
    if not host:
        raise RedisConfigError("bad Redis URL: no host (redis://HOST:PORT/DB)")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise RedisConfigError(f"bad Redis URL: the database must be a number, got {path!r}")
    db = int(path) if path else 0
    has_password = parts.password is not None and unquote(parts.password) != ""
    return RedisTarget(
        url=url,
        host=host,
        port=port,
        db=db,
        tls=parts.scheme == "rediss",
        password_from_env=not has_password and bool(os.environ.get(PASSWORD_ENV)),
        stream=stream,
    )


def redis_error_text(e: BaseException) -> str:
    """A Redis connection error in one line, with what to do for the usual two: a server
    certificate that is not trusted, a password missing or wrong."""
    from redis.exceptions import AuthenticationError

    text = str(e).strip()
    out = f"{type(e).__name__}: {text}" if text else type(e).__name__
    low = text.lower()
    if "certificate verify failed" in low:
        out += (
            " (trust its CA with ?ssl_ca_certs=PATH in the URL, or skip the check with"
            " ?ssl_cert_reqs=none)"
        )
    elif isinstance(e, AuthenticationError) or "noauth" in low:
        out += f" (give the password in the URL, redis://:PASSWORD@HOST, or in {PASSWORD_ENV})"
    return out


def check_stream_name(name: str) -> str:
    if not name or len(name) > 200 or any(ord(c) < 0x21 or c == "\x7f" for c in name):
        raise RedisConfigError(f"bad stream name {name!r}: no spaces or control characters")
    return name


def keys(stream: str) -> dict[str, str]:
    """The Redis keys and channels of one deployment's stream."""
    return {
        "stream": stream,
        "snapshots": f"{stream}:snapshots",
        "commands": f"{stream}:commands:",  # + instance name
        "replies": f"{stream}:replies:",  # + a viewer's random id
    }
