from __future__ import annotations

from dataclasses import replace

from devconsole.model import GapEvent, Snapshot
from devconsole.session import Session
from devconsole.tui import make_app
from devconsole.tui.statusbar import StatusInfo, status_text
from tests.tui_fixtures import UTC, Traffic, frozen_clock, live_source, screen_text, settle

BASE = StatusInfo(
    address="127.0.0.1:8080",
    source_state="live",
    messages=12345,
    total_bytes=3 << 20,
    rate=1234.0,
    buffered=45000,
    max_items=100000,
    buffer_bytes=12 << 20,
    max_bytes=256 << 20,
    evicted=0,
    missed=0,
    paused=False,
    paused_new=0,
    following=True,
    filtered=False,
)


def test_status_text_fields() -> None:
    plain = status_text(BASE).plain
    for part in (
        "▶ LIVE",
        "127.0.0.1:8080",
        "12,345 msgs",
        "3.0 MiB",
        "1.2k/s",
        "buffer 45,000/100,000 12 MiB/256 MiB",
        "evicted 0",
        "missed 0",
    ):
        assert part in plain
    assert "PAUSED" not in plain and "filtered" not in plain


def test_status_text_paused_scrolled_errors() -> None:
    plain = status_text(
        replace(BASE, paused=True, paused_new=1500, evicted=7, missed=3, filtered=True)
    ).plain
    assert plain.startswith(" ⏸ PAUSED +1,500 ")
    assert "evicted 7" in plain and "missed 3" in plain and "filtered" in plain
    assert "SCROLLED" in status_text(replace(BASE, following=False)).plain
    ended = status_text(replace(BASE, source_state="source ended \x1b[31m")).plain
    assert "source ended \\x1b[31m" in ended


def test_info_prefers_the_proxy_address_from_the_snapshot() -> None:
    s = Session(max_items=10, max_bytes=1 << 20)
    kw = dict(
        address="tap /run/x.sock",
        source_state="live",
        rate=0.0,
        paused=False,
        paused_new=0,
        following=True,
        filtered=False,
    )
    assert StatusInfo.from_session(s, **kw).address == "tap /run/x.sock"
    s.apply(Snapshot(seq=0, connections=[], proxy="127.0.0.1:8080", evicted_messages=5))
    info = StatusInfo.from_session(s, **kw)
    assert info.address == "127.0.0.1:8080"
    assert info.evicted == 5
    assert info.max_items == 10


async def test_status_bar_shows_live_totals_gaps_and_evictions() -> None:
    t = Traffic()
    t.open("1")
    source = live_source(t.take(), description="tap /tmp/tap.sock")
    app = make_app(source, max_items=100, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "tap /tmp/tap.sock" in screen_text(app)
        source.push([*t.burst("1", 150), GapEvent(missed=42, reason="slow client")])
        await settle(pilot)
        shown = screen_text(app)
        assert "150 msgs" in shown
        assert "buffer 100/100" in shown
        assert "evicted 50" in shown
        assert "missed 42" in shown


def test_a_narrow_bar_drops_whole_fields_never_half_a_number() -> None:
    """Issue 8.6: at 80 columns the status bar was cut off mid-number."""
    info = replace(BASE, tap="/run/user/1000/devconsole/tap-4242.sock", evicted=1234567)
    wide = status_text(info, 200).plain
    assert "tap /run/user/1000/devconsole/tap-4242.sock" in wide
    assert "buffer 45,000/100,000 12 MiB/256 MiB" in wide
    for width in (80, 60, 40, 30):
        t = status_text(info, width)
        assert t.cell_len <= width, (width, t.plain)
        plain = t.plain
        assert "…" not in plain
        assert plain.startswith(" ▶ LIVE ")
        # whatever is shown is whole: the numbers appear as they are in the wide line
        for field in plain.split(" │ ")[1:]:
            assert field.strip() in wide, (width, field)
    narrow = status_text(info, 80).plain
    assert "127.0.0.1:8080" in narrow and "12,345 msgs" in narrow and "1.2k/s" in narrow
    assert "evicted 1,234,567" in narrow  # a problem outranks the buffer's size
    assert "tap tap-4242.sock" in status_text(info, 100).plain  # the file name, when short


async def test_the_bar_and_help_show_the_tap_this_screen_reads() -> None:
    """Issue 16.3: the TUI's status bar and ? show the tap address (to reach the same proxy
    with devconsole conns --tap from another terminal)."""
    t = Traffic()
    t.open("1")
    tap = "/run/user/1000/devconsole/tap-4242.sock"
    source = live_source(
        [Snapshot(seq=0, connections=[], proxy="127.0.0.1:8080", evicted_messages=0), *t.take()],
        description=f"tap {tap}",
    )
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert "127.0.0.1:8080 │ tap /run/user/1000/devconsole/tap-4242.sock │" in shown
        await pilot.press("question_mark")
        await pilot.pause()
        shown = screen_text(app)
        assert f"Reading the proxy on 127.0.0.1:8080 through its tap {tap}" in shown
        assert f"with several: --tap {tap}" in shown


def test_held_messages_are_never_left_out_of_the_bar() -> None:
    """Issue 9: held messages wait for a decision, so their count stays on the narrowest
    bar, and says which key lists them."""
    from devconsole.samples import intercept_traffic

    info = replace(BASE, held=1234, evicted=5, missed=2)
    assert "⏸ 1,234 HELD (I)" in status_text(info).plain
    assert "⏸ 1,234 HELD (I)" in status_text(info, 40).plain
    assert "HELD" not in status_text(BASE).plain
    s = Session()
    s.apply_all(intercept_traffic().events)
    kw = dict(source_state="live", rate=0.0, paused=False, paused_new=0, following=True)
    assert StatusInfo.from_session(s, address="", filtered=False, **kw).held == 3
