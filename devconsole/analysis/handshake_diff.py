"""What one upgrade request lacks (or adds, or changes) compared with another: the diff
behind "the 403 connection did not send the ``session`` cookie, and its ``Origin``
differs from the working ones".

Core module: pure functions over ``Handshake`` and ``Connection``, no I/O.

- ``reference_for(conn, connections)`` picks what to compare with: the accepted (101)
  upgrade on the same endpoint (same server and path) that started most recently before
  ``conn`` (or, if none did, the first one after it).
- ``diff_handshakes(this, reference)`` compares what the *client sent*: cookies, headers
  (by name, case-insensitive, duplicates kept), query parameters, the subprotocols and the
  extensions offered. Each difference is a ``Change``: ``missing`` (the reference sent
  it, this did not), ``extra`` (the other way round) or ``different`` (both sent it, with
  other values). Headers that differ on every request by design (``Sec-WebSocket-Key``,
  trace ids) are left out; ``Cookie``, ``Sec-WebSocket-Protocol`` and
  ``Sec-WebSocket-Extensions`` are compared item by item as cookies, subprotocols and
  extensions.
- Values that look like credentials (``analysis.secrets``) are marked ``secret``; what
  shows them uses ``shown()``, which gives their name and a fingerprint unless asked for
  the value.
- ``likely_cause(conn, diff)`` says in one line why a refused upgrade was most likely
  refused, starting with what a 401/403 usually means: the credentials.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from devconsole.analysis.handshake import credentials_sent, ext_name
from devconsole.analysis.secrets import (
    JWT,
    TOKEN_PROTOCOLS,
    is_secret_header,
    is_secret_name,
    looks_like_token,
    masked,
)
from devconsole.model import Connection, ConnState, Handshake

Kind = Literal["cookies", "headers", "query", "subprotocols", "extensions"]
ChangeKind = Literal["missing", "extra", "different"]
KINDS: tuple[Kind, ...] = ("cookies", "headers", "query", "subprotocols", "extensions")
CHANGES: tuple[ChangeKind, ...] = ("missing", "different", "extra")
# What one item of each kind is called in a sentence ("cookie session").
SINGULAR: dict[Kind, str] = {
    "cookies": "cookie",
    "headers": "header",
    "query": "query parameter",
    "subprotocols": "subprotocol",
    "extensions": "extension",
}

# Request headers that differ between any two upgrades by design: a difference there
# never explains a refusal. Lowercase.
VOLATILE_HEADERS = frozenset(
    {
        "sec-websocket-key",  # a fresh nonce per request
        "x-request-id",
        "request-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "baggage",
        "sentry-trace",
        "x-amzn-trace-id",
        "x-cloud-trace-context",
        "uber-trace-id",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
    }
)
# Request headers compared item by item under another kind.
_ITEMIZED_HEADERS = frozenset({"cookie", "sec-websocket-protocol", "sec-websocket-extensions"})
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. ``value`` is this connection's (None when missing), ``ref_value``
    the reference's (None when extra)."""

    change: ChangeKind
    kind: Kind
    name: str
    value: str | None
    ref_value: str | None
    secret: bool = False

    @property
    def label(self) -> str:
        """``cookie session``, ``header Origin``..."""
        return f"{SINGULAR[self.kind]} {self.name}"

    @property
    def credential(self) -> bool:
        """The item carries a credential: any cookie, an Authorization or secret-looking
        header, a secret query parameter, a token subprotocol."""
        if self.kind == "cookies":
            return True
        if self.kind == "headers":
            return self.name.lower() in _AUTH_HEADERS or is_secret_header(self.name)
        if self.kind in ("query", "subprotocols"):
            return self.secret
        return False


