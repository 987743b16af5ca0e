"""The fan-out view (``o``, ``devconsole.tui.fanout``) and the rest of scale-out on the
screen: the backplane's pseudo-connection, ``instance:`` filters, a Redis source that
lost Redis. Against a real redis-server, two app instances joined by it and two proxies
publishing to it; snapshots from ``devconsole.samples.fanout_traffic``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devconsole.samples import FAULT_NOW, fanout_traffic
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.app import REDIS_LOST
from devconsole.tui.fanout import FanoutScreen
from tests.tui_fixtures import (
    UTC,
    focus_stream,
    frozen_clock,
    notifications,
    open_detail,
    screen_text,
    settle,
)

SIZE = (140, 40)
LATER = FAULT_NOW  # long after the sample publications: a missed one is certain


def app_for(**kw):
    source = MemorySource(fanout_traffic().events)
    return make_app(source, clock=frozen_clock, wall_clock=lambda: LATER, tz=UTC, **kw)


async def test_o_on_a_publication_shows_where_it_went() -> None:
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_detail(pilot, 11)  # the third publication
        text = screen_text(app)
        assert "publish chat:lobby" in text
        assert "fan-out 3 receivers on app-1, app-2, delay p50 3 ms p95 210 ms, 1 missed" in text
        await focus_stream(pilot)
        await pilot.press("o")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FanoutScreen) and screen.trace.seq == 11
        text = screen_text(app)
        assert "publication #11 on chat:lobby" in text
        assert "received by 3 connections on app-1, app-2" in text
        assert "delay p50 3 ms  p95 210 ms  max 210 ms" in text and "1 missed" in text
        assert "#app-2/2" in text and "missed" in text
        assert "app-1                2      2 ms      3 ms      3 ms" in text
        assert "app-2                1    210 ms    210 ms    210 ms" in text
        assert "✗ #app-2/2       missed  open  /chat" in text
        # [ goes to the previous publication on the channel: nobody missed that one
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert screen.trace.seq == 6 and "none missed" in screen_text(app)
        await pilot.press("left_square_bracket")
        await settle(pilot)
        assert "missed: cannot tell (the first publication on this channel)" in screen_text(app)
        # Enter on a delivery goes to that frame
        await pilot.press("down", "down", "down", "enter")  # the slowest: app-2/2
        await settle(pilot)
        assert app.screen is app.main and app.main.stream.cursor_seq == 5
        # ... in its connection's stream when another connection is shown
        app.main.connections.select("app-1/1")
        await settle(pilot)
        await open_detail(pilot, 11)
        await focus_stream(pilot)
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("down", "enter")  # app-1/3's frame #13
        await settle(pilot)
        assert app.main.conn == "app-1/3" and app.main.stream.cursor_seq == 13


async def test_o_on_a_delivered_frame_shows_its_publication() -> None:
    app = app_for()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await open_detail(pilot, 9)  # app-2/1's copy of the second publication
        assert "carries publication #6 on chat:lobby, 210 ms after it" in screen_text(app)
        await focus_stream(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, FanoutScreen) and app.screen.trace.seq == 6


async def test_o_without_a_backplane_says_how_to_record_one() -> None:
    from devconsole.samples import demo_traffic

    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = notifications(app)
        await open_detail(pilot, 2)
        await focus_stream(pilot)
        await pilot.press("o")
        assert any("--backplane redis://" in m for _, m, _ in shown)


async def test_the_backplane_row_and_instance_filters() -> None:
    app = app_for()
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "app-1 backplane 127.0.0.1:6379 chat:*" in text and "redis pub/sub" in text
        assert "127.0.0.1chat" not in text
        assert app.main.apply_filter("instance:app-2")
        await settle(pilot)
        seqs = list(app.main.stream.view.seqs)
        assert seqs and all(app.session.get(s).conn.startswith("app-2/") for s in seqs)
    async with app_for().run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = screen_text(pilot.app)
        assert "app-1 ⇄ c… redis pub/sub" in text  # narrow: the pattern after the glyph


class LosingSource(MemorySource):
    """A source that says whether it reaches Redis, like ``RedisSource.connected``."""

    connected = False


async def test_a_redis_source_that_lost_redis_says_so() -> None:
    source = LosingSource(fanout_traffic().events)
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert REDIS_LOST not in screen_text(app)  # not before it ever connected
        source.connected = True
        await settle(pilot)
        source.connected = False
        await settle(pilot)
        assert REDIS_LOST in screen_text(app)
        source.connected = True
        await settle(pilot)
        assert REDIS_LOST not in screen_text(app)


def _fanout_before(seq: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await open_detail(pilot, seq)
        await focus_stream(pilot)
        await pilot.press("o")
        await settle(pilot)

    return run_before


def test_snapshot_fanout_80x24(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(80, 24), run_before=_fanout_before(11))


def test_snapshot_fanout_200x50(snap_compare) -> None:
    assert snap_compare(app_for(), terminal_size=(200, 50), run_before=_fanout_before(11))


# --------------------------------------------------------------------------- real Redis


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_fanout_of_a_real_backplane_on_screen(short_tmp: Path, redis_server) -> None:
    """Two app instances joined by a real Redis backplane, each behind a proxy publishing
    to Redis (the first records the backplane), four clients; the second publication
    does not reach client 4. The screen on the Redis stream shows the fan-out of each,
    client 4 missing the second, and the lag of instance b."""
    import asyncio

    import redis.asyncio as aioredis
    from websockets.asyncio.client import connect

    from devconsole.scale.source import RedisSource
    from tests.conftest import wait_until
    from tests.scale_helpers import proxy_process
    from tests.test_scale_backplane import CHANNEL, DELAYS, app_instance

    url = redis_server.url
    got: dict[str, list[str]] = {c: [] for c in DELAYS}

    async def client(port: int, cid: str) -> None:
        async with connect(f"ws://127.0.0.1:{port}/chat?c={cid}", compression=None) as ws:
            async for m in ws:
                got[cid].append(str(m))

    async with (
        app_instance(url) as app1,
        app_instance(url, skip=(b'{"n": 2}', "4")) as app2,
    ):
        with (
            proxy_process(
                short_tmp / "a",
                "--mode", f"reverse:http://127.0.0.1:{app1}",
                "--publish", url, "--name", "app-a",
                "--backplane", url, "--channels", "chat:*",
            ) as pa,
            proxy_process(
                short_tmp / "b",
                "--mode", f"reverse:http://127.0.0.1:{app2}",
                "--publish", url, "--name", "app-b",
            ) as pb,
        ):  # fmt: skip
            ports = {"1": pa.port, "2": pa.port, "3": pb.port, "4": pb.port}
            tasks = [asyncio.ensure_future(client(p, c)) for c, p in ports.items()]
            app = make_app(RedisSource(url))
            r = aioredis.from_url(url)
            try:
                async with app.run_test(size=(160, 45)) as pilot:
                    session = app.session

                    def opened() -> bool:
                        app.sync()
                        conns = session.connections.values()
                        return sum(1 for c in conns if c.state == "open") == 5

                    await wait_until(opened, timeout=20)
                    for n, want in ((1, 4), (2, 3), (3, 4)):
                        body = json.dumps({"n": n})
                        await r.publish(CHANNEL, body)
                        await wait_until(
                            lambda body=body, want=want: (
                                sum(body in v for v in got.values()) == want
                            ),
                            timeout=10,
                        )
                    fan = app.state.live.fanout

                    def traced() -> bool:
                        app.sync()
                        return len(fan.publications) == 3 and fan.publications[2].receivers == 4

                    await wait_until(traced, timeout=15)
                    await settle(pilot)
                    second = fan.publications[1]
                    cid_of = {
                        c.id: c.url.rsplit("=", 1)[1]
                        for c in session.connections.values()
                        if "c=" in c.url
                    }
                    await open_detail(pilot, second.seq)
                    await focus_stream(pilot)
                    await pilot.press("o")
                    await settle(pilot)
                    assert isinstance(app.screen, FanoutScreen)
                    text = screen_text(app)
                    assert "received by 3 connections on app-a, app-b" in text, text
                    assert "1 missed" in text, text
                    (missed,) = fan.missed(second, app.state.wall_clock())
                    assert cid_of[missed] == "4" and f"#{missed}" in text
                    assert "app-a " in text and "app-b " in text  # per instance
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await r.aclose()
