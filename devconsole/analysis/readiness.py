"""The production-readiness report of observed traffic, per endpoint.

Core module: no I/O. ``build_report(session, heartbeat, now)`` returns a JSON-ready dict::

    {"endpoints": [{"path", "origin", "connections", "reconnect_delays": [s, ...],
                    "backoff": {...}, "clients": [...], "refused_retries": {...},
                    "heartbeat": {...}, "checklist": {...}}]}

Backoff is judged per client (``clients``: ``{"client", "connections", "refused",
"reconnect_delays", "backoff"}``); the endpoint's ``reconnect_delays`` and ``backoff``
are its one connected client's, or ``"mixed"`` when several clients reconnected.
Clients refused every time are ``refused_retries`` (``{"count", "clients", "interval",
"status"}``), not a backoff.

Each checklist item is ``{"ok": True | False | None, "detail": str}`` (``None``: cannot
tell from what was observed, or informational), sometimes with extra data. Items:
``heartbeat``, ``pongs``, ``reconnect``, ``wss``, ``auth``, ``compression``,
``largest_message``, ``close_codes``, ``refused_upgrades``, ``backplane`` (observed from
the fan-out trace when a proxy records the app's Redis backplane; each endpoint then also
has ``"backplane": {"publications", "deliveries", "missed", "delay_p50", "delay_p95",
...}``), and ``replies`` where an application protocol pairs requests with replies
(requests still unanswered when their connection ended). Each endpoint also has
``protocols`` (the decoders in use) and ``latency``: request -> first answer per method or
event (count, p50, p95, max; ``devconsole.analysis.pairing``). ``render_text(report)`` is
the plain-text version. ``observe(session)`` attaches what a report needs to a Session
that is about to be fed. The ``auth`` item's ``lacking`` names the connections whose
upgrade lacked credentials that the accepted upgrades on their endpoint sent
(``analysis.handshake_diff``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devconsole.analysis.backoff import Backoff, EndpointReport, analyze_endpoints
from devconsole.analysis.fanout import SLOW_FANOUT, FanoutTracer, is_backplane
from devconsole.analysis.handshake_diff import (
    ReferenceIndex,
    credential_items,
    missing_credential_labels,
)
from devconsole.analysis.heartbeat import HeartbeatMonitor, HeartbeatReport, PingStats, median
from devconsole.analysis.pairing import PairTracker
from devconsole.analysis.secrets import (
    JWT,
    is_secret_field,
    is_secret_name,
    subprotocol_credential,
)
from devconsole.decoders import safe_text
from devconsole.decoders.protocols import DecoderRule
from devconsole.decoders.tracker import ProtocolTracker
from devconsole.model import (
    CLOSE_CODES,
    Connection,
    ConnState,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    close_code_meaning,
)
from devconsole.text import conn_tag, fmt_bytes, fmt_duration

if TYPE_CHECKING:  # the Session is these functions' input; analysis does not import it
    from devconsole.session import Session

LARGE_MESSAGE = 1 << 20  # a message above this blocks its connection for a noticeable time
SMALL_MESSAGES = 1024  # below this compression hardly matters
MIN_OBSERVE = 30.0  # a connection shorter than this says little about heartbeats

_AUTH_TYPES = frozenset(
    {
        "auth", "authenticate", "authentication", "authorize", "authorization", "login",
        "identify", "signin", "sign_in", "token",
    }
)  # fmt: skip
_TYPE_KEYS = ("type", "op", "action", "event", "kind", "method", "cmd", "command", "t")
# Close codes that say something went wrong.
_BAD_CODES = frozenset({1002, 1003, 1007, 1009, 1010, 1011, 1014, 1015})
# Refusals that are expected conditions rather than breakage.
_EXPECTED_REFUSALS = frozenset({401, 403, 429, 503})


# --------------------------------------------------------------------------- observing


@dataclass(slots=True)
class Analysis:
    """What a report observes while a Session is fed: protocols, heartbeats, pairs."""

    tracker: ProtocolTracker
    heartbeat: HeartbeatMonitor
    pairs: PairTracker


def observe(session: Session, rules: Sequence[DecoderRule] = ()) -> Analysis:
    """Attach a ProtocolTracker, a HeartbeatMonitor and a PairTracker to ``session`` (in
    the order they need) before it is fed; pass the result's monitor and pairs to
    ``build_report``."""
    a = Analysis(ProtocolTracker(rules, max_cached=10_000), HeartbeatMonitor(), PairTracker())
    a.tracker.listeners += [a.heartbeat.on_decoded, a.pairs.on_decoded]
    session.observers += [a.tracker.on_event, a.heartbeat.on_event, a.pairs.on_event]
    return a


def pairs_from_session(
    session: Session, rules: Sequence[DecoderRule] = ()
) -> tuple[PairTracker, dict[str, str]]:
    """A PairTracker fed with what ``session`` still has buffered, and each connection's
    protocol."""
    tracker = ProtocolTracker(rules, max_cached=0)
    pairs = PairTracker()
    tracker.listeners.append(pairs.on_decoded)
    for c in session.connections.values():
        ev = HandshakeEvent(c.handshake)
        tracker.on_event(ev)
        pairs.on_event(ev)
    for item in session.items():
        tracker.on_event(item)
    for c in session.connections.values():
        if c.ts_end is not None:
            pairs.end(c.id)
    protos = {cid: p for cid in session.connections if (p := tracker.protocol_of(cid))}
    return pairs, protos


# --------------------------------------------------------------------------- formatting


def _item(ok: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, **extra}


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None else round(x, nd)


# --------------------------------------------------------------------------- auth


def subprotocol_token(hs: Handshake) -> str | None:
    """A credential carried in Sec-WebSocket-Protocol, described (never the token itself)."""
    return subprotocol_credential(hs.requested_subprotocols)


def query_tickets(hs: Handshake) -> list[str]:
    out: list[str] = []
    for name, value in hs.query:
        if value and is_secret_name(name):
            out.append(name)
    return out


def _auth_keys(value: Any, depth: int = 0) -> bool:
    if depth > 3:
        return False
    if isinstance(value, dict):
        for k, v in value.items():
            if is_secret_field(str(k)):
                return True
            if _auth_keys(v, depth + 1):
                return True
    elif isinstance(value, list):
        return any(_auth_keys(v, depth + 1) for v in value[:16])
    return False


def first_message_auth(opcode: int, payload: bytes) -> str | None:
    """Describe an authentication first message (``{"type":"auth",...}``, a token key,
    a JWT), or None."""
    if opcode != Opcode.TEXT:
        return None
    text = payload.decode("utf-8", "replace")
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        for k in _TYPE_KEYS:
            v = value.get(k)
            if isinstance(v, str) and v.lower() in _AUTH_TYPES:
                return f'first message {{"{k}":"{v}"}}'
        if _auth_keys(value):
            return "first message carries a credential field"
    elif isinstance(value, list) and _auth_keys(value):
        return "first message carries a credential field"
    if JWT.search(text):
        return "first message carries a JWT"
    return None


def handshake_auth(hs: Handshake) -> list[str]:
    """Credentials seen in an upgrade request, described (values are never included)."""
    out: list[str] = []
    names = [k for k, _ in hs.cookies]
    if not names and hs.request_header("cookie"):
        names = ["?"]
    if names:
        out.append("cookie " + ", ".join(dict.fromkeys(names)))
    authz = hs.request_header("authorization")
    if authz:
        out.append("Authorization " + authz.split(" ", 1)[0])
    tickets = query_tickets(hs)
    if tickets:
        out.append("query " + ", ".join(dict.fromkeys(tickets)))
    sp = subprotocol_token(hs)
    if sp:
        out.append(sp)
    return out


def _first_client_message(
    session: Session, monitor: HeartbeatMonitor | None, conn: str
) -> tuple[int, bytes] | None:
    if monitor is not None:
        fm = monitor.first_client_message(conn)
        if fm is not None:
            return fm
    for item in session.buffer.conn_items(conn):
        if isinstance(item, Message) and item.side == "client":
            return item.opcode, item.payload[:1024]
    return None


# --------------------------------------------------------------------------- checklist


def _ping_agg(stats: Sequence[PingStats]) -> dict[str, Any] | None:
    used = [s for s in stats if s.count]
    if not used:
        return None
    n_int = sum(max(s.count - 1, 0) for s in used)
    n_rtt = sum(s.rtt_count for s in used)
    interval = (
        sum((s.interval_mean or 0.0) * max(s.count - 1, 0) for s in used) / n_int if n_int else None
    )
    jitter = (
        sum((s.interval_jitter or 0.0) * max(s.count - 1, 0) for s in used) / n_int
        if n_int
        else None
    )
    rtt = sum((s.rtt_mean or 0.0) * s.rtt_count for s in used) / n_rtt if n_rtt else None
    p50s = [s.rtt_p50 for s in used if s.rtt_p50 is not None]
    maxes = [s.rtt_max for s in used if s.rtt_max is not None]
    return {
        "connections": len(used),
        "pings": sum(s.count for s in used),
        "pongs": n_rtt,
        "interval": _r(interval),
        "jitter": _r(jitter),
        "rtt_mean": _r(rtt),
        "rtt_p50": _r(median(p50s)),
        "rtt_max": _r(max(maxes) if maxes else None),
        "unanswered": sum(s.unanswered for s in used),
    }


def _heartbeat(
    reports: Sequence[HeartbeatReport], conns: Sequence[Connection], now: float
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The endpoint's heartbeat summary, and its ``heartbeat`` and ``pongs`` items."""
    client = _ping_agg([r.client_pings for r in reports])
    server = _ping_agg([r.server_pings for r in reports])
    pinger = "both" if client and server else "client" if client else "server" if server else "none"
    apps: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports:
        for a in r.app_heartbeats:
            e = apps.setdefault(
                (a.side, a.signature),
                {"side": a.side, "signature": a.signature, "connections": 0, "count": 0,
                 "_iv": [], "_rtt": [], "reply": None},
            )  # fmt: skip
            e["connections"] += 1
            e["count"] += a.count
            e["_iv"].append(a.interval_mean)
            if a.reply is not None:
                e["reply"] = a.reply
                if a.rtt_p50 is not None:
                    e["_rtt"].append(a.rtt_p50)
    app_list = []
    for e in apps.values():
        iv, rtt = e.pop("_iv"), e.pop("_rtt")
        e["interval"] = _r(median(iv))
        e["rtt_p50"] = _r(median(rtt))
        app_list.append(e)
    seen = [r for r in reports if r.seen]
    unsolicited = sum(r.unsolicited_pongs_client + r.unsolicited_pongs_server for r in reports)
    half_open = [(r.conn, r.half_open) for r in reports if r.half_open is not None]
    summary: dict[str, Any] = {
        "seen": bool(seen),
        "connections": len(reports),
        "with_heartbeat": len(seen),
        "pinger": pinger,
        "client_pings": client,
        "server_pings": server,
        "unsolicited_pongs": unsolicited,
        "app": app_list,
        "half_open": [{"conn": cid, **ho.to_dict()} for cid, ho in half_open],
    }

    parts: list[str] = []
    for side, agg in (("server", server), ("client", client)):
        if agg is None:
            continue
        s = f"{side} pings"
        if agg["interval"] is not None:
            s += f" every {fmt_duration(agg['interval'])} (jitter {fmt_duration(agg['jitter'])})"
        if agg["rtt_p50"] is not None:
            s += f", pong RTT p50 {fmt_duration(agg['rtt_p50'])}"
        parts.append(s)
    for e in app_list:
        s = f"app heartbeat from {e['side']} {e['signature']} every {fmt_duration(e['interval'])}"
        if e["reply"] is not None:
            s += f", answered by {e['reply']}"
            if e["rtt_p50"] is not None:
                s += f" in {fmt_duration(e['rtt_p50'])}"
        parts.append(s)
    protocol = _protocol_agg(reports)
    for e in protocol:
        s = f"{e['protocol']} {'heartbeat' if e['kind'] == 'beat' else 'ping'} from {e['side']}"
        if e["interval"] is not None:
            s += f" every {fmt_duration(e['interval'])}"
        if e["negotiated_interval"] is not None:
            s += f" (negotiated {fmt_duration(e['negotiated_interval'])}"
            if e["negotiated_timeout"] is not None:
                s += f", timeout {fmt_duration(e['negotiated_timeout'])}"
            s += ")"
        if e["rtt_p50"] is not None:
            s += f", pong RTT p50 {fmt_duration(e['rtt_p50'])}"
        if e["late"]:
            s += f", {e['late']} late"
        if e["count"]:
            parts.append(s)
    summary["protocol"] = protocol
    if not parts and unsolicited >= 2:
        parts.append(f"{unsolicited} unsolicited pongs (one-way heartbeat)")
    for cid, ho in half_open:
        parts.append(f"{conn_tag(cid)} after half-open: {ho.summary}")

    if seen:
        hb = _item(True, "; ".join(parts))
    elif not conns:
        hb = _item(None, "no accepted connection")
    else:
        longest = max((c.ts_end if c.ts_end is not None else now) - c.ts_start for c in conns)
        if longest < MIN_OBSERVE:
            hb = _item(
                None, f"none seen; connections too short to tell (longest {fmt_duration(longest)})"
            )
        else:
            hb = _item(
                False,
                f"no ping/pong or app heartbeat in {len(conns)} connection(s) "
                f"(longest {fmt_duration(longest)}): idle connections die silently behind NATs "
                "and load balancers",
            )

    pings = (client["pings"] if client else 0) + (server["pings"] if server else 0)
    unanswered = (client["unanswered"] if client else 0) + (server["unanswered"] if server else 0)
    # application-protocol pings answered by pongs (Engine.IO, GraphQL-WS, MQTT, Phoenix)
    pings += sum(e["count"] for e in protocol if e["kind"] == "ping")
    unanswered += sum(e["unanswered"] for e in protocol if e["kind"] == "ping")
    # Pings devconsole kept from the peer (half-open) say nothing about the peer.
    faulted = min(unanswered, sum(sum(ho.pings_unanswered.values()) for _, ho in half_open))
    note = f" ({faulted} more during a half-open)" if faulted else ""
    if not pings:
        pongs = _item(None, "no protocol pings")
    elif unanswered - faulted:
        pongs = _item(False, f"{unanswered - faulted} of {pings} pings got no pong{note}")
    else:
        pongs = _item(True, f"all {pings - faulted} pings answered{note}")
    return summary, hb, pongs


