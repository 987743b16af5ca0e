from __future__ import annotations

import re

from textual import scrollbar

from devconsole.model import CLIENT, SERVER
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.stream import RowLayout, StreamView
from tests.tui_fixtures import (
    EVIL_TEXT,
    UTC,
    Traffic,
    demo_traffic,
    focus_stream,
    frozen_clock,
    live_source,
    screen_text,
    settle,
)

SIZE = (140, 40)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def live_app(events=(), **kw):
    source = live_source(events)
    kw.setdefault("clock", frozen_clock)
    kw.setdefault("tz", UTC)
    return source, make_app(source, **kw)


def stream_of(app) -> StreamView:
    return app.main.stream


async def test_rows_show_seq_time_direction_type_size_preview() -> None:
    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert re.search(r"1 22:13:20\.250 +#1 → TXT +58 \{\"type\":\"hello\"", shown)
        assert re.search(r"2 22:13:20\.500 +#1 ← TXT", shown)
        assert re.search(r"#1 ← PING +2 hb", shown)
        assert re.search(r"#1 → PONG", shown)
        assert re.search(r"#2 ← BIN", shown)
        assert re.search(r"← TXT +INJ", shown)
        assert re.search(r"→ CLOSE", shown)
        assert "20k" in shown  # the 20,000-byte message, compact size
        # the merged view has a conn column, a single connection's view has not
        assert "conn" in RowLayout(show_conn=True).header().plain
        assert "conn" not in RowLayout(show_conn=False).header().plain
        assert RowLayout(show_conn=True).prefix_width > RowLayout(show_conn=False).prefix_width
        # the seq column grows with the seqs
        assert stream_of(app).row_layout.seq_width == 4
        wide = RowLayout(seq_width=9)
        assert wide.header().plain.index("time") == 10


async def test_payload_never_rendered_as_markup_or_control_sequences() -> None:
    t = Traffic()
    t.open("1")
    pieces = ["\x1b[31mRED\x1b[0m", "\x9b2J", "[bold]x[/bold]", "[link=file:///etc/passwd]"]
    for p in pieces:
        t.text("1", SERVER, p)
    t.binary("1", CLIENT, EVIL_TEXT.encode())
    app = make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        shown = screen_text(app)
        assert not CONTROL.search(shown.replace("\n", ""))
        assert "[bold]x[/bold]" in shown
        assert "[link=file:///etc/passwd]" in shown
        assert "RED" in shown
        stream = stream_of(app)
        for seq in range(1, 6):
            item = app.session.get(seq)
            text = stream.row_text(item, 120)
            assert not CONTROL.search(text.plain)
            for span in text.spans:  # no payload-driven styles, no links
                assert "link" not in str(span.style)


async def test_only_visible_rows_are_rendered_and_cached_by_seq(monkeypatch) -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 5000)
    source, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        stream = stream_of(app)
        rendered: list[int] = []
        original = stream.row_text

        def spy(item, width):
            rendered.append(item.seq)
            return original(item, width)

        monkeypatch.setattr(stream, "row_text", spy)
        await settle(pilot)
        page = stream.scrollable_content_region.height
        assert 0 < len(set(rendered)) <= page
        assert max(rendered) == 5000  # following: the newest rows
        # cache keys are seqs: new rows at the end do not re-render the old ones
        rendered.clear()
        source.push(t.burst("1", 3))
        await settle(pilot)
        assert sorted(set(rendered)) == [5001, 5002, 5003]
        assert all(isinstance(key[0], int) and key[0] > 4000 for key in stream._cache.keys())  # noqa: SIM118


async def test_follow_scroll_up_stops_end_resumes() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 200)
    source, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        stream = stream_of(app)
        assert stream.following
        assert stream.scroll_offset.y == stream.max_scroll_y > 0
        await pilot.press("up")  # the first key selects the last visible row
        assert not stream.following
        assert stream.cursor_seq == 200
        await pilot.press("up")
        assert stream.cursor_seq == 199
        await pilot.press("pageup", "pageup")
        y = stream.scroll_offset.y
        assert y < stream.max_scroll_y
        source.push(t.burst("1", 50))
        await settle(pilot)
        assert stream.scroll_offset.y == y  # stays where the user is
        assert app.main.query_one("#status").info.following is False
        await pilot.press("end")
        await settle(pilot)
        assert stream.following
        assert stream.cursor_seq == 250
        source.push(t.burst("1", 10))
        await settle(pilot)
        assert stream.scroll_offset.y == stream.max_scroll_y
        assert "260 " in screen_text(app)


