from __future__ import annotations

import json
import re

import msgpack
from textual.widgets import Tree

from devconsole.decoders import Node
from devconsole.model import CLIENT, SERVER
from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.detail import DetailPane, DetailTree, fill_tree
from tests.tui_fixtures import (
    EVIL_TEXT,
    UTC,
    Traffic,
    focus_stream,
    frozen_clock,
    open_detail,
    screen_text,
    settle,
)

SIZE = (140, 40)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def detail_traffic() -> Traffic:
    t = Traffic()
    t.open("1", path="/chat")
    t.json(  # 1
        "1",
        SERVER,
        {"type": "welcome", "user": {"id": 42, "name": "ada"}, "rooms": ["lobby", "dev"]},
    )
    t.binary("1", SERVER, msgpack.packb({"sym": "BTC", "px": 37123.5, "qty": [1, 2, 3]}))  # 2
    t.binary("1", CLIENT, bytes(range(0, 40)) + b"\xff\xfe")  # 3
    t.text(
        "1", CLIENT, "x" * 20000, frames=3, frame_sizes=(8192, 8192, 3616), compressed=True, rsv=4
    )  # 4
    t.close("1", SERVER, 4001, "session expired")  # 5
    t.text("1", SERVER, EVIL_TEXT)  # 6
    t.json("1", SERVER, {EVIL_TEXT: "[bold]v[/bold]", "k": "\x1b]8;;file:///etc/passwd\x1b\\"})  # 7
    t.json("1", SERVER, {"type": "other", "n": 1})  # 8
    t.text("1", SERVER, "y" * 100, size=5000)  # 9: truncated by capture
    return t


def make(t: Traffic | None = None):
    t = t or detail_traffic()
    return make_app(MemorySource(t.events), clock=frozen_clock, tz=UTC)


async def select(pilot, seq: int) -> DetailPane:
    return await open_detail(pilot, seq)


def tree_labels(tree: Tree) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        out.append(node.label.plain)
        for child in node.children:
            walk(child)

    walk(tree.root)
    return out


async def test_json_picks_the_tree_and_t_toggles_pretty_text() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        detail = await select(pilot, 1)
        assert detail.view_name == "json"
        assert "json" in detail.view_names and "frames" in detail.view_names
        tree = detail.query_one(DetailTree)
        assert tree.display and detail.focus_target() is tree
        labels = tree_labels(tree)
        assert any(label.startswith("type") and "welcome" in label for label in labels)
        assert any(label.startswith("name") and "ada" in label for label in labels)
        await pilot.press("t")
        await pilot.pause()
        assert not detail.tree_mode
        shown = screen_text(app)
        assert '"user": {' in shown
        assert '"name": "ada"' in shown
        await pilot.press("t")
        assert detail.tree_mode


async def test_msgpack_hex_close_and_frames_views() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        detail = await select(pilot, 2)
        assert detail.view_name == "msgpack"
        assert any("BTC" in label for label in tree_labels(detail.query_one(DetailTree)))

        detail = await select(pilot, 3)
        assert detail.view_name == "hex"
        shown = screen_text(app)
        assert "00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f" in shown

        detail = await select(pilot, 5)
        assert detail.view_name == "close"
        shown = screen_text(app)
        assert "4001" in shown and "private use" in shown and "session expired" in shown

        detail = await select(pilot, 4)
        while detail.view_name != "frames":
            detail.cycle_view()
        shown = screen_text(app)
        assert "fragmented into 3 frames" in shown
        assert re.search(r"1 +text +0 +RSV1 +8,192", shown)
        assert re.search(r"2 +continuation +0 +- +8,192", shown)
        assert re.search(r"3 +continuation +1 +- +3,616", shown)
        assert "permessage-deflate" in shown
        assert "3 frames" in shown and "deflate" in shown  # the meta line


async def test_v_cycles_views_and_the_choice_sticks() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        detail = await select(pilot, 1)
        names = list(detail.view_names)
        await pilot.press("v")
        seen = [names[0], detail.view_name]
        for _ in names[1:]:
            detail.cycle_view()
            seen.append(detail.view_name)
        assert seen[-1] == seen[0]  # wrapped around
        assert sorted(set(seen)) == sorted(names)
        while detail.view_name != "hex":
            detail.cycle_view()
        detail = await select(pilot, 8)  # another JSON message: hex stays picked
        assert detail.view_name == "hex"
        detail = await select(pilot, 5)  # a close frame has no... hex? it has: still hex
        assert detail.view_name in detail.view_names


