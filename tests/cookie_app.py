"""A WebSocket app that refuses upgrades without a ``session`` cookie (403), and the
three clients of issue 15 connecting to it through a proxy: one with the cookie and an
Origin (accepted), one without the cookie from another Origin and one without the cookie
from the same Origin (both refused with 403). Real ``websockets`` on loopback."""

from __future__ import annotations

import contextlib
import http
from collections.abc import AsyncIterator
from dataclasses import dataclass

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response

SESSION = "alice-7f3a9c2e41d05b"
GOOD_ORIGIN = "http://localhost:3000"
OTHER_ORIGIN = "http://127.0.0.1:5173"


def _has_session(request: Request) -> bool:
    for value in request.headers.get_all("Cookie"):
        for part in value.split(";"):
            if part.strip().partition("=")[0] == "session":
                return True
    return False


def _refuse(conn: ServerConnection, request: Request) -> Response | None:
    if _has_session(request):
        return None
    return conn.respond(http.HTTPStatus.FORBIDDEN, '{"error":"no session"}\n')


async def _echo(ws: ServerConnection) -> None:
    with contextlib.suppress(Exception):
        async for msg in ws:
            await ws.send(msg)


@contextlib.asynccontextmanager
async def cookie_server() -> AsyncIterator[int]:
    async with serve(_echo, "127.0.0.1", 0, process_request=_refuse) as srv:
        yield srv.sockets[0].getsockname()[1]


@dataclass
class Outcome:
    good: int  # the status each client got
    other_origin: int
    same_origin: int


async def _client(proxy_port: int, url: str, headers: dict[str, str]) -> int:
    try:
        async with connect(
            url, proxy=f"http://127.0.0.1:{proxy_port}", additional_headers=headers
        ) as ws:
            await ws.send("hello")
            await ws.recv()
            return 101
    except InvalidStatus as e:
        return e.response.status_code


async def three_clients(proxy_port: int, server_port: int, path: str = "/app") -> Outcome:
    """Connect the three clients one after the other (so the connection ids are in this
    order) and return the status each got."""
    url = f"ws://127.0.0.1:{server_port}{path}"
    good = await _client(
        proxy_port, url, {"Cookie": f"session={SESSION}; theme=dark", "Origin": GOOD_ORIGIN}
    )
    # the theme cookie is there too: only the session cookie is missing
    other = await _client(proxy_port, url, {"Cookie": "theme=dark", "Origin": OTHER_ORIGIN})
    same = await _client(proxy_port, url, {"Cookie": "theme=dark", "Origin": GOOD_ORIGIN})
    return Outcome(good, other, same)
