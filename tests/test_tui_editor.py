"""The message editor (e on a held message, R to resend) and the side-by-side view of an
edited message: the checks as plain functions, the dialog through the pilot, and its
snapshots at 80x24 and 200x50."""

from __future__ import annotations

import json

import pytest

from devconsole.model import CLIENT, Message, Opcode
from devconsole.samples import INTERCEPT_NOW, intercept_traffic
from devconsole.tui import make_app
from devconsole.tui.editor import (
    EditDialog,
    bytes_preview,
    convert,
    encode_body,
    hex_lines,
    initial_body,
    json_style,
    parse_json,
    side_by_side,
    utf8_problem,
)
from tests.tui_fixtures import UTC, frozen_clock, live_source, screen_text, settle

SIZE = (140, 40)


def msg(payload: bytes, opcode: int = Opcode.TEXT, **kw) -> Message:
    return Message(8, "1", 0.0, CLIENT, opcode, payload, len(payload), len(payload) + 6, **kw)


# --------------------------------------------------------------------------- checks


def test_initial_body_picks_json_text_or_hex() -> None:
    body = initial_body(b'{"a":1,"b":[true,null]}', Opcode.TEXT)
    assert body.mode == "json" and body.style == "compact"
    assert body.text == '{\n  "a": 1,\n  "b": [\n    true,\n    null\n  ]\n}'
    assert initial_body(b'{"a": 1}', Opcode.TEXT).style == "spaced"
    assert initial_body(b'{\n  "a": 1\n}', Opcode.TEXT).style == "typed"
    assert initial_body(b"hello", Opcode.TEXT).mode == "text"
    assert initial_body(b"42", Opcode.TEXT).mode == "text"  # JSON, but not an object
    assert initial_body(b"\x00\x01", Opcode.BINARY).text == "00 01"
    esc = initial_body(b"\x1b[31mred", Opcode.TEXT)
    assert esc.mode == "hex" and "control characters" in esc.note
    assert initial_body(b"\xff", Opcode.TEXT, utf8_ok=False).mode == "hex"


def test_json_that_could_restyle_the_terminal_is_escaped() -> None:
    body = initial_body('{"t":"\u202eevil"}'.encode(), Opcode.TEXT)
    assert "\u202e" not in body.text and "\\u202e" in body.text
    assert json.loads(body.text) == {"t": "\u202eevil"}
    assert initial_body('{"t":"é"}'.encode(), Opcode.TEXT).text == '{\n  "t": "é"\n}'


def test_invalid_json_is_refused_with_where_and_why() -> None:
    with pytest.raises(ValueError, match=r"invalid JSON at line 3, column 3: Expecting"):
        encode_body("json", '{\n  "a": 1\n  "b": 2\n}')
    with pytest.raises(ValueError, match="NaN is not JSON"):
        parse_json('{"a": NaN}')
    # the same text goes as text
    assert encode_body("text", '{"a": 1 "b"}') == b'{"a": 1 "b"}'


def test_json_styles() -> None:
    text = '{\n  "a": 1,\n  "b": "x"\n}'
    assert encode_body("json", text, "compact") == b'{"a":1,"b":"x"}'
    assert encode_body("json", text, "spaced") == b'{"a": 1, "b": "x"}'
    assert encode_body("json", text, "typed") == text.encode()
    assert json_style('{"a": 1}', {"a": 1}) == "spaced"
    assert json_style('{"a":1}', {"a": 1}) == "compact"


def test_hex_mode() -> None:
    assert hex_lines(bytes(range(18))) == ("00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f\n10 11")
    assert encode_body("hex", "01 02\nff") == b"\x01\x02\xff"
    with pytest.raises(ValueError, match="not hexadecimal at character 4"):
        encode_body("hex", "01 g2")
    with pytest.raises(ValueError, match="odd number of hex digits"):
        encode_body("hex", "012")


def test_convert_between_modes() -> None:
    assert convert('{"a":1}', "text", "json") == '{\n  "a": 1\n}'
    assert convert("not json", "text", "json") == "not json"
    assert convert("hi", "text", "hex") == "68 69"
    assert convert("68 69", "hex", "text") == "hi"
    with pytest.raises(ValueError, match="not UTF-8 text"):
        convert("ff fe", "hex", "text")
    with pytest.raises(ValueError, match="control characters"):
        convert("1b 5b", "hex", "text")


def test_bytes_preview_shows_exactly_what_is_sent() -> None:
    assert bytes_preview(b"a\x1b[2Jb", Opcode.TEXT).plain == "a\\x1b[2Jb"
    assert bytes_preview(b"\x00\x01", Opcode.BINARY).plain.startswith("00000000  00 01")
    assert "more bytes" in bytes_preview(b"x" * 5000, Opcode.TEXT, limit=100).plain
    assert utf8_problem(b"\xff", Opcode.TEXT) is not None
    assert utf8_problem(b"\xff", Opcode.BINARY) is None