async def test_detail_pane_renders_payloads_literally() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        detail = await select(pilot, 6)
        assert detail.view_name == "text"
        shown = screen_text(app)
        assert not CONTROL.search(shown.replace("\n", ""))
        assert "[bold]x[/bold]" in shown
        assert "[link=file:///etc/passwd]click[/link]" in shown
        assert "\\x1b[31mRED" in shown  # visible escape
        detail = await select(pilot, 7)
        labels = tree_labels(detail.query_one(DetailTree))
        joined = "\n".join(labels)
        assert "[bold]v[/bold]" in joined
        assert "[link=file:///etc/passwd]click[/link]" in joined
        assert not CONTROL.search(joined.replace("\n", ""))
        shown = screen_text(app)
        assert not CONTROL.search(shown.replace("\n", ""))


async def test_truncated_message_says_so() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, 9)
        shown = screen_text(app)
        assert "4.9 KiB (wire 4.9 KiB)  truncated" in shown
        assert "payload truncated by capture: 100 of 5000 bytes" in shown


async def test_enter_opens_the_detail_and_tab_cycles_panes() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.main
        assert app.focused is screen.connections  # where the screen starts
        assert not screen.detail_open and not screen.detail.display
        await pilot.press("tab")
        assert app.focused is screen.stream
        await pilot.press("tab")  # no detail pane yet: back to the connections
        assert app.focused is screen.connections
        await focus_stream(pilot)
        await pilot.press("home", "enter")
        assert screen.detail_open and screen.detail.display
        assert app.focused is screen.detail.focus_target()
        await pilot.press("tab")
        assert app.focused is screen.connections
        await pilot.press("tab")
        assert app.focused is screen.stream
        await pilot.press("shift+tab")
        assert app.focused is screen.connections
        await pilot.press("tab", "tab")
        assert app.focused is screen.detail.focus_target()
        await pilot.press("escape")  # from the detail: back to the stream, detail open
        assert app.focused is screen.stream and screen.detail_open
        await pilot.press("escape")  # in the stream: the detail closes
        assert not screen.detail_open and app.focused is screen.stream
        await pilot.press("d")  # and d opens it again on the selected message
        assert screen.detail_open and screen.detail.item is not None
        assert screen.detail.item.seq == 1


async def test_fill_tree_is_bounded() -> None:
    app = make()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.main.detail.query_one(DetailTree)
        root = Node("root", "[300 items]", [Node(f"[{i}]", str(i)) for i in range(300)])
        assert fill_tree(tree, root, limit=100) == 100
        assert tree.root.children[-1].label.plain == "… 200 more"


def _select_before(seq: int):
    async def run_before(pilot) -> None:
        await settle(pilot)
        await select(pilot, seq)

    return run_before


def test_snapshot_json_message(snap_compare) -> None:
    assert snap_compare(make(), terminal_size=SIZE, run_before=_select_before(1))


def test_snapshot_msgpack_message(snap_compare) -> None:
    assert snap_compare(make(), terminal_size=SIZE, run_before=_select_before(2))


def test_snapshot_hex_dump(snap_compare) -> None:
    assert snap_compare(make(), terminal_size=SIZE, run_before=_select_before(3))


assert json  # used by Traffic.json


def test_single_frame_payload_from_wire_size() -> None:
    from devconsole.tui.detail import single_frame_payload

    assert single_frame_payload(2 + 5, masked=False) == 5
    assert single_frame_payload(6 + 125, masked=True) == 125
    assert single_frame_payload(2 + 2 + 126, masked=False) == 126
    assert single_frame_payload(2 + 8 + 70000, masked=False) == 70000
    assert single_frame_payload(1, masked=False) is None


def test_frames_view_of_a_huge_fragmented_message_is_bounded() -> None:
    from rich.console import Console

    from devconsole.tui.detail import frames_renderable

    t = Traffic()
    m = t.text("1", CLIENT, "a" * 100, frames=5000, frame_sizes=tuple([1] * 4096))
    console = Console(width=100, record=True, color_system=None)
    console.print(frames_renderable(m))
    out = console.export_text()
    assert "fragmented into 5,000 frames" in out
    assert "first 200 frames listed" in out
    assert "sizes of 904 frames were not kept" in out
    assert out.count("continuation") == 199
    single = t.text("1", SERVER, "hello")  # wire size 7: a 2-byte header
    console.print(frames_renderable(single))
    assert "(headers 2 B)" in console.export_text()


async def test_an_edited_message_opens_on_original_and_sent_side_by_side() -> None:
    """Issue 9: the detail of a held message says so, and an edited one opens on the
    "edited" view: the original and what was sent, next to each other."""
    from devconsole.samples import intercept_traffic

    app = make(intercept_traffic())
    async with app.run_test(size=SIZE) as pilot:
        detail = await select(pilot, 3)
        assert detail.view_names[0] == "edited" and detail.view_name == "edited"
        shown = screen_text(app)
        assert "breakpoint 1: forwarded edited" in shown
        assert '"history": 50' in shown and '"history": 5' in shown
        detail = await select(pilot, 8)
        assert "edited" not in detail.view_names
        assert "⏸ HELD" in screen_text(app)