@dataclass(frozen=True, slots=True)
class HandshakeDiff:
    """What ``conn``'s upgrade request lacks, adds or changes compared with
    ``reference``'s. ``same`` counts the items both sent identically."""

    conn: str
    reference: str
    changes: tuple[Change, ...]
    same: int = 0

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of(self, change: ChangeKind, kind: Kind | None = None) -> list[Change]:
        return [c for c in self.changes if c.change == change and (kind is None or c.kind == kind)]

    def names(self, change: ChangeKind, kind: Kind) -> list[str]:
        return [c.name for c in self.of(change, kind)]

    @property
    def missing_credentials(self) -> list[Change]:
        return [c for c in self.changes if c.change == "missing" and c.credential]

    def to_dict(self, show_secrets: bool = False) -> dict[str, Any]:
        """The JSON shape of ``devconsole handshake --diff``::

            {"conn": ID, "reference": ID,
             "missing": {"cookies": [name, ...], "headers": [...], "query": [...],
                         "subprotocols": [...], "extensions": [...]},
             "extra": {same keys},
             "different": {kind: [[name, this, reference], ...], ...}}

        Names repeat when a header was sent several times. Secret values are fingerprints
        unless ``show_secrets``."""
        out: dict[str, Any] = {"conn": self.conn, "reference": self.reference}
        for change in ("missing", "extra"):
            out[change] = {k: self.names(change, k) for k in KINDS}
        out["different"] = {
            k: [
                [c.name, shown(c, c.value, show_secrets), shown(c, c.ref_value, show_secrets)]
                for c in self.of("different", k)
            ]
            for k in KINDS
        }
        return out


def shown(change: Change, value: str | None, show_secrets: bool = False) -> str | None:
    """``value`` as it may be shown: a secret's fingerprint unless ``show_secrets``. An
    Authorization header keeps its scheme (``Bearer ‹secret …›``)."""
    if value is None or not change.secret or show_secrets:
        return value
    return mask_value(change.kind, change.name, value)


def mask_value(kind: Kind, name: str, value: str) -> str:
    if kind == "headers" and name.lower() in _AUTH_HEADERS:
        scheme, sep, rest = value.strip().partition(" ")
        if sep and rest and scheme.isascii() and scheme.isalpha():
            return f"{scheme} {masked(rest.strip())}"
    return masked(value)


def is_secret_value(kind: Kind, name: str, value: str) -> bool:
    """Would a diff (or the inspector) hide this value by default? Cookies, query
    parameters and subprotocols with a credential-like name or a token-like value; the
    Authorization headers, secret-named headers (``X-Api-Key``...) and headers whose value
    looks like a token."""
    if kind == "headers":
        lname = name.lower()
        return lname in _AUTH_HEADERS or is_secret_header(name) or looks_like_token(value)
    if kind in ("cookies", "query", "subprotocols"):
        return is_secret_name(name) or looks_like_token(value)
    return False


def _mask_cookie_header(value: str) -> str:
    parts = []
    for part in value.split(";"):
        name, eq, v = part.partition("=")
        if eq and is_secret_value("cookies", name.strip(), v.strip()):
            parts.append(f"{name}={masked(v.strip())}")
        else:
            parts.append(part)
    return ";".join(parts)


def _mask_header(name: str, value: str) -> str:
    lname = name.lower()
    if lname == "cookie":
        return _mask_cookie_header(value)
    if lname == "sec-websocket-protocol":
        return ", ".join(
            masked(p) if p != n else p
            for (n, p) in _subprotocols_of([x.strip() for x in value.split(",") if x.strip()])
        )
    if lname in VOLATILE_HEADERS or lname in _ITEMIZED_HEADERS:
        return value
    return mask_value("headers", name, value) if is_secret_value("headers", name, value) else value


def _mask_set_cookie(value: str) -> str:
    first, sep, attrs = value.partition(";")
    name, eq, v = first.partition("=")
    if eq and v.strip():
        return f"{name}={masked(v.strip())}{sep}{attrs}"
    return value


def _mask_response_header(name: str, value: str) -> str:
    lname = name.lower()
    if lname == "set-cookie":
        return _mask_set_cookie(value)
    if lname in ("sec-websocket-accept", "sec-websocket-extensions", "sec-websocket-protocol"):
        return value
    return mask_value("headers", name, value) if is_secret_value("headers", name, value) else value


