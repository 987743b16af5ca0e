"""The handshake lint: the classic mistakes of a WebSocket upgrade, found in its
``Handshake``.

Core module: pure functions, no I/O. ``lint_handshake()`` flags no credentials at all,
a credential in the URL, a subprotocol or extension the two sides do not agree on, a bad
``Sec-WebSocket-Version``, ``ws://`` to a remote host, no ``Origin``, and explains what a
refused status usually means (``explain_status``). The handshake inspector
(``devconsole.tui.handshake``) shows the flags next to the lines they are about.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from devconsole.analysis.secrets import is_secret_name, subprotocol_credential
from devconsole.model import Handshake

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding about a handshake. ``topic`` ties it to the lines it is shown next to:
    auth, query, subprotocol, extensions, scheme, origin, version, status."""

    level: Level
    topic: str
    message: str


def is_loopback_host(host: str) -> bool:
    h = host.strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def host_of(hs: Handshake) -> str:
    try:
        host = urlsplit(hs.url).hostname
    except ValueError:
        host = None
    if host:
        return host
    server = hs.server
    if server.startswith("["):
        return server[1 : server.find("]")] if "]" in server else server
    return server.rsplit(":", 1)[0] if server.count(":") == 1 else server


def ext_name(ext: str) -> str:
    return ext.split(";", 1)[0].strip().lower()


STATUS_NAMES: dict[int, str] = {401: "Unauthorized", 403: "Forbidden"}

STATUS_EXPLANATIONS: dict[int, str] = {
    400: "400 Bad Request: the server rejected the upgrade request itself (missing or bad "
    "Sec-WebSocket-Key / Sec-WebSocket-Version, or no 'Connection: Upgrade').",
    401: "401 Unauthorized: the server wants credentials. Check the cookie, the "
    "Authorization header or the token query parameter the client should send.",
    403: "403 Forbidden: credentials were rejected, or the Origin is not allowed "
    "(many servers check Origin on WebSocket upgrades).",
    404: "404 Not Found: there is no WebSocket endpoint at this path. Check the path, "
    "its prefix and the trailing slash.",
    405: "405 Method Not Allowed: the endpoint does not accept GET upgrades.",
    426: "426 Upgrade Required: the server wants another protocol version "
    "(Sec-WebSocket-Version 13) or a TLS connection (wss://).",
    429: "429 Too Many Requests: the server is rate-limiting connection attempts; check "
    "the client's reconnect backoff.",
    200: "200 OK instead of 101: the server does not speak WebSocket at this path (a "
    "normal HTTP handler or an SPA fallback page answered), or a proxy in front of it "
    "dropped the Upgrade/Connection headers.",
    500: "500 Internal Server Error: the server failed while handling the upgrade.",
    502: "502 Bad Gateway: a proxy or load balancer could not reach the WebSocket "
    "backend (down, or it does not forward upgrades).",
    503: "503 Service Unavailable: the server is down, overloaded or restarting.",
    504: "504 Gateway Timeout: the backend did not answer the upgrade in time.",
}


def explain_status(hs: Handshake) -> str | None:
    """Why an upgrade that did not get a 101 failed, in one sentence; None for a 101."""
    status = hs.status
    if status is None:
        if hs.error:
            return f"No response from the server: {hs.error}."
        return None
    if status == 101:
        return None
    if status in STATUS_EXPLANATIONS:
        return STATUS_EXPLANATIONS[status]
    if 300 <= status < 400:
        location = hs.response_header("location")
        where = f" to {location}" if location else ""
        return (
            f"{status} redirect{where}: WebSocket clients do not follow redirects; "
            "connect to the final URL."
        )
    if 200 <= status < 300:
        return (
            f"{status} instead of 101: the server answered as a plain HTTP endpoint, "
            "it does not speak WebSocket at this path."
        )
    if 400 <= status < 500:
        return f"{status}: the server refused the upgrade request (client error)."
    if 500 <= status < 600:
        return f"{status}: the server or a proxy in front of it failed (server error)."
    return f"{status}: not a WebSocket upgrade response."