async def test_wheel_and_scrollbar_stop_following() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 200)
    _, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        stream = stream_of(app)
        stream.post_message(scrollbar.ScrollUp())
        await pilot.pause()
        assert not stream.following
        stream.follow()
        assert stream.following
        stream.post_message(scrollbar.ScrollTo(y=3))
        await pilot.pause()
        assert not stream.following


async def test_home_enter_click() -> None:
    _, app = live_app(demo_traffic().events)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        stream = stream_of(app)
        await pilot.press("home")
        assert stream.cursor_seq == 1
        await pilot.press("j", "j", "k")
        assert stream.cursor_seq == 2
        await pilot.press("enter")
        await pilot.pause()
        assert app.main.detail.item is not None and app.main.detail.item.seq == 2
        assert app.focused is not stream  # the detail pane has focus
        # click on the 4th row (header and border are outside the stream widget)
        await pilot.click(StreamView, offset=(10, 3))
        await pilot.pause()
        assert stream.cursor_seq == 4
        assert app.main.detail.item.seq == 4


async def test_eviction_keeps_the_rows_under_the_users_eyes() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 300)
    source, app = live_app(t.take(), max_items=300)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        stream = stream_of(app)
        assert stream.select_seq(150)  # somewhere in the middle: no longer following
        await pilot.pause()
        top = stream.seq_at(stream.scroll_offset.y)
        assert top is not None
        source.push(t.burst("1", 50))  # evicts seqs 1..50
        await settle(pilot)
        assert app.session.evicted == 50
        assert stream.seq_at(stream.scroll_offset.y) == top


async def test_paused_view_is_frozen_and_shows_evicted_rows() -> None:
    t = Traffic()
    t.open("1")
    t.burst("1", 100)
    source, app = live_app(t.take(), max_items=100)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        stream = stream_of(app)
        await pilot.press("home")
        await pilot.press("space")
        assert stream.paused
        rows = stream.row_count
        y = stream.scroll_offset.y
        source.push(t.burst("1", 60))  # evicts 1..60 while paused
        await settle(pilot)
        assert stream.row_count == rows
        assert stream.scroll_offset.y == y
        shown = screen_text(app)
        assert '{"n":1,' in shown  # rows on screen at pause time stay readable
        assert "PAUSED +60" in shown
        assert "evicted 60" in shown
        await pilot.press("pagedown", "pagedown", "pagedown")  # beyond what was on screen
        assert "evicted from the buffer while paused" in screen_text(app)
        await pilot.press("space")
        await settle(pilot)
        assert not stream.paused
        assert stream.row_count == 100
        assert stream.seq_at(0) == 61
        assert "evicted from the buffer" not in screen_text(app)


async def test_flood_of_50k_messages_stays_responsive() -> None:
    t = Traffic()
    t.open("1")
    source, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for _ in range(10):  # 10 batches of 5,000, like the tap delivers them
            source.push(t.burst("1", 5000))
        # no redraw happened per message: the stream has not caught up yet
        assert stream_of(app).row_count < 50_000
        await pilot.pause(2 / app.refresh_hz)  # the next tick(s) of the redraw timer
        stream = stream_of(app)
        assert stream.row_count == 50_000
        assert stream.seq_at(stream.row_count - 1) == 50_000
        assert "50000 " in screen_text(app)
        await pilot.press("space")  # a keypress is still handled promptly
        assert app.main.paused
        assert "PAUSED" in screen_text(app)


