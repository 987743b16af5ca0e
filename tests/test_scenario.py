"""Chaos scenarios without a network: parsing (errors with line and column) and grading
from events, as the proxy would have recorded them."""

from __future__ import annotations

from pathlib import Path

import pytest

from devconsole.model import (
    CLIENT,
    SERVER,
    ControlFrame,
    EndEvent,
    Handshake,
    HandshakeEvent,
    Message,
    Opcode,
    RefusedEvent,
)
from devconsole.scenario import ScenarioError, StepRecord, grade, load
from devconsole.session import Session

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_000.0


def test_the_example_scenario_loads() -> None:
    text = (ROOT / "examples" / "chaos-feed.toml").read_text()
    sc = load(text, "examples/chaos-feed.toml")
    assert [s.kind for s in sc.steps] == ["rules", "close", "half_open"]
    assert [e.kind for e in sc.expectations] == [
        "reconnect_within",
        "backoff",
        "half_open_detected_within",
        "first_message_within",
    ]
    assert sc.steps[0].rules is not None and sc.steps[0].rules.handshakes[0].refuse is not None
    assert sc.length == 28.0


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ('[[step]]\nat = "1s"\nclose = 1005\n[[expect]]\nbackoff = "fixed"\n', 3, 9, "close code"),
        ('[[step]]\nat = "soon"\nabort = true\n[[expect]]\nbackoff = "fixed"\n', 2, 6, "duration"),
        (
            '[[step]]\nat = "1s"\nabort = true\nclose = 1000\n[[expect]]\nbackoff = "fixed"\n',
            1,
            1,
            "exactly one",
        ),
        (
            '[[step]]\nat = "1s"\nhalf_open = "forever"\n[[expect]]\nbackoff = "fixed"\n',
            3,
            13,
            "duration",
        ),
        ('[[expect]]\nbackoff = "fast"\n', 2, 11, "one of"),
        ('[[expect]]\nreconnect_within = "3s"\nafter = 4\n', 3, 9, "after names a step"),
        ("[scenario]\nname = 'x'\n", 0, 0, "at least one"),
        (
            '[[step]]\nat = "1s"\n[[step.rule]]\nmatch = "(x"\ndrop = true\n'
            '[[expect]]\nbackoff = "fixed"\n',
            1,
            1,
            "unclosed",
        ),
        ("[[expect]]\nbackoff = \n", 2, 11, "Invalid value"),
    ],
)
def test_errors_say_where(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        load(text, "s.toml")
    assert message in str(exc.value)
    assert (exc.value.line, exc.value.column) == (line, col)


def test_rules_file_named_by_a_step_is_read_through_the_caller() -> None:
    read: list[str] = []

    def read_file(name: str) -> str:
        read.append(name)
        return '[[handshake]]\npath = "/feed"\nrefuse = 503\n'

    sc = load(
        '[[step]]\nat = "1s"\nrules = "r.toml"\nfor = "2s"\n[[expect]]\nbackoff = "not-storm"\n',
        "s",
        read_file,
    )
    assert read == ["r.toml"] and sc.steps[0].duration == 2.0


# --------------------------------------------------------------------------- grading


class Recorder:
    """Builds the events a proxy records, on a fake clock."""

    def __init__(self) -> None:
        self.session = Session()
        self.next = 1
        self.seq = 1

    def hs(self, ts: float, path: str = "/feed", status: int = 101) -> str:
        conn = str(self.next)
        self.next += 1
        h = Handshake(conn, ts, "127.0.0.1:5000", "s:1", "ws", f"ws://h{path}", "GET", path, [],
                      "1.1", [("User-Agent", "ua")], [], status, ts_response=ts + 0.01)  # fmt: skip
        self.session.apply(HandshakeEvent(h) if status == 101 else RefusedEvent(h))
        return conn

    def msg(self, conn: str, ts: float, side: str, text: str, dropped: bool = False) -> None:
        b = text.encode()
        self.session.apply(Message(self.seq, conn, ts, side, Opcode.TEXT, b, len(b), len(b) + 2,  # type: ignore[arg-type]
                                   dropped=dropped))  # fmt: skip
        self.seq += 1

    def close(self, conn: str, ts: float, side: str) -> None:
        self.session.apply(
            ControlFrame(self.seq, conn, ts, side, Opcode.CLOSE, b"\x03\xe8", 4, 1000)
        )  # type: ignore[arg-type]
        self.seq += 1

    def end(self, conn: str, ts: float) -> None:
        self.session.apply(EndEvent(conn, ts, False, "proxy"))


SCENARIO = """
[scenario]
path = "/feed"
[[step]]
at = "1s"
close = 1012
[[step]]
at = "10s"
half_open = "5s"
[[expect]]
reconnect_within = "3s"
after = 1
[[expect]]
backoff = "exponential"
[[expect]]
half_open_detected_within = "2s"
[[expect]]
first_message_within = "1s"
from = "server"
[[expect]]
no_missing = "id"
"""


def run_grade(rec: Recorder, sc_text: str, records: list[tuple[int, float, list[str]]]):  # type: ignore[no-untyped-def]
    sc = load(sc_text, "s")
    steps = [
        StepRecord(next(s for s in sc.steps if s.index == i), ts, conns) for i, ts, conns in records
    ]
    for r in steps:
        if r.step.duration:
            r.undone = r.ts + r.step.duration
    return {v.expectation.kind: v for v in grade(sc, rec.session, steps, T0, T0 + 30)}


def test_grading_a_client_that_recovers_well() -> None:
    rec = Recorder()
    c1 = rec.hs(T0)
    rec.msg(c1, T0 + 0.2, SERVER, '{"id": 1}')
    rec.end(c1, T0 + 1.0)  # step 1 closes it
    t = T0 + 1.0
    for delay in (0.2, 0.4, 0.8):  # refused attempts, exponential backoff
        t += delay
        c = rec.hs(t, status=503)
    t += 1.5
    c2 = rec.hs(t)
    rec.msg(c2, t + 0.3, SERVER, '{"id": 2}')
    rec.msg(c2, T0 + 10.5, SERVER, '{"id": 3}', dropped=True)  # lost in half-open
    rec.close(c2, T0 + 11.2, CLIENT)  # its heartbeat noticed
    rec.end(c2, T0 + 12.2)
    c3 = rec.hs(T0 + 12.4)
    rec.msg(c3, T0 + 12.6, SERVER, '{"id": 3}')  # the server resumed from the cursor
    assert c
    v = run_grade(rec, SCENARIO, [(1, T0 + 1.0, [c1]), (2, T0 + 10.0, [c2])])
    assert v["reconnect_within"].ok and v["reconnect_within"].values == [pytest.approx(2.91)]
    assert v["backoff"].ok and v["backoff"].measured.startswith("exponential")
    assert v["half_open_detected_within"].ok
    assert v["half_open_detected_within"].values == [pytest.approx(1.2)]
    assert v["first_message_within"].ok
    assert v["first_message_within"].values == pytest.approx([0.29, 0.19])
    assert v["no_missing"].ok, v["no_missing"].measured


def test_grading_a_client_that_recovers_badly() -> None:
    rec = Recorder()
    c1 = rec.hs(T0)
    rec.end(c1, T0 + 1.0)
    t = T0 + 1.0
    for _ in range(6):  # a reconnect storm
        t += 0.01
        rec.hs(t, status=503)
    c2 = rec.hs(T0 + 5.0)  # open only 4 s after the fault
    rec.msg(c2, T0 + 7.0, SERVER, '{"id": 5}')  # and ids 2-4 never come
    rec.msg(c2, T0 + 10.5, SERVER, '{"id": 6}', dropped=True)
    # half-open never noticed: no close, no end before the release
    v = run_grade(rec, SCENARIO, [(1, T0 + 1.0, [c1]), (2, T0 + 10.0, [c2])])
    assert not v["reconnect_within"].ok and "4.01 s" in v["reconnect_within"].measured
    assert not v["backoff"].ok and v["backoff"].measured == "storm"
    assert not v["half_open_detected_within"].ok
    assert "not detected" in v["half_open_detected_within"].detail
    assert not v["first_message_within"].ok
    assert not v["no_missing"].ok and v["no_missing"].measured == "1 missing: 6"


def test_a_fault_step_that_hit_nothing_fails_the_expectations_about_it() -> None:
    rec = Recorder()
    rec.hs(T0)
    sc_text = '[[step]]\nat = "1s"\nabort = true\n[[expect]]\nreconnect_within = "1s"\n'
    sc = load(sc_text, "s")
    rec_step = StepRecord(sc.steps[0], T0 + 1, [], error="no live connection")
    [verdict] = grade(sc, rec.session, [rec_step], T0, T0 + 5)
    assert not verdict.ok