def _protocol_agg(reports: Sequence[HeartbeatReport]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for r in reports:
        for p in r.protocol:
            groups.setdefault((p.protocol, p.side, p.kind), []).append(p)
    out = []
    for (proto, side, kind), ps in groups.items():
        ivs = [p.interval_p50 for p in ps if p.interval_p50 is not None]
        rtts = [p.rtt_p50 for p in ps if p.rtt_p50 is not None]
        nego = next((p for p in ps if p.negotiated_interval is not None), None)
        out.append(
            {
                "protocol": proto,
                "side": side,
                "kind": kind,
                "connections": sum(1 for p in ps if p.count),
                "count": sum(p.count for p in ps),
                "interval": _r(median(ivs)),
                "rtt_p50": _r(median(rtts)),
                "unanswered": sum(p.unanswered for p in ps),
                "late": sum(p.late for p in ps),
                "negotiated_interval": nego.negotiated_interval if nego else None,
                "negotiated_timeout": nego.negotiated_timeout if nego else None,
            }
        )
    return out


def _replies(latency: dict[str, Any]) -> dict[str, Any]:
    n = latency["unanswered"]
    if not latency["requests"]:
        return _item(None, "no request/reply protocol traffic", unanswered=0)
    if n:
        shown = "; ".join(
            f"#{u['conn']} {safe_text(u['summary'][:100])}"
            for u in latency["unanswered_requests"][:5]
        )
        more = f" (+{n - 5} more)" if n > 5 else ""
        return _item(
            False,
            f"{n} of {latency['requests']} requests unanswered when their connection "
            f"ended: {shown}{more}",
            unanswered=n,
        )
    waiting = latency.get("pending", 0)
    if waiting:
        shown = "; ".join(
            f"#{u['conn']} {safe_text(u['summary'][:100])}"
            for u in latency.get("pending_requests", [])[:5]
        )
        return _item(
            None,
            f"{latency['requests'] - waiting} of {latency['requests']} requests answered; "
            f"{waiting} still waiting on open connections: {shown}",
            unanswered=0,
        )
    return _item(True, f"all {latency['requests']} requests answered", unanswered=0)


def _judged(b: Backoff, n: int) -> tuple[bool | None, str]:
    """A judged backoff in words, and whether it is fine (None: cannot tell)."""
    if b.pattern == "none":
        return None, "no reconnect seen"
    if b.pattern == "single":
        return None, f"1 reconnect after {fmt_duration(b.min)}: too few to judge"
    jit = "with jitter" if b.jitter else "without jitter"
    if b.pattern == "exponential":
        s = f"exponential backoff x{b.factor:.2f} {jit}" if b.factor else "exponential backoff"
        if b.cap is not None:
            s += f", capped at {fmt_duration(b.cap)}"
        return True, f"{s}; {n} reconnects, {fmt_duration(b.min)} to {fmt_duration(b.max)}"
    if b.pattern == "linear":
        return True, f"linear backoff +{fmt_duration(b.step)} per attempt {jit}; {n} reconnects"
    if b.pattern == "storm":
        return False, f"reconnect storm: {n} retries, fastest {fmt_duration(b.min)}, no backoff"
    if b.pattern == "fixed":
        mid = b.median if b.median is not None else 0.0
        detail = f"fixed interval ~{fmt_duration(mid)} {jit}, no growth; {n} reconnects"
        return (False if mid < 1.0 else None), detail
    spread = f"{fmt_duration(b.min)} to {fmt_duration(b.max)}"
    return None, f"irregular delays ({spread}); {n} reconnects"


def _reconnect(ep: EndpointReport) -> dict[str, Any]:
    """The connected clients' backoff, each judged on its own; clients refused every time
    are the refused-upgrades item's business."""
    if not ep.mixed:
        ok, detail = _judged(ep.backoff, len(ep.reconnect_delays))
        lins = ep.reconnecting
        if lins and len([lin for lin in ep.lineages if not lin.never_connected]) > 1:
            detail = f"{lins[0].label}: {detail}"
        return _item(ok, detail)
    parts: list[str] = []
    oks: list[bool | None] = []
    for lin in ep.reconnecting:
        ok, detail = _judged(lin.backoff, len(lin.reconnects))
        oks.append(ok)
        parts.append(f"{lin.label}: {detail}")
    verdict: bool | None = (
        False if False in oks else True if oks and all(o is True for o in oks) else None
    )
    return _item(verdict, f"{len(parts)} clients, each judged apart: " + "; ".join(parts))


def _wss(conns: Sequence[Connection]) -> dict[str, Any]:
    if not conns:
        return _item(None, "no connection")
    plain = sum(1 for c in conns if c.handshake.scheme != "wss")
    if not plain:
        return _item(True, "all connections use wss://")
    if plain == len(conns):
        return _item(False, "ws:// only: traffic and credentials are unencrypted")
    return _item(False, f"{plain} of {len(conns)} connections over unencrypted ws://")


def lacking_credentials(
    conns: Sequence[Connection], references: ReferenceIndex
) -> list[dict[str, Any]]:
    """The connections whose upgrade lacked credentials their endpoint's accepted upgrades
    sent (``analysis.handshake_diff``), grouped by what they lacked and the reference::

        [{"connections": [ID, ...], "reference": ID, "missing": ["cookie session", ...]}]
    """
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    ref_items: dict[str, list[tuple[Any, str, str]]] = {}
    for c in conns:
        ref = references.reference_for(c)
        if ref is None:
            continue
        items = ref_items.get(ref.id)
        if items is None:
            items = ref_items[ref.id] = credential_items(ref.handshake)
        missing = missing_credential_labels(c.handshake, items)
        if missing:
            groups.setdefault((ref.id, tuple(missing)), []).append(c.id)
    return [
        {"connections": ids, "reference": ref, "missing": list(labels)}
        for (ref, labels), ids in groups.items()
    ]


def _ids(ids: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(f"#{i}" for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _lacking_text(lacking: Sequence[dict[str, Any]]) -> str:
    return "; ".join(
        f"{_ids(g['connections'])} lacked {', '.join(g['missing'])} (sent by #{g['reference']})"
        for g in lacking
    )


def _auth(
    session: Session,
    monitor: HeartbeatMonitor | None,
    accepted: Sequence[Connection],
    refused: Sequence[Connection],
    lacking: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    item = _auth_methods(session, monitor, accepted, refused)
    item["lacking"] = list(lacking)
    if lacking:
        item["detail"] += "; " + _lacking_text(lacking)
    return item


def _auth_methods(
    session: Session,
    monitor: HeartbeatMonitor | None,
    accepted: Sequence[Connection],
    refused: Sequence[Connection],
) -> dict[str, Any]:
    methods: Counter[str] = Counter()
    without = 0
    for c in accepted:
        found = handshake_auth(c.handshake)
        fm = _first_client_message(session, monitor, c.id)
        if fm is not None:
            desc = first_message_auth(*fm)
            if desc:
                found.append(desc)
        if not found:
            without += 1
        for f in found:
            methods[f] += 1
    denied = Counter(c.handshake.status for c in refused if c.handshake.status in (401, 403))
    denied_txt = ", ".join(f"{s} x{n}" for s, n in sorted(denied.items()))
    used = ", ".join(m + (f" x{n}" if n > 1 else "") for m, n in methods.most_common())
    extra = {"methods": dict(methods), "without": without}
    if not accepted:
        if denied:
            return _item(True, f"unauthenticated upgrades refused ({denied_txt})", **extra)
        return _item(None, "no accepted connection", **extra)
    if without == 0:
        return _item(True, used, **extra)
    if without == len(accepted):
        if denied:
            return _item(
                True,
                f"no credentials on accepted connections, but upgrades are refused "
                f"({denied_txt}): auth is enforced",
                **extra,
            )
        return _item(False, "no credentials at the handshake or in the first message", **extra)
    return _item(
        False, f"{without} of {len(accepted)} connections without credentials; {used}", **extra
    )


def _compression(accepted: Sequence[Connection]) -> dict[str, Any]:
    if not accepted:
        return _item(None, "no accepted connection")
    neg = sum(
        1
        for c in accepted
        if any(
            e.split(";")[0].strip().lower() == "permessage-deflate" for e in c.handshake.extensions
        )
    )
    offered = sum(
        1
        for c in accepted
        if any(
            e.split(";")[0].strip().lower() == "permessage-deflate"
            for e in c.handshake.requested_extensions
        )
    )
    largest = max(c.largest_message for c in accepted)
    if neg == len(accepted):
        return _item(True, "permessage-deflate negotiated")
    if neg:
        return _item(True, f"permessage-deflate negotiated on {neg} of {len(accepted)}")
    why = "offered by the client, declined by the server" if offered else "not offered"
    if largest < SMALL_MESSAGES:
        return _item(None, f"no compression ({why}); messages are small ({fmt_bytes(largest)})")
    return _item(False, f"no compression ({why}); largest message {fmt_bytes(largest)}")


def _largest(accepted: Sequence[Connection]) -> dict[str, Any]:
    largest = max((c.largest_message for c in accepted), default=0)
    msgs = sum(c.msgs_in + c.msgs_out for c in accepted)
    if not msgs:
        return _item(None, "no message", bytes=0)
    if largest > LARGE_MESSAGE:
        return _item(
            False,
            f"largest {fmt_bytes(largest)}: a big message blocks everything behind it; "
            "chunk or send it over HTTP",
            bytes=largest,
        )
    return _item(True, f"largest {fmt_bytes(largest)} over {msgs} messages", bytes=largest)


def _close_codes(accepted: Sequence[Connection]) -> dict[str, Any]:
    codes: dict[str, dict[str, Any]] = {}
    unclean = 0
    bad = 0
    ended = 0
    for c in accepted:
        if c.ts_end is None and c.close_code is None and c.state != ConnState.KILLED:
            continue
        ended += 1
        by = c.closed_by or "?"
        if c.close_code is None:
            name = "none"
            meaning = "killed by devconsole" if by == "proxy" else "no close frame"
            if by != "proxy" and not c.clean:
                unclean += 1
        else:
            name = str(c.close_code)
            meaning = close_code_meaning(c.close_code)
            if c.close_code in _BAD_CODES or (
                c.close_code not in CLOSE_CODES and not 3000 <= c.close_code <= 4999
            ):
                bad += 1
        e = codes.setdefault(name, {"code": c.close_code, "meaning": meaning, "count": 0, "by": {}})
        e["count"] += 1
        e["by"][by] = e["by"].get(by, 0) + 1
    listing = ", ".join(
        f"{e['code'] if e['code'] is not None else '-'} {e['meaning']} x{e['count']}"
        for e in sorted(codes.values(), key=lambda e: -e["count"])
    )
    extra = {"codes": list(codes.values())}
    if not accepted:
        return _item(None, "no accepted connection", **extra)
    if not ended:
        return _item(None, "no connection ended yet", **extra)
    problems = []
    if bad:
        problems.append(f"{bad} error close code(s)")
    if unclean:
        problems.append(f"{unclean} ended without a close handshake")
    if problems:
        return _item(False, "; ".join(problems) + f": {listing}", **extra)
    return _item(True, listing, **extra)


def _refused(refused: Sequence[Connection], ep: EndpointReport) -> dict[str, Any]:
    if not refused:
        return _item(True, "no refused upgrade", statuses={})
    statuses: Counter[str] = Counter()
    for c in refused:
        hs = c.handshake
        statuses[str(hs.status) if hs.status is not None else (hs.error or "error")] += 1
    listing = ", ".join(f"{s} x{n}" for s, n in statuses.most_common())
    expected = all(
        c.handshake.status in _EXPECTED_REFUSALS for c in refused if c.handshake.status
    ) and all(c.handshake.status is not None for c in refused)
    detail = f"refused: {listing}"
    rr = ep.refused_retries
    if rr.count > 1 and rr.interval is not None:
        who = "1 client" if rr.clients == 1 else f"{rr.clients} clients"
        detail += (
            f"; {who} never connected and retried {rr.count} times, every "
            f"{fmt_duration(rr.interval)} ({rr.status})"
        )
    return _item(None if expected else False, detail, statuses=dict(statuses))


# --------------------------------------------------------------------------- report


def _backplane(
    fanout: FanoutTracer | None, conns: Sequence[Connection], now: float
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """The endpoint's fan-out summary and its ``backplane`` checklist item."""
    if fanout is None or not fanout.active:
        return None, _item(
            None, "not observed (record it with devconsole proxy --backplane redis://...)"
        )
    s = fanout.summary([c.id for c in conns], now)
    if not s["publications"]:
        return s, _item(None, "no backplane publication reached this endpoint")
    where = ", ".join(
        f"{name or 'proxy'} p95 {fmt_duration(v['delay_p95'])}"
        for name, v in s["instances"].items()
    )
    detail = (
        f"{s['publications']} publication(s), {s['deliveries']} deliveries, "
        f"delay p50 {fmt_duration(s['delay_p50'])} p95 {fmt_duration(s['delay_p95'])}"
    )
    if len(s["instances"]) > 1:
        detail += f" ({where})"
    if s["missed"]:
        return s, _item(
            False,
            f"{s['missed']} missed deliveries: connections that got the previous "
            f"publication on a channel did not get the next; {detail}",
        )
    if s["delay_p95"] is not None and s["delay_p95"] > SLOW_FANOUT:
        return s, _item(False, f"slow fan-out: {detail}")
    return s, _item(True, detail)


def build_report(
    session: Session,
    heartbeat: HeartbeatMonitor | None,
    now: float,
    endpoints: Iterable[EndpointReport] | None = None,
    fanout: FanoutTracer | None = None,
    analysis: Analysis | None = None,
) -> dict[str, Any]:
    """The readiness report of everything ``session`` knows. With ``analysis`` (from
    ``observe``), its monitor, pairs and protocols are used. Without it or a
    ``heartbeat`` monitor, both are built from the session's buffered items (evicted
    ones are lost); with a monitor but no analysis, there is no pairing (latency).
    ``endpoints`` may be passed when already computed by ``analyze_endpoints``; ``fanout``
    (a tracer that observed the same events) adds the backplane trace."""
    if analysis is not None:
        heartbeat = analysis.heartbeat
        pairs = analysis.pairs
        protos = {cid: p for cid in session.connections if (p := analysis.tracker.protocol_of(cid))}
    elif heartbeat is None:
        pairs, protos = pairs_from_session(session)
    else:
        # A live caller with its own monitor but no analysis (a screen refreshing the
        # report): decoding the whole buffer on every refresh would cost seconds, so no
        # pairing here; attach ``observe()`` to the Session to get it.
        pairs, protos = PairTracker(), {}
    monitor = heartbeat if heartbeat is not None else HeartbeatMonitor.from_session(session)
    eps = (
        list(endpoints)
        if endpoints is not None
        else analyze_endpoints(
            c for c in session.connections.values() if not is_backplane(c.handshake)
        )
    )
    out: list[dict[str, Any]] = []
    references = ReferenceIndex(session.connections.values())
    for ep in eps:
        conns = [session.connections[cid] for cid in ep.conn_ids if cid in session.connections]
        refused = [c for c in conns if c.state == ConnState.REFUSED]
        accepted = [c for c in conns if c.state != ConnState.REFUSED]
        reports = [monitor.report(c.id, now) for c in accepted]
        hb_summary, hb_item, pong_item = _heartbeat(reports, accepted, now)
        bp_summary, bp_item = _backplane(fanout, accepted, now)
        latency = pairs.endpoint_report(ep.path)
        checklist = {
            "heartbeat": hb_item,
            "pongs": pong_item,
            "reconnect": _reconnect(ep),
            "wss": _wss(conns),
            "auth": _auth(
                session, monitor, accepted, refused, lacking_credentials(conns, references)
            ),
            "compression": _compression(accepted),
            "largest_message": _largest(accepted),
            "close_codes": _close_codes(accepted),
            "refused_upgrades": _refused(refused, ep),
            "backplane": bp_item,
        }
        if latency["requests"]:  # only where an application protocol pairs requests
            checklist["replies"] = _replies(latency)
        backoff = ep.to_dict()
        out.append(
            {
                "path": ep.path,
                "origin": ep.origin,
                "connections": ep.connections,
                "reconnect_delays": backoff["reconnect_delays"],
                "backoff": backoff["backoff"],
                "clients": backoff["clients"],
                "refused_retries": backoff["refused_retries"],
                "heartbeat": hb_summary,
                "backplane": bp_summary,
                "protocols": sorted({protos[c.id] for c in accepted if c.id in protos}),
                "latency": latency,
                "checklist": checklist,
            }
        )
    return {"endpoints": out}


_MARK = {True: " ok ", False: "FAIL", None: " -- "}


def render_text(report: dict[str, Any]) -> str:
    """A plain-text rendering of ``build_report``'s result (no markup)."""
    eps = report.get("endpoints", [])
    lines = [f"Production readiness: {len(eps)} endpoint(s)"]
    for ep in eps:
        lines.append("")
        head = f"{ep['path']}"
        if ep.get("origin"):
            head += f"  (origin {ep['origin']})"
        head += f"  {ep['connections']} connection(s)"
        lines.append(head)
        delays = ep.get("reconnect_delays") or []
        if delays == "mixed":
            for client in ep.get("clients", []):
                cd = client.get("reconnect_delays") or []
                if cd:
                    shown = ", ".join(fmt_duration(d) for d in cd[-10:])
                    more = f"{len(cd) - 10} earlier, " if len(cd) > 10 else ""
                    lines.append(f"  reconnect delays of {client['client']}: {more}{shown}")
        elif delays:
            shown = ", ".join(fmt_duration(d) for d in delays[-10:])
            more = f"{len(delays) - 10} earlier, " if len(delays) > 10 else ""
            lines.append(f"  reconnect delays: {more}{shown}")
        if ep.get("protocols"):
            lines.append(f"  protocols: {', '.join(ep['protocols'])}")
        checklist = ep.get("checklist", {})
        width = max((len(k) for k in checklist), default=0)
        for name, item in checklist.items():
            mark = _MARK.get(item.get("ok"), " -- ")
            lines.append(f"  [{mark}] {name.replace('_', ' '):<{width}}  {item.get('detail', '')}")
        methods = (ep.get("latency") or {}).get("methods") or []
        if methods:
            lines.append("  latency (request -> first answer):")
            mw = min(max(len(m["method"]) for m in methods), 40)
            lines.append(f"    {'method':<{mw}}  {'count':>6}  {'p50':>8}  {'p95':>8}  {'max':>8}")
            for m in methods[:30]:
                name = safe_text(m["method"])
                name = name if len(name) <= mw else name[: mw - 1] + "…"
                lines.append(
                    f"    {name:<{mw}}  {m['count']:>6}  {fmt_duration(m['p50']):>8}  "
                    f"{fmt_duration(m['p95']):>8}  {fmt_duration(m['max']):>8}"
                )
            if len(methods) > 30:
                lines.append(f"    ... {len(methods) - 30} more")
    return "\n".join(lines) + "\n"