def _mask_jwts(text: str) -> str:
    return JWT.sub(lambda m: masked(m.group()), text)


def mask_handshake(hs: Handshake) -> Handshake:
    """A copy of ``hs`` whose secret values (``is_secret_value``) are fingerprints: in the
    request headers, the cookies, the query parameters, the URL (its query is rebuilt from
    the masked parameters, and a JWT in the path is masked), and ``Set-Cookie`` or
    credential headers of the response. What the inspector and ``devconsole handshake``
    show unless asked for the secrets."""
    query = [(k, masked(v) if is_secret_value("query", k, v) else v) for k, v in hs.query]
    url = _mask_jwts(hs.url)
    if query != hs.query:
        # The URL's query is percent-encoded and hs.query decoded: rebuild it for display
        # rather than search for the encoded value.
        url = url.split("?", 1)[0] + "?" + "&".join(f"{k}={v}" if v else k for k, v in query)
    return dataclasses.replace(
        hs,
        url=url,
        path=_mask_jwts(hs.path),
        query=query,
        cookies=[(k, masked(v) if is_secret_value("cookies", k, v) else v) for k, v in hs.cookies],
        request_headers=[(k, _mask_header(k, v)) for k, v in hs.request_headers],
        response_headers=[(k, _mask_response_header(k, v)) for k, v in hs.response_headers],
    )


# --------------------------------------------------------------------------- reference


def endpoint_of(hs: Handshake) -> tuple[str, str]:
    """What makes two upgrades "the same endpoint" for a diff: the server and the path."""
    return hs.server.lower(), hs.path or "/"


def accepted(conn: Connection) -> bool:
    return conn.handshake.status == 101 and conn.state != ConnState.REFUSED


def reference_candidates(conn: Connection, connections: Iterable[Connection]) -> list[Connection]:
    """Every other connection worth comparing ``conn`` with, best first: accepted ones on
    the same endpoint (the one started most recently before ``conn`` first, then earlier
    ones, then later ones), then accepted ones elsewhere, then the rest, newest first."""
    ep = endpoint_of(conn.handshake)
    t = conn.handshake.ts
    others = [c for c in connections if c.id != conn.id]

    def rank(c: Connection) -> tuple[int, int, float]:
        ok = accepted(c)
        same = endpoint_of(c.handshake) == ep
        group = 0 if ok and same else 1 if ok else 2 if same else 3
        ts = c.handshake.ts
        if group == 0:
            return (group, 0 if ts <= t else 1, -ts if ts <= t else ts)
        return (group, 0, -ts)

    return sorted(others, key=rank)


class ReferenceIndex:
    """The accepted upgrades of some connections by endpoint and start time, to find the
    reference of many connections (the readiness report) in O(log n) each."""

    def __init__(self, connections: Iterable[Connection]) -> None:
        self._by_ep: dict[tuple[str, str], list[Connection]] = {}
        for c in connections:
            if accepted(c):
                self._by_ep.setdefault(endpoint_of(c.handshake), []).append(c)
        self._ts: dict[tuple[str, str], list[float]] = {}
        for ep, conns in self._by_ep.items():
            conns.sort(key=lambda c: c.handshake.ts)
            self._ts[ep] = [c.handshake.ts for c in conns]

    def reference_for(self, conn: Connection) -> Connection | None:
        ep = endpoint_of(conn.handshake)
        conns = self._by_ep.get(ep)
        if not conns:
            return None
        i = bisect.bisect_right(self._ts[ep], conn.handshake.ts)
        for c in reversed(conns[max(0, i - 2) : i]):  # at most conn itself is skipped
            if c.id != conn.id:
                return c
        for c in conns[i : i + 2]:
            if c.id != conn.id:
                return c
        return None


