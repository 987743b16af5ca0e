"""``devconsole handshake``: a connection's handshake, or its diff, as a user runs it
(the real binary) against a real proxy's tap and against a capture file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from devconsole.cli import build_parser
from devconsole.store.capture import save_capture
from devconsole.store.export import export_capture
from devconsole.store.segments import SegmentWriter
from tests.conftest import ROOT, devconsole_cmd, running_proxy, viewer
from tests.cookie_app import GOOD_ORIGIN, OTHER_ORIGIN, SESSION, cookie_server, three_clients


async def cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        *devconsole_cmd(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=str(ROOT),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


EMPTY = {"cookies": [], "headers": [], "query": [], "subprotocols": [], "extensions": []}


def test_parser() -> None:
    args = build_parser().parse_args(["handshake", "#4", "--diff", "auto", "--json"])
    assert args.conn == "#4" and args.diff == "auto" and args.json and args.capture is None
    assert callable(args.handler)
    args = build_parser().parse_args(["handshake", "4", "x.dcap", "--diff", "2"])
    assert args.capture == "x.dcap" and args.diff == "2"


async def test_diff_auto_json_names_the_missing_cookie_and_the_origin(short_tmp: Path) -> None:
    async with cookie_server() as port, running_proxy("regular", short_tmp) as px:
        async with viewer(px.tap) as v:
            outcome = await three_clients(px.port, port)
            assert (outcome.good, outcome.other_origin, outcome.same_origin) == (101, 403, 403)
            await v.wait_for(
                lambda v: (
                    sum(c.handshake.status is not None for c in v.session.connections.values()) == 3
                )
            )
            good, other, same = sorted(v.session.connections, key=int)

            rc, out, err = await cli(
                "handshake", other, "--diff", "auto", "--json", "--tap", px.tap
            )
            assert rc == 0, err
            diff = json.loads(out)
            assert diff["conn"] == other and diff["reference"] == good
            assert diff["missing"] == {**EMPTY, "cookies": ["session"]}
            assert diff["extra"] == EMPTY
            assert diff["different"] == {
                **EMPTY,
                "headers": [["Origin", OTHER_ORIGIN, GOOD_ORIGIN]],
            }
            assert diff["likely_cause"].startswith("403 Forbidden: cookie session missing")
            assert SESSION not in out

            # the same Origin: only the cookie; "#ID" works as well as "ID"
            rc, out, err = await cli(
                "handshake", f"#{same}", "--diff", "auto", "--json", "--tap", px.tap
            )
            assert rc == 0, err
            diff = json.loads(out)
            assert diff["missing"] == {**EMPTY, "cookies": ["session"]}
            assert diff["different"] == EMPTY and diff["extra"] == EMPTY

            # text, against a connection named on the command line (the other way round)
            rc, out, err = await cli("handshake", good, "--diff", other, "--tap", px.tap)
            assert rc == 0, err
            assert f"#{good} compared with #{other}: 0 missing, 1 different, 1 extra" in out
            assert "extra      cookie session" in out and SESSION not in out
            rc, out, err = await cli(
                "handshake", good, "--diff", other, "--tap", px.tap, "--show-secrets"
            )
            assert rc == 0 and SESSION in out

            # no --diff: the handshake itself, secrets fingerprinted, the answer and the cause
            rc, out, err = await cli("handshake", other, "--tap", px.tap)
            assert rc == 0, err
            assert f"#{other} ws://127.0.0.1:{port}/app" in out
            assert "likely cause: 403 Forbidden: cookie session missing" in out
            assert f"> Origin: {OTHER_ORIGIN}" in out and "< HTTP/1.1 403 Forbidden" in out
            assert '{"error":"no session"}' in out
            assert f"diff against #{good}: 1 missing, 1 different, 0 extra" in out
            rc, out, err = await cli("handshake", good, "--tap", px.tap, "--json")
            assert rc == 0, err
            hs = json.loads(out)
            assert hs["event"] == "handshake" and hs["state"] == "closed"
            assert hs["response"]["status"] == 101
            cookies = dict(hs["request"]["cookies"])
            assert cookies["theme"] == "dark" and cookies["session"].startswith("‹secret ")
            assert SESSION not in out

            # errors: one line, exit 1
            rc, out, err = await cli("handshake", "999", "--tap", px.tap)
            assert rc == 1 and err.startswith("devconsole: no connection 999") and not out
            rc, out, err = await cli("handshake", good, "--diff", "998", "--tap", px.tap)
            assert rc == 1 and "no connection 998" in err

            events = list(v.events)

    # the same from a capture file, with the proxy gone
    path = short_tmp / "session.dcap"
    save_capture(path, events)
    rc, out, err = await cli("handshake", other, str(path), "--diff", "auto", "--json")
    assert rc == 0, err
    diff = json.loads(out)
    assert diff["reference"] == good
    assert diff["missing"]["cookies"] == ["session"]
    assert diff["different"]["headers"] == [["Origin", OTHER_ORIGIN, GOOD_ORIGIN]]

    # ... and from a recording and a HAR file (the loader open, export and report use)
    rec = short_tmp / "rec"
    with SegmentWriter(rec) as w:
        w.write(events)
    har = short_tmp / "session.har"
    export_capture(path, har, fmt="har", redact=False)
    for capture in (rec, har):
        rc, out, err = await cli("handshake", other, str(capture), "--diff", "auto", "--json")
        assert rc == 0, (capture, err)
        diff = json.loads(out)
        assert diff["reference"] == good, capture
        assert diff["missing"]["cookies"] == ["session"], capture
        assert diff["different"]["headers"] == [["Origin", OTHER_ORIGIN, GOOD_ORIGIN]], capture
    rc, out, err = await cli("handshake", good, str(har))
    assert rc == 0, err
    assert f"#{good} ws://127.0.0.1:{port}/app" in out and "< HTTP/1.1 101" in out


async def test_no_reference_and_bad_files_are_one_line(short_tmp: Path) -> None:
    from devconsole.samples import Traffic

    t = Traffic()
    t.refused("1", status=401, cookies=(), path="/private")
    path = short_tmp / "lone.dcap"
    save_capture(path, t.events)
    rc, out, err = await cli("handshake", "1", str(path), "--diff", "auto")
    assert rc == 1 and not out
    assert err.startswith("devconsole: no other accepted upgrade of /private")
    assert "--diff ID" in err
    # without --diff it still prints the handshake and the likely cause
    rc, out, err = await cli("handshake", "1", str(path))
    assert rc == 0, err
    assert "likely cause: 401 Unauthorized and no credentials were sent" in out
    bad = short_tmp / "bad.dcap"
    bad.write_text("not a capture")
    rc, out, err = await cli("handshake", "1", str(bad))
    assert rc == 1 and err.startswith("devconsole: ") and "Traceback" not in err