async def test_down_in_a_live_stream_stays_live() -> None:
    """Issue 16.8: the first ↓ in the stream left live mode (there is nothing below the
    newest message); scrolling up leaves it."""
    t = Traffic()
    t.open("1")
    t.burst("1", 100)
    source, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await focus_stream(pilot)
        stream = stream_of(app)
        await pilot.press("down")
        assert stream.following and stream.cursor_seq == 100
        source.push(t.burst("1", 20))
        await settle(pilot)
        assert stream.scroll_offset.y == stream.max_scroll_y
        await pilot.press("pagedown", "j")
        assert stream.following and stream.cursor_seq == 120
        await pilot.press("up")
        assert not stream.following and stream.cursor_seq == 119
        await pilot.press("G")  # G, like End, goes back to the newest and follows
        assert stream.following and stream.cursor_seq == 120


def long_messages() -> Traffic:
    t = Traffic()
    t.open("1", path="/chat")
    for i in range(30):
        t.json("1", SERVER, {"type": "chat", "from": "user" + str(i), "text": "lorem ipsum " * 12})
    return t


async def preview_width(size: tuple[int, int]) -> tuple[int, str]:
    app = make_app(MemorySource(long_messages().events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        lines = [ln for ln in screen_text(app).splitlines() if '{"type":"chat"' in ln]
        line = lines[-1]
        start = line.index('{"type":"chat"')
        end = line.rstrip(" │▁▂▃▄▅▆▇█").rstrip("…").rstrip()
        return len(end) - start, line


async def test_the_preview_gets_the_width() -> None:
    """Issue 16.5 / 8.6: about 20 characters of preview at 120 columns (and none at 80);
    the detail pane took half the width even when empty."""
    at80, line = await preview_width((80, 24))
    assert at80 >= 40, line
    assert re.search(r"^│ +\d+ 22:13:\d\d +#1 ← TXT ", line)  # time without milliseconds
    at120, line = await preview_width((120, 40))
    assert at120 >= 70, line
    at200, line = await preview_width((200, 50))
    assert at200 >= 150, line


async def test_rows_a_rule_acted_on_name_the_rule_and_show_what_was_sent() -> None:
    """docs/rules.md: a message a rule rewrote shows EDIT, the rule's name and the body
    sent; one a rule delayed shows RULE; one a rule held shows HOLD and "rule", not a
    breakpoint 0 that does not exist."""
    from devconsole.model import Outcome

    t = Traffic()
    t.open("1")
    t.text(
        "1", CLIENT, "original text", rule="mask", action="rewrite",
        outcome=Outcome.EDITED, edited=b"rewritten text", edited_opcode=1, edited_size=14,
    )  # fmt: skip
    t.text("1", CLIENT, "late one", rule="slow chat", action="delay 0.3s")
    t.text("1", CLIENT, "caught one", held=1, breakpoint=0, rule="catch", action="hold")
    _, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        lines = screen_text(app).splitlines()
        edited = next(line for line in lines if "rewritten text" in line)
        assert "EDIT" in edited and "mask" in edited and "original text" not in edited
        late = next(line for line in lines if "late one" in line)
        assert "RULE" in late and "slow chat" in late
        caught = next(line for line in lines if "caught one" in line)
        assert "HOLD" in caught and "rule" in caught and "bp0" not in caught


async def test_an_outcome_re_renders_only_the_row_of_its_message(monkeypatch) -> None:
    """Issue 9: a held message's outcome changes the buffered item in place; the row,
    cached by seq, is rendered again (HOLD becomes DROP), and no other row is."""
    from devconsole.model import Outcome, OutcomeEvent

    t = Traffic()
    t.open("1")
    t.burst("1", 5)
    held = t.text("1", CLIENT, "hold me", held=1, breakpoint=2)
    t.burst("1", 5)
    source, app = live_app(t.take())
    async with app.run_test(size=SIZE) as pilot:
        stream = stream_of(app)
        await settle(pilot)
        row = next(line for line in screen_text(app).splitlines() if "hold me" in line)
        assert "HOLD" in row and "bp2" in row
        rendered: list[int] = []
        original = stream.row_text

        def spy(item, width):
            rendered.append(item.seq)
            return original(item, width)

        monkeypatch.setattr(stream, "row_text", spy)
        source.push([OutcomeEvent("1", t.ts, held.seq, 1, Outcome.DROPPED)])
        await settle(pilot)
        assert set(rendered) == {held.seq}
        row = next(line for line in screen_text(app).splitlines() if "hold me" in line)
        assert "DROP" in row and "HOLD" not in row