def reference_for(conn: Connection, connections: Iterable[Connection]) -> Connection | None:
    """The accepted (101) upgrade on ``conn``'s endpoint started most recently before it
    (or the first one after it); None if the endpoint has no other accepted upgrade."""
    return ReferenceIndex(connections).reference_for(conn)


def newest_connection(connections: Iterable[Connection]) -> Connection | None:
    """The connection of the newest upgrade event (a refusal counts at its answer): what
    the handshake inspector opens with nothing selected."""
    best: Connection | None = None
    best_key = (float("-inf"), "")
    for c in connections:
        hs = c.handshake
        key = (hs.ts_response if hs.ts_response is not None else hs.ts, c.id.rjust(12))
        if key > best_key:
            best, best_key = c, key
    return best


# --------------------------------------------------------------------------- items


def _headers(hs: Handshake) -> list[tuple[str, str]]:
    return [
        (k, v)
        for k, v in hs.request_headers
        if k.lower() not in VOLATILE_HEADERS and k.lower() not in _ITEMIZED_HEADERS
    ]


def _subprotocols(hs: Handshake) -> list[tuple[str, str]]:
    return _subprotocols_of(hs.requested_subprotocols)


def _subprotocols_of(offered: Sequence[str]) -> list[tuple[str, str]]:
    """Offered subprotocols as (name, value): a token carried there is named after the
    marker before it (``access_token token``) so two tokens compare as one item."""
    out: list[tuple[str, str]] = []
    for i, p in enumerate(offered):
        marker = offered[i - 1] if i else ""
        if marker.lower() in TOKEN_PROTOCOLS:
            out.append((f"{marker} token", p))
        elif looks_like_token(p):
            out.append(("token", p))
        else:
            out.append((p, p))
    return out


def _extensions(hs: Handshake) -> list[tuple[str, str]]:
    return [
        (ext_name(e), "; ".join(p.strip() for p in e.split(";"))) for e in hs.requested_extensions
    ]


def _items(hs: Handshake, kind: Kind) -> list[tuple[str, str]]:
    if kind == "cookies":
        return list(hs.cookies)
    if kind == "headers":
        return _headers(hs)
    if kind == "query":
        return list(hs.query)
    if kind == "subprotocols":
        return _subprotocols(hs)
    return _extensions(hs)


def _fold(kind: Kind) -> bool:
    """Names compared without case: headers and extension names (HTTP tokens)."""
    return kind in ("headers", "extensions")


def _compare(
    kind: Kind, this: Sequence[tuple[str, str]], ref: Sequence[tuple[str, str]]
) -> tuple[list[Change], int]:
    fold = _fold(kind)

    def key(name: str) -> str:
        return name.lower() if fold else name

    this_by: dict[str, list[tuple[str, str]]] = {}
    ref_by: dict[str, list[tuple[str, str]]] = {}
    order: list[str] = []
    for pairs, by in ((ref, ref_by), (this, this_by)):
        for name, value in pairs:
            k = key(name)
            if k not in this_by and k not in ref_by:
                order.append(k)
            by.setdefault(k, []).append((name, value))
    changes: list[Change] = []
    same = 0
    for k in order:
        mine = list(this_by.get(k, []))
        theirs = list(ref_by.get(k, []))
        # identical values pair off first (in any order), then the rest pair up in order
        rest: list[tuple[str, str]] = []
        for item in theirs:
            match = next((i for i, m in enumerate(mine) if m[1] == item[1]), None)
            if match is None:
                rest.append(item)
            else:
                del mine[match]
                same += 1
        for (name, value), (_, ref_value) in zip(mine, rest, strict=False):
            secret = is_secret_value(kind, name, value) or is_secret_value(kind, name, ref_value)
            changes.append(Change("different", kind, name, value, ref_value, secret))
        for name, ref_value in rest[len(mine) :]:
            changes.append(
                Change(
                    "missing", kind, name, None, ref_value, is_secret_value(kind, name, ref_value)
                )
            )
        for name, value in mine[len(rest) :]:
            changes.append(
                Change("extra", kind, name, value, None, is_secret_value(kind, name, value))
            )
    return changes, same


