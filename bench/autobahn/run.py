"""Autobahn|TestSuite conformance of devconsole's relay: the same outcome through the proxy
as direct, case by case, and a frame parser that fails only where the peer sends invalid
frames on purpose.

Two modes (both by default), everything on 127.0.0.1:

fuzzingclient
    ``wstest -m fuzzingclient`` against a ``websockets`` echo server (echo_server.py):
    twice DIRECT (cases whose outcome differs between the two are timing-dependent and
    reported apart), then THROUGH ``devconsole proxy --mode reverse:...`` in front of the
    same server, with a tap client (collect.py) recording what the capture saw.
fuzzingserver
    ``wstest -m fuzzingserver`` (bound to 127.0.0.1 by wstest_local.py, no web UI) with a
    ``websockets`` client (client.py) running the standard client loop: twice direct
    (agents direct-1, direct-2), then through the proxy (agent devconsole).

Outcome of a case = (behavior, behaviorClose) from wstest's index.json. The capture is
checked per case: connections are matched to cases by the upgrade's Sec-WebSocket-Key
(fuzzingclient: the case report keeps the request) or by ``/runCase?case=N`` (fuzzing-
server). Expected: a protocol error (or an invalid close frame) on the connection exactly
when the websockets testee answered with close code 1002 in the direct runs (the fuzzer
sent an invalid frame on purpose), and no parser error anywhere else.

Exit code 1 if a case that is not timing-dependent has a different outcome through the
proxy, or if the capture check fails. Reports: bench/autobahn/reports/ (git-ignored).

The first run creates bench/autobahn/.venv27 (Python 2.7 from pyenv or $AUTOBAHN_PYTHON27,
virtualenv<20.22, autobahntestsuite==25.10.1; about a minute).

    .venv/bin/python bench/autobahn/run.py --cases quick    # 301 cases, no compression
    .venv/bin/python bench/autobahn/run.py --cases all      # + 12.*, 13.* (about an hour)
    .venv/bin/python bench/autobahn/run.py --cases 1.*,2.* --modes client
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV27 = HERE / ".venv27"
TOOLS = HERE / ".venv-tools"
REPORTS = HERE / "reports"
HOST = "127.0.0.1"
AUTOBAHN = "autobahntestsuite==25.10.1"

sys.path.insert(0, str(ROOT / "bench"))
from _common import Proc, free_port, mitmdump_cmd, tool, wait_listening  # noqa: E402
from _common import env as py_env  # noqa: E402
from _common import table as md_table  # noqa: E402

QUICK_EXCLUDE = ["12.*", "13.*"]

# Cases where the websockets testee answers 1002 although no frame is invalid at the
# frame level (what devconsole's parser checks): not expected to be flagged.
NOT_FRAME_ERRORS: dict[str, str] = {
    "7.1.5": (
        "a close frame in the middle of a fragmented message, then its last fragment: "
        "control frames may be interleaved; websockets fails the connection because the "
        "message is incomplete at the close (protocol.py 'incomplete fragmented message'), "
        "and the fragment after the close breaks RFC 6455 5.5.1, which devconsole does not "
        "check"
    ),
}

# Why some cases differ through mitmproxy's raw relay itself (and so through devconsole):
# shown next to them in the "relay" table.
KNOWN: dict[tuple[str, str], str] = {
    ("server", "5.2"): (
        "mitmproxy strips leading CR/LF bytes from data that arrives with the 101 response "
        "(proxy/layers/http/_http1.py make_pipe, meant for CONNECT): the fuzzer's first "
        "frame byte 0x0a (a fragmented pong) is eaten, the client never sees the error"
    ),
}


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ environment


def find_python27() -> str:
    cand = [os.environ.get("AUTOBAHN_PYTHON27", "")]
    with contextlib.suppress(Exception):
        root = subprocess.run(
            ["pyenv", "root"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        cand += sorted(glob.glob(f"{root}/versions/2.7*/bin/python2.7"), reverse=True)
    cand += [shutil.which("python2.7") or "", shutil.which("python2") or ""]
    for c in cand:
        if c and os.path.exists(c):
            return c
    raise SystemExit(
        "Python 2.7 not found (wstest runs only on 2.7): install it with pyenv "
        "(pyenv install 2.7.18) or set AUTOBAHN_PYTHON27"
    )


def ensure_wstest() -> Path:
    py = VENV27 / "bin" / "python"
    if (VENV27 / "bin" / "wstest").exists():
        r = subprocess.run(
            [str(py), "-c", "import autobahntestsuite"], capture_output=True, timeout=60
        )
        if r.returncode == 0:
            return py
        log("bench/autobahn/.venv27 is broken: re-creating it")
        shutil.rmtree(VENV27, ignore_errors=True)
    py27 = find_python27()
    log(f"creating {VENV27.relative_to(ROOT)} with {py27} and {AUTOBAHN} (about a minute)")

    def sh(*cmd: str) -> None:
        r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    if not (TOOLS / "bin" / "virtualenv").exists():
        # virtualenv 20.22 dropped Python 2.7 as a target
        sh(sys.executable, "-m", "venv", str(TOOLS))
        sh(str(TOOLS / "bin" / "pip"), "install", "--quiet", "virtualenv<20.22")
    sh(str(TOOLS / "bin" / "virtualenv"), "-p", py27, str(VENV27))
    sh(str(VENV27 / "bin" / "pip"), "install", "--quiet", AUTOBAHN)
    return py


# ------------------------------------------------------------------ processes


def popen(
    cmd: list[str], log_path: Path | None = None, cwd: Path | None = None, stdout_log: bool = False
) -> Proc:
    """``stdout_log``: stdout goes to the log too (for chatty processes: an unread pipe
    fills up and blocks the writer; wstest prints a line per case)."""
    err: Any = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    p = subprocess.Popen(
        cmd,
        stdout=err if stdout_log and log_path else subprocess.PIPE,
        stderr=err,
        stdin=subprocess.DEVNULL,
        text=True,
        env=py_env(),
        cwd=str(cwd or ROOT),
    )
    if log_path:
        err.close()
    return Proc(Path(cmd[1]).name if len(cmd) > 1 else cmd[0], p)


def start_echo(out: Path) -> Proc:
    p = popen([sys.executable, str(HERE / "echo_server.py")], out / "echo_server.log")
    line = p.readline(30)
    if not line.startswith("port "):
        p.stop()
        raise SystemExit(f"echo server did not start: {line!r}")
    p.port = int(line.split()[1])
    return p


PROXY = "devconsole"  # or "mitmdump" / "mitmdump-raw" (--proxy): no capture check then


def start_proxy(target: int, out: Path, name: str, kind: str = "") -> tuple[Proc, str]:
    kind = kind or PROXY
    tap = f"/tmp/dc-ab-{os.getpid()}-{name}.sock"
    if kind != "devconsole":
        port = free_port()
        cmd = mitmdump_cmd(
            target, port, str(out / "mitmproxy-conf"), websocket=kind != "mitmdump-raw"
        )
        p = popen(cmd, out / f"proxy-{name}.log")
        p.port = port
        wait_listening(port, p, 60)
        return p, ""
    cmd = [
        tool("devconsole"),
        "proxy",
        "--mode",
        f"reverse:http://{HOST}:{target}",
        "--listen",
        f"{HOST}:0",
        "--tap",
        tap,
        "--confdir",
        str(out / "mitmproxy-conf"),
        "--log",
        "quiet",
    ]
    p = popen(cmd, out / f"proxy-{name}.log")
    line = p.readline(60)
    if " on " not in line:
        p.stop()
        raise SystemExit(f"devconsole proxy did not start: {line!r}")
    addr = line.split(" on ", 1)[1].split(";", 1)[0].split(",")[0].strip()
    p.port = int(addr.rsplit(":", 1)[1])
    return p, tap


def start_collector(tap: str, out_json: Path, out: Path) -> Proc | None:
    if not tap:
        return None
    p = popen([sys.executable, str(HERE / "collect.py"), tap, str(out_json)], out / "collect.log")
    line = p.readline(30)
    if line.strip() != "ready":
        p.stop()
        raise SystemExit(f"tap collector did not start: {line!r}")
    return p


def stop_collector(p: Proc | None, out_json: Path) -> dict[str, Any]:
    if p is None:
        return {"skipped": True}
    time.sleep(1.0)  # the tap flushes every 10 ms; let the last events arrive
    p.stop(timeout=60)
    try:
        return dict(json.loads(out_json.read_text()))
    except (OSError, ValueError):
        return {"missed": -1, "connections": []}


# ------------------------------------------------------------------ wstest runs


def case_spec(cases: str) -> tuple[list[str], list[str]]:
    if cases == "quick":
        return ["*"], QUICK_EXCLUDE
    if cases == "all":
        return ["*"], []
    return [c.strip() for c in cases.split(",") if c.strip()], []


def load_index(outdir: Path, agent: str) -> dict[str, dict[str, Any]]:
    idx = json.loads((outdir / "index.json").read_text())
    return dict(idx.get(agent, {}))


def run_fuzzingclient(
    py27: Path, agent: str, url: str, outdir: Path, cases: str, timeout: float
) -> dict[str, dict[str, Any]]:
    include, exclude = case_spec(cases)
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    spec = {
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": include,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    t0 = time.monotonic()
    with open(outdir / "wstest.log", "w") as fh:
        r = subprocess.run(
            [str(py27), str(HERE / "wstest_local.py"), "-m", "fuzzingclient", "-s", str(spec_path)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            cwd=str(outdir),
        )
    if r.returncode != 0 or not (outdir / "index.json").exists():
        raise SystemExit(f"wstest fuzzingclient ({agent}) failed; see {outdir / 'wstest.log'}")
    idx = load_index(outdir, agent)
    log(f"  fuzzingclient {agent}: {len(idx)} cases in {time.monotonic() - t0:.0f} s")
    return idx


def start_fuzzingserver(py27: Path, outdir: Path, cases: str) -> Proc:
    include, exclude = case_spec(cases)
    if outdir.exists():
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    port = free_port()
    spec = {
        "url": f"ws://{HOST}:{port}",
        "options": {"failByDrop": False},
        "outdir": str(outdir),
        "cases": include,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    p = popen(
        [
            str(py27),
            str(HERE / "wstest_local.py"),
            "-m",
            "fuzzingserver",
            "-s",
            str(spec_path),
            "-u",
            "0",
        ],
        outdir / "wstest.log",
        cwd=outdir,
        stdout_log=True,
    )
    p.port = port
    wait_listening(port, p, 60)
    return p


def run_client_agent(url: str, agent: str, outdir: Path, timeout: float) -> None:
    t0 = time.monotonic()
    with open(outdir / f"client-{agent}.log", "w") as fh:
        r = subprocess.run(
            [sys.executable, str(HERE / "client.py"), url, agent],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env=py_env(),
            cwd=str(ROOT),
        )
    if r.returncode != 0:
        raise SystemExit(f"websockets client ({agent}) failed; see {outdir}/client-{agent}.log")
    log(f"  fuzzingserver {agent}: done in {time.monotonic() - t0:.0f} s")


# ------------------------------------------------------------------ comparison


def _ver(case: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else 0 for x in case.split("."))


def outcome(r: dict[str, Any] | None) -> str:
    if r is None:
        return "(missing)"
    return f"{r.get('behavior')}/{r.get('behaviorClose')}"


RECHECK_KEYS = ("recheck_direct", "recheck_proxy", "recheck_control")


def compare(
    res: dict[str, Any], mode: str = "", strict: bool = False
) -> dict[str, list[list[str]]]:
    """Rows by category:

    differ      the direct runs agree, the proxy gives another outcome every time, and the
                control (plain mitmdump websocket=false) never does: counted
    relay       the same other outcome through the control too: an effect of relaying the
                bytes through mitmproxy, not of devconsole (not counted unless --strict)
    timing      the direct runs differ (not counted)
    ptiming     the proxy's outcome varies and includes the direct one (not counted unless
                --strict)
    codes       same outcome, different close code from the testee (information)
    """
    d1, d2, px = res["d1"], res["d2"], res["px"]
    rd, rp, rc = (res.get(k, []) for k in RECHECK_KEYS)
    out: dict[str, list[list[str]]] = {
        k: [] for k in ("differ", "relay", "timing", "ptiming", "codes")
    }
    for case in sorted(set(d1) | set(px) | set(d2 or {}), key=_ver):
        a, p = d1.get(case), px.get(case)
        b = d2.get(case) if d2 is not None else a
        row = [case, outcome(a), outcome(b), outcome(p)]
        douts = [outcome(a), outcome(b)] + [outcome(x[case]) for x in rd if case in x]
        pouts = [outcome(p)] + [outcome(x[case]) for x in rp if case in x]
        couts = [outcome(x[case]) for x in rc if case in x]
        if len(douts) > 2 or len(pouts) > 1:
            row.append(
                f"re-runs: direct {', '.join(douts[2:])}; through {PROXY} "
                f"{', '.join(pouts[1:])}; through mitmdump websocket=false {', '.join(couts)}"
            )
        if len(set(douts)) > 1:
            out["timing"].append(row)
        elif outcome(p) == outcome(a) and len(set(pouts)) == 1:
            if (
                a
                and p
                and a.get("remoteCloseCode") != p.get("remoteCloseCode")
                and (not b or b.get("remoteCloseCode") == a.get("remoteCloseCode"))
            ):
                out["codes"].append(
                    [case, str(a.get("remoteCloseCode")), str(p.get("remoteCloseCode"))]
                )
        elif douts[0] in pouts:
            out["ptiming"].append(row)
        elif set(pouts) & set(couts):
            if (mode, case) in KNOWN:
                why = f"why: {KNOWN[(mode, case)]}"
                if len(row) > 4:
                    row[4] += f". {why}"
                else:
                    row.append(why)
            out["relay"].append(row)
        else:
            out["differ"].append(row)
    if strict:
        out["differ"] += out["relay"] + out["ptiming"]
        out["relay"], out["ptiming"] = [], []
    return out


def to_recheck(res: dict[str, Any], mode: str, strict: bool) -> list[str]:
    return [row[0] for row in compare(res, mode)["differ"]]


def case_reports(outdir: Path, index: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for case, r in index.items():
        with contextlib.suppress(OSError, ValueError):
            out[case] = json.loads((outdir / r["reportfile"]).read_text())
    return out


def _key_of(http_request: str) -> str | None:
    for line in http_request.split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == "sec-websocket-key":
            return v.strip()
    return None


def check_capture(
    mode: str,
    px_dir: Path,
    px_index: dict[str, dict[str, Any]],
    directs: list[dict[str, dict[str, Any]]],
    collected: dict[str, Any],
    agent: str,
    direct_dirs: list[Path],
) -> tuple[list[list[str]], dict[str, int]]:
    """Problems found in the capture (rows), and counts for the summary.

    "Sent invalid on purpose" = in every direct run the websockets testee closed with
    1002 (protocol error), unless wstest itself had closed with 1002 (7.7.3: the testee
    echoes it), and except the cases in NOT_FRAME_ERRORS."""
    reports = case_reports(px_dir, px_index)
    direct_reports = [case_reports(d, directs[0]) for d in direct_dirs]
    conns = collected.get("connections", [])
    by_key = {c["key"]: c for c in conns if c.get("key")}
    by_case: dict[int, dict[str, Any]] = {}
    for c in conns:
        q = dict((k, v) for k, v in c.get("query", []))
        if c.get("path", "").endswith("/runCase") and q.get("agent") == agent:
            with contextlib.suppress(ValueError):
                by_case[int(q.get("case", ""))] = c
    # the side that sends the fuzzer's frames
    fuzzer = "client" if mode == "client" else "server"
    testee = "server" if fuzzer == "client" else "client"
    problems: list[list[str]] = []
    counts = {"cases": 0, "matched": 0, "invalid_on_purpose": 0, "flagged": 0, "utf8": 0}
    if collected.get("skipped"):
        counts["skipped"] = 1
        return problems, counts
    for case in sorted(px_index, key=_ver):
        counts["cases"] += 1
        rep = reports.get(case, {})
        if mode == "client":
            c = by_key.get(_key_of(rep.get("httpRequest") or "") or "")
        else:
            c = by_case.get(int(rep.get("case", -1)))
        if c is None:
            problems.append([case, "no captured connection for this case"])
            continue
        counts["matched"] += 1
        perr = c["protocol_errors"]
        cerr = c["control_errors"]
        codes = {d.get(case, {}).get("remoteCloseCode") for d in directs}
        local = {dr.get(case, {}).get("localCloseCode") for dr in direct_reports}
        on_purpose = codes == {1002} and local != {1002} and case not in NOT_FRAME_ERRORS
        if on_purpose:
            counts["invalid_on_purpose"] += 1
        flagged = [e for e in perr if e[0] == fuzzer] + [e for e in cerr if e[0] == fuzzer]
        if any(e[0] == testee for e in perr):
            problems.append([case, f"parser error on the websockets side: {perr}"])
        if on_purpose:
            if flagged:
                counts["flagged"] += 1
            else:
                problems.append([case, "invalid frame sent on purpose (1002) but not flagged"])
        elif perr:
            problems.append([case, f"unexpected parser error: {perr}"])
        if c["invalid_utf8"][fuzzer]:
            counts["utf8"] += 1
    if collected.get("missed"):
        problems.append(["-", f"the tap client missed {collected['missed']} events"])
    return problems, counts


# ------------------------------------------------------------------ modes


def mode_client(py27: Path, out: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    log("fuzzingclient: wstest -> websockets echo server")
    cases = args.cases
    echo = start_echo(out)
    try:
        url = f"ws://{HOST}:{echo.port}"
        d1 = run_fuzzingclient(py27, "direct", url, out / "client-direct-1", cases, timeout)
        d2 = (
            None
            if args.once
            else run_fuzzingclient(py27, "direct", url, out / "client-direct-2", cases, timeout)
        )
        proxy, tap = start_proxy(echo.port, out, "client")
        coll_json = out / "client-capture.json"
        coll = start_collector(tap, coll_json, out)
        try:
            px = run_fuzzingclient(
                py27, "devconsole", f"ws://{HOST}:{proxy.port}", out / "client-proxy", cases,
                timeout,
            )  # fmt: skip
        finally:
            collected = stop_collector(coll, coll_json)
            proxy.stop()
        res: dict[str, Any] = {"d1": d1, "d2": d2, "px": px}
        again = to_recheck(res, "client", args.strict)[: args.recheck_max]
        if again and args.recheck:
            log(
                f"  re-running {len(again)} differing case(s) {args.recheck} more times: direct, "
                f"through {PROXY}, and through plain mitmdump websocket=false (the control)"
            )
            for key in RECHECK_KEYS:
                res[key] = []
            proxy, _ = start_proxy(echo.port, out, "client-recheck")
            control, _ = start_proxy(echo.port, out, "client-control", "mitmdump-raw")
            try:
                for i in range(args.recheck):
                    for agent, port, key in (
                        ("direct", echo.port, "recheck_direct"),
                        ("devconsole", proxy.port, "recheck_proxy"),
                        ("raw-relay", control.port, "recheck_control"),
                    ):
                        d = out / f"client-recheck-{agent}-{i + 1}"
                        u = f"ws://{HOST}:{port}"
                        res[key].append(
                            run_fuzzingclient(py27, agent, u, d, ",".join(again), timeout)
                        )
            finally:
                proxy.stop()
                control.stop()
    finally:
        echo.stop()
    directs = [d1] + ([d2] if d2 is not None else [])
    problems, counts = check_capture(
        "client", out / "client-proxy", px, directs, collected, "devconsole",
        [out / "client-direct-1"],
    )  # fmt: skip
    res.update(problems=problems, counts=counts)
    return res


def mode_server(py27: Path, out: Path, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    log("fuzzingserver: websockets client -> wstest fuzzingserver")
    cases = args.cases
    outdir = out / "server"
    fz = start_fuzzingserver(py27, outdir, cases)
    try:
        url = f"ws://{HOST}:{fz.port}"
        run_client_agent(url, "direct-1", outdir, timeout)
        if not args.once:
            run_client_agent(url, "direct-2", outdir, timeout)
        proxy, tap = start_proxy(fz.port, out, "server")
        coll_json = out / "server-capture.json"
        coll = start_collector(tap, coll_json, out)
        try:
            run_client_agent(f"ws://{HOST}:{proxy.port}", "devconsole", outdir, timeout)
        finally:
            collected = stop_collector(coll, coll_json)
            proxy.stop()
    finally:
        fz.stop()
    d1 = load_index(outdir, "direct-1")
    d2 = None if args.once else load_index(outdir, "direct-2")
    px = load_index(outdir, "devconsole")
    res: dict[str, Any] = {"d1": d1, "d2": d2, "px": px}
    again = to_recheck(res, "server", args.strict)[: args.recheck_max]
    if again and args.recheck:
        log(
            f"  re-running {len(again)} differing case(s) {args.recheck} more times: direct, "
            f"through {PROXY}, and through plain mitmdump websocket=false (the control)"
        )
        rdir = out / "server-recheck"
        fz = start_fuzzingserver(py27, rdir, ",".join(again))
        try:
            proxy, _ = start_proxy(fz.port, out, "server-recheck")
            control, _ = start_proxy(fz.port, out, "server-control", "mitmdump-raw")
            try:
                for i in range(args.recheck):
                    for agent, port in (
                        ("direct", fz.port),
                        ("devconsole", proxy.port),
                        ("raw-relay", control.port),
                    ):
                        run_client_agent(f"ws://{HOST}:{port}", f"{agent}-r{i + 1}", rdir, timeout)
            finally:
                proxy.stop()
                control.stop()
        finally:
            fz.stop()
        for agent, key in zip(("direct", "devconsole", "raw-relay"), RECHECK_KEYS, strict=True):
            res[key] = [load_index(rdir, f"{agent}-r{i + 1}") for i in range(args.recheck)]
    directs = [d1] + ([d2] if d2 is not None else [])
    problems, counts = check_capture(
        "server", outdir, px, directs, collected, "devconsole", [outdir]
    )
    res.update(problems=problems, counts=counts)
    return res


def summarize(name: str, mode: str, res: dict[str, Any], strict: bool) -> bool:
    """Print the summary of one mode; True if it passed."""
    d1, px = res["d1"], res["px"]
    cmp = compare(res, mode, strict)
    differ = cmp["differ"]
    behaviors: dict[str, int] = {}
    for r in px.values():
        behaviors[outcome(r)] = behaviors.get(outcome(r), 0) + 1
    log(f"\n## {name}: {len(px)} cases through {PROXY}, {len(d1)} direct")
    seen = ", ".join(f"{k} {v}" for k, v in sorted(behaviors.items()))
    log(f"outcomes through the proxy: {seen}")
    hdr = ["case", "direct run 1", "direct run 2", f"through {PROXY}"]
    if differ:
        log(f"\nDIFFERENT through the proxy ({len(differ)}):")
        log(md_table(hdr, differ, pad=True))
    else:
        log("cases with a different outcome through the proxy: none")
    sections = [
        (
            "relay",
            "the same outcome through plain mitmdump websocket=false (the control): an "
            "effect of relaying through mitmproxy, not of the capture; not counted unless "
            "--strict",
        ),
        ("timing", "timing-dependent: the direct runs differ; not counted"),
        (
            "ptiming",
            "timing-dependent through the proxy: on re-runs its outcome varies and includes "
            "the direct one; not counted unless --strict",
        ),
    ]
    for key, title in sections:
        if cmp[key]:
            log(f"\n{title} ({len(cmp[key])}):")
            log(md_table(hdr, cmp[key], pad=True))
    if cmp["codes"]:
        log(f"\nsame outcome, different close code from the testee ({len(cmp['codes'])}):")
        log(md_table(["case", "direct", f"through {PROXY}"], cmp["codes"]))
    c = res["counts"]
    if c.get("skipped"):
        log(f"capture check skipped (--proxy {PROXY})")
        return not differ
    log(
        f"capture: {c['matched']}/{c['cases']} cases matched to a captured connection; "
        f"{c['invalid_on_purpose']} send invalid frames on purpose (testee closed with 1002), "
        f"{c['flagged']} of them flagged by the parser (protocol error or invalid close "
        f"frame); {c['utf8']} with a text message flagged as invalid UTF-8"
    )
    for case, why in NOT_FRAME_ERRORS.items():
        if case in px:
            log(f"not counted as invalid on purpose: {case}: {why}")
    if res["problems"]:
        log(f"capture problems ({len(res['problems'])}):")
        log(md_table(["case", "problem"], res["problems"]))
    else:
        log("capture problems: none")
    return not differ and not res["problems"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", default="quick", help="quick | all | comma-separated patterns")
    ap.add_argument("--modes", default="client,server", help="client,server")
    ap.add_argument("--once", action="store_true", help="one direct run (no timing check)")
    ap.add_argument("--timeout", type=float, default=None, help="per wstest run, seconds")
    ap.add_argument("--out", default=str(REPORTS), help="report directory")
    ap.add_argument(
        "--strict",
        action="store_true",
        help="also count the cases that differ the same way through plain mitmdump and "
        "the ones whose outcome through the proxy varies",
    )
    ap.add_argument(
        "--recheck",
        type=int,
        default=3,
        help="re-run the cases that differ N more times each way to tell timing apart",
    )
    ap.add_argument("--recheck-max", type=int, default=30, help="re-run at most this many")
    ap.add_argument(
        "--proxy",
        default="devconsole",
        choices=["devconsole", "mitmdump", "mitmdump-raw"],
        help="the proxy under test (mitmdump: its WebSocket layer; mitmdump-raw: "
        "websocket=false); the capture check needs devconsole",
    )
    args = ap.parse_args(argv)
    global PROXY
    PROXY = args.proxy
    timeout = args.timeout or (5400.0 if args.cases == "all" else 1200.0)
    py27 = ensure_wstest()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    t0 = time.monotonic()
    ok = True
    results = {}
    for m in modes:
        if m == "client":
            results[m] = mode_client(py27, out, args, timeout)
        elif m == "server":
            results[m] = mode_server(py27, out, args, timeout)
        else:
            raise SystemExit(f"unknown mode {m!r}")
    for m, res in results.items():
        name = "fuzzingclient" if m == "client" else "fuzzingserver"
        ok = summarize(name, m, res, args.strict) and ok
    summary: dict[str, Any] = {"proxy": PROXY, "cases": args.cases}
    for m, r in results.items():
        cmp = compare(r, m, args.strict)
        summary[m] = {
            "cases": len(r["px"]),
            **cmp,
            "problems": r["problems"],
            "counts": r["counts"],
        }
    (out / f"summary-{PROXY}-{args.cases.replace(',', '_').replace('*', 'x')}.json").write_text(
        json.dumps(summary, indent=2)
    )
    log(f"\n{'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.0f} s; reports in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        sys.exit(main())
    sys.exit(130)