def credentials_sent(hs: Handshake) -> bool:
    """The upgrade request carries a credential: a cookie, an Authorization header, a
    token-like query parameter or a token in the offered subprotocols."""
    return bool(
        hs.cookies
        or hs.request_header("cookie") is not None
        or hs.request_header("authorization") is not None
        or any(is_secret_name(k) for k, _ in hs.query)
        or subprotocol_credential(hs.requested_subprotocols)
    )


def lint_handshake(hs: Handshake) -> list[Flag]:
    """Classic handshake problems, most severe first."""
    flags: list[Flag] = []
    accepted = hs.status == 101

    has_creds = credentials_sent(hs)
    status_note = explain_status(hs)
    demoted_origin = False
    if hs.status in (401, 403) and not has_creds:
        # The likely cause first; the Origin (a 403's other usual cause) after the rest.
        status_note = (
            f"{hs.status} {hs.reason or STATUS_NAMES[hs.status]} and no credentials were "
            "sent: the server most likely wants a cookie, an Authorization header or a "
            "token (compare with an accepted upgrade: the diff)."
        )
        demoted_origin = hs.status == 403
    if status_note is not None:
        flags.append(Flag("error", "status", status_note))

    # credentials
    query_creds = [k for k, _ in hs.query if is_secret_name(k)]
    if not has_creds:
        flags.append(
            Flag(
                "warning",
                "auth",
                "No credentials: no cookie, no Authorization header and no token-like "
                "query parameter (token, access_token, ticket, auth, jwt, key, sig...).",
            )
        )
    if query_creds:
        names = ", ".join(dict.fromkeys(query_creds))
        flags.append(
            Flag(
                "info",
                "query",
                f"Credential in the URL query ({names}): URLs end up in server and proxy "
                "logs; keep such tickets short-lived.",
            )
        )

    # negotiation (only meaningful once the server accepted the upgrade)
    requested = hs.requested_subprotocols
    if accepted:
        if requested and hs.subprotocol is None:
            flags.append(
                Flag(
                    "error",
                    "subprotocol",
                    f"Subprotocol requested ({', '.join(requested)}) but the server "
                    "accepted none: browsers fail such a connection.",
                )
            )
        elif hs.subprotocol is not None and hs.subprotocol not in requested:
            asked = ", ".join(requested) if requested else "none"
            flags.append(
                Flag(
                    "error",
                    "subprotocol",
                    f"The server accepted subprotocol {hs.subprotocol!r} that the client "
                    f"did not request (requested: {asked}); the client must fail the "
                    "connection (RFC 6455 4.1).",
                )
            )
        asked_ext = {ext_name(e) for e in hs.requested_extensions}
        extra = [e for e in hs.extensions if ext_name(e) not in asked_ext]
        if extra:
            flags.append(
                Flag(
                    "error",
                    "extensions",
                    f"The server accepted extension(s) the client did not offer: "
                    f"{', '.join(extra)} (RFC 6455 9.1: the client must fail).",
                )
            )

    version = hs.request_header("sec-websocket-version")
    if version is None:
        flags.append(
            Flag("error", "version", "No Sec-WebSocket-Version header: not a valid upgrade.")
        )
    elif version.strip() != "13":
        flags.append(
            Flag(
                "error",
                "version",
                f"Sec-WebSocket-Version is {version!r}; servers expect 13 (RFC 6455).",
            )
        )

    if hs.scheme == "ws":
        host = host_of(hs)
        if host and not is_loopback_host(host):
            flags.append(
                Flag(
                    "warning",
                    "scheme",
                    f"ws:// (not wss://) to the non-loopback host {host}: messages and "
                    "credentials travel in clear text, and browsers block ws:// from "
                    "https pages.",
                )
            )

    if demoted_origin:
        origin = hs.request_header("origin")
        flags.append(
            Flag(
                "info",
                "origin",
                "A 403 can also mean the Origin is not allowed "
                f"({'Origin ' + origin if origin else 'no Origin sent'}); many servers check "
                "it on upgrades.",
            )
        )
    elif hs.request_header("origin") is None:
        flags.append(
            Flag(
                "info",
                "origin",
                "No Origin header: not a browser client. Servers that check Origin "
                "refuse such upgrades.",
            )
        )

    order = {"error": 0, "warning": 1, "info": 2}
    flags.sort(key=lambda f: order[f.level])
    return flags