def diff_handshakes(
    this: Handshake, reference: Handshake, *, conn: str | None = None, ref: str | None = None
) -> HandshakeDiff:
    """What ``this`` upgrade request lacks, adds or changes compared with ``reference``'s.
    Changes come missing first, then different, then extra; within each, cookies, headers,
    query, subprotocols, extensions, in the order the requests sent them."""
    changes: list[Change] = []
    same = 0
    for kind in KINDS:
        found, n = _compare(kind, _items(this, kind), _items(reference, kind))
        changes.extend(found)
        same += n
    rank = {c: i for i, c in enumerate(CHANGES)}
    krank = {k: i for i, k in enumerate(KINDS)}
    changes.sort(key=lambda c: (rank[c.change], krank[c.kind]))
    return HandshakeDiff(
        conn=conn if conn is not None else this.conn,
        reference=ref if ref is not None else reference.conn,
        changes=tuple(changes),
        same=same,
    )


@functools.lru_cache(maxsize=4096)
def _header_role(name: str) -> int:
    """1: a header whose value is a credential; 2: Sec-WebSocket-Protocol; 0: other."""
    lname = name.lower()
    if lname == "sec-websocket-protocol":
        return 2
    if lname in _ITEMIZED_HEADERS or lname in VOLATILE_HEADERS:
        return 0
    return 1 if lname in _AUTH_HEADERS or is_secret_header(name) else 0


def credential_items(hs: Handshake) -> list[tuple[Kind, str, str]]:
    """The credentials an upgrade request carries, as (kind, comparison key, name): every
    cookie, the Authorization and secret-named headers, the secret query parameters and
    token subprotocols. What ``HandshakeDiff.missing_credentials`` compares, without the
    rest of the diff (the readiness report runs it on every connection)."""
    out: list[tuple[Kind, str, str]] = [("cookies", k, k) for k, _ in hs.cookies]
    protocols = False
    for k, _ in hs.request_headers:
        role = _header_role(k)
        if role == 1:
            out.append(("headers", k.lower(), k))
        elif role == 2:
            protocols = True
    out.extend(("query", k, k) for k, v in hs.query if is_secret_value("query", k, v))
    if protocols:
        out.extend(
            ("subprotocols", n, n)
            for n, v in _subprotocols(hs)
            if is_secret_value("subprotocols", n, v)
        )
    return out


def missing_credential_labels(
    this: Handshake, reference: Sequence[tuple[Kind, str, str]]
) -> list[str]:
    """The labels (``cookie session``) of the credentials in ``reference``
    (``credential_items`` of the reference's upgrade) that ``this`` did not send, each
    once: the same as ``diff_handshakes(this, ref).missing_credentials``, cheaper."""
    if not reference:
        return []
    have: dict[tuple[Kind, str], int] = {}
    for kind, key, _ in credential_items(this):
        have[(kind, key)] = have.get((kind, key), 0) + 1
    out: list[str] = []
    for kind, key, name in reference:
        n = have.get((kind, key), 0)
        if n:
            have[(kind, key)] = n - 1
            continue
        label = f"{SINGULAR[kind]} {name}"
        if label not in out:
            out.append(label)
    return out


def diff_connections(conn: Connection, reference: Connection) -> HandshakeDiff:
    return diff_handshakes(conn.handshake, reference.handshake, conn=conn.id, ref=reference.id)


def auto_diff(
    conn: Connection, connections: Iterable[Connection]
) -> tuple[Connection, HandshakeDiff] | None:
    """``conn`` against ``reference_for`` it; None when its endpoint has no other accepted
    upgrade."""
    ref = reference_for(conn, connections)
    if ref is None:
        return None
    return ref, diff_connections(conn, ref)


# --------------------------------------------------------------------------- sentences