def test_side_by_side_marks_what_changed() -> None:
    m = msg(b'{"type":"subscribe","room":"lobby"}')
    m.edited = b'{"type":"subscribe","room":"ops"}'
    m.edited_opcode = Opcode.TEXT
    m.edited_size = len(m.edited)
    table = side_by_side(m)
    left, right = (col._cells[0] for col in table.columns)
    assert '"room": "lobby"' in left.plain and '"room": "ops"' in right.plain
    changed = [span for span in right.spans if "green" in str(span.style)]
    assert [right.plain[s.start : s.end] for s in changed] == ['  "room": "ops"']


# --------------------------------------------------------------------------- the dialog


def app_with():
    source = live_source(intercept_traffic().events, command_error=None)
    return source, make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: INTERCEPT_NOW)


async def open_editor(pilot, seq: int = 8) -> EditDialog:
    app = pilot.app
    await settle(pilot)
    app.main.stream.focus()
    assert app.main.stream.select_seq(seq)
    await settle(pilot)
    await pilot.press("e")
    await pilot.pause()
    editor = app.screen
    assert isinstance(editor, EditDialog)
    return editor


async def test_invalid_json_is_not_sent_and_the_reason_shown() -> None:
    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot)
        editor.set_text('{"type": "msg",, "text": "x"}')
        await pilot.pause()
        shown = screen_text(app)
        assert "✗ invalid JSON at line 1, column 16" in shown
        assert "not sent while invalid" in shown
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is editor and source.commands == []
        await pilot.press("ctrl+o")  # as text, it goes as typed
        await pilot.pause()
        assert editor.mode == "text"
        await pilot.press("ctrl+s")
        for _ in range(50):
            if source.commands:
                break
            await pilot.pause()
        assert source.commands[0].payload == b'{"type": "msg",, "text": "x"}'


async def test_modes_format_style_and_reset() -> None:
    _, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot)
        editor.set_text('{"type":"msg","room":"ops","text":"on it","n":1}')
        await pilot.pause()
        await pilot.press("ctrl+f")
        await pilot.pause()
        assert editor.text.startswith('{\n  "type": "msg"')
        assert "valid JSON, compact" in screen_text(app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert 'one line {"a": 1}' in screen_text(app)
        await pilot.press("ctrl+o", "ctrl+o")  # text, then hex
        await pilot.pause()
        assert editor.mode == "hex" and editor.text.startswith("7b 0a 20 20 22")
        assert "text frame" in screen_text(app)  # hex keeps a text message's type
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert editor.mode == "json" and editor.unchanged
        assert "unchanged: the bytes as they came" in screen_text(app)


async def test_the_editor_says_when_the_message_is_no_longer_held() -> None:
    from devconsole.model import Outcome, OutcomeEvent

    source, app = app_with()
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot)
        source.push([OutcomeEvent("1", INTERCEPT_NOW, 8, 3, Outcome.TIMEOUT_FORWARDED)])
        await settle(pilot)
        editor.tick()
        await pilot.pause()
        assert "no longer held: timeout-forwarded" in screen_text(app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is editor and source.commands == []


def test_snapshot_edit_dialog_80x24(snap_compare) -> None:
    _, app = app_with()

    async def run_before(pilot) -> None:
        editor = await open_editor(pilot)
        editor.set_text('{\n  "type": "msg",\n  "room": "ops",\n  "text": "on it, 5 min"\n}')
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_edit_dialog_200x50(snap_compare) -> None:
    _, app = app_with()

    async def run_before(pilot) -> None:
        await open_editor(pilot, seq=10)  # binary: hex

    assert snap_compare(app, terminal_size=(200, 50), run_before=run_before)


def test_snapshot_edit_dialog_invalid_json_80x24(snap_compare) -> None:
    _, app = app_with()

    async def run_before(pilot) -> None:
        editor = await open_editor(pilot)
        editor.set_text('{\n  "type": "msg",\n  "room": "ops"\n  "text": "on it"\n}')
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


async def test_a_message_the_capture_truncated_is_edited_knowingly() -> None:
    """Only the start of a big message is in the capture: unchanged, it is forwarded
    whole (the proxy has all of it); edited, the editor says what is sent replaces it."""
    from devconsole.samples import Traffic

    t = Traffic()
    t.open("1")
    t.text("1", CLIENT, "x" * 100, size=5000, held=1, breakpoint=1)
    source = live_source(t.take(), command_error=None)
    app = make_app(source, clock=frozen_clock, tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot, seq=1)
        assert not editor.unchanged  # what the editor holds is not the whole message
        assert "the capture kept 100 of 5,000 bytes" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        await pilot.press("f")  # forwarding as is sends all of it
        for _ in range(50):
            if source.commands:
                break
            await pilot.pause()
        from devconsole.model import ForwardCommand

        assert source.commands == [ForwardCommand(1)]