def _names(changes: Sequence[Change], limit: int = 3) -> str:
    labels = list(dict.fromkeys(c.label for c in changes))
    if len(labels) > limit:
        return ", ".join(labels[:limit]) + f" and {len(labels) - limit} more"
    return ", ".join(labels)


def likely_cause(conn: Connection, diff: HandshakeDiff | None = None) -> str | None:
    """One line on why ``conn``'s upgrade most likely failed (or, accepted, what it lacked
    that its reference sent): the credentials first, the Origin after. None when there is
    nothing to say (an accepted upgrade that lacks nothing, a status that is not about
    credentials: ``analysis.handshake.explain_status`` covers those)."""
    hs = conn.handshake
    status = hs.status
    ref = f"#{diff.reference}" if diff is not None else ""
    changes = diff.changes if diff is not None else ()
    missing = [c for c in changes if c.change == "missing" and c.credential]
    missing.sort(key=lambda c: not c.secret)  # the session cookie before the theme cookie
    it = "it" if len({c.label for c in missing}) == 1 else "them"
    origin = next(
        (c for c in changes if c.kind == "headers" and c.name.lower() == "origin"
         and c.change != "extra"),
        None,
    )  # fmt: skip
    origin_note = ""
    if origin is not None:
        origin_note = (
            f"; the Origin differs too: {origin.value or 'none'} ({ref}: {origin.ref_value})"
        )
    if status == 101:
        if missing:
            return f"Accepted, but without the {_names(missing)} that {ref} sent{origin_note}."
        return None
    if status not in (401, 403):
        return None
    head = f"{status} {hs.reason or ('Unauthorized' if status == 401 else 'Forbidden')}"
    creds = credentials_sent(hs)
    lead = head if creds else f"{head} and no credentials were sent"
    if missing:
        return f"{lead}: {_names(missing)} missing (the accepted {ref} sent {it}){origin_note}."
    if not creds:
        return f"{lead} (no cookie, Authorization header or token){origin_note}."
    changed = [c for c in changes if c.change == "different" and c.credential]
    if changed:
        return (
            f"{head}: credentials were sent, but the {_names(changed)} differs from {ref}'s "
            f"(expired, or another user's?){origin_note}."
        )
    if origin is not None:
        return (
            f"{head} with the same credentials as {ref}: the server most likely refuses this "
            f"Origin ({origin.value or 'none'}; {ref} sent {origin.ref_value})."
        )
    return (
        f"{head}: credentials were sent and rejected (expired? wrong scope?), or the server "
        "checks the Origin."
    )


def diff_summary(diff: HandshakeDiff) -> str:
    """``1 missing, 1 different, 0 extra`` (or ``no difference``)."""
    if not diff:
        return "no difference in what the client sent"
    counts = [f"{len(diff.of(c))} {c}" for c in CHANGES]
    return ", ".join(counts)


def render_diff_text(diff: HandshakeDiff, show_secrets: bool = False) -> str:
    """Plain text of a diff (no markup), one change per line::

    missing    cookie session        ‹secret 3f9a1c0e, 22 chars›
    different  header Origin         http://127.0.0.1:5173  (#1: http://localhost:3000)
    """
    lines = [f"#{diff.conn} compared with #{diff.reference}: {diff_summary(diff)}"]
    width = max((len(c.label) for c in diff.changes), default=0)
    for c in diff.changes:
        if c.change == "missing":
            value = shown(c, c.ref_value, show_secrets) or ""
            detail = f"(#{diff.reference} sent {value})" if value else ""
        elif c.change == "extra":
            detail = shown(c, c.value, show_secrets) or ""
        else:
            detail = (
                f"{shown(c, c.value, show_secrets)}  "
                f"(#{diff.reference}: {shown(c, c.ref_value, show_secrets)})"
            )
        lines.append(f"  {c.change:<9}  {c.label:<{width}}  {detail}".rstrip())
    if diff.same:
        lines.append(f"  ({diff.same} identical item(s) not shown)")
    return "\n".join(lines) + "\n"
