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


# --------------------------------------------------------------------------- decoded


def sio_app(*payloads: str):
    """A Socket.IO connection (known by its URL) whose client messages are held."""
    from devconsole.samples import SIO_QUERY, Traffic

    t = Traffic()
    t.open("1", path="/socket.io/", query=list(SIO_QUERY))
    t.text("1", "server", '0{"sid":"a","upgrades":[],"pingInterval":25000,"pingTimeout":5000}')
    t.text("1", "server", '40{"sid":"b"}')
    for i, p in enumerate(payloads, 1):
        t.text("1", CLIENT, p, held=i, breakpoint=1)
    source = live_source(t.take(), command_error=None)
    return source, make_app(source, clock=frozen_clock, tz=UTC, wall_clock=lambda: INTERCEPT_NOW)


async def sent(pilot, source) -> list:
    for _ in range(100):
        if source.commands:
            break
        await pilot.pause()
    return source.commands


async def test_a_held_socketio_event_is_edited_as_its_event_and_args() -> None:
    """The editor opens in the connection's protocol: the event's fields as JSON; bytes
    in the arguments make it a binary event, sent as its placeholder message and the
    attachment, together; other modes convert while the packet is one message."""
    from devconsole.model import ForwardCommand

    source, app = sio_app('421["chat",{"text":"hi"}]')
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot, seq=3)
        assert editor.mode == "decoded" and editor.modes[0] == "decoded"
        assert json.loads(editor.text) == {
            "type": "event",
            "namespace": "/",
            "ack": 1,
            "event": "chat",
            "args": [{"text": "hi"}],
        }
        shown = screen_text(app)
        assert "● socket.io" in shown and "○ json" in shown
        assert "unchanged: the bytes as they came" in shown
        # to the raw bytes and back
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert editor.mode == "json" and editor.text == '421["chat",{"text":"hi"}]'
        editor.set_text('421["chat",{"text":"typed raw"}]')
        await pilot.press("ctrl+o", "ctrl+o", "ctrl+o")  # text, hex, decoded
        await pilot.pause()
        assert editor.mode == "decoded"
        assert json.loads(editor.text)["args"] == [{"text": "typed raw"}]
        # an invalid packet is refused with the protocol's reason
        editor.set_text('{"type": "event", "event": 7}')
        await pilot.pause()
        assert "✗ socket.io: an event needs a string 'event' name" in screen_text(app)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is editor and source.commands == []
        # bytes: a placeholder and its attachment
        fields = {"type": "event", "event": "chat", "args": ["up", {"$b64": "AAEC"}], "ack": 1}
        editor.set_text(json.dumps(fields))
        await pilot.pause()
        shown = screen_text(app)
        assert "valid socket.io, 2 messages (binary attachments follow it)" in shown
        assert "then message 2: binary 3 bytes" in shown
        await pilot.press("ctrl+o")  # two messages do not fit the raw modes
        await pilot.pause()
        assert editor.mode == "decoded"
        assert "only the socket.io form holds them all" in screen_text(app)
        await pilot.press("ctrl+s")
        [cmd] = await sent(pilot, source)
        assert cmd == ForwardCommand(
            1,
            "",
            b'451-1["chat","up",{"_placeholder":true,"num":0}]',
            Opcode.TEXT,
            more=[(Opcode.BINARY, b"\x00\x01\x02")],
        )


async def test_the_shorthand_and_an_unchanged_event() -> None:
    from devconsole.model import ForwardCommand

    source, app = sio_app('42["chat","a"]', '42["chat","b"]')
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot, seq=3)
        editor.set_text('["news", 1, 2]')  # Socket.IO's shorthand: an event on "/"
        await pilot.pause()
        await pilot.press("ctrl+s")
        [cmd] = await sent(pilot, source)
        assert cmd == ForwardCommand(1, "", b'42["news",1,2]', Opcode.TEXT)
        editor = await open_editor(pilot, seq=4)
        await pilot.press("ctrl+s")  # unchanged: the very bytes that came
        await settle(pilot)
        assert source.commands[1] == ForwardCommand(2)


async def test_a_binary_placeholder_is_not_edited_decoded() -> None:
    """A held placeholder's attachments are separate messages, queued behind it and not
    held: the decoded form cannot replace them, and says so."""
    source, app = sio_app('451-["up",{"_placeholder":true,"num":0}]')
    async with app.run_test(size=SIZE) as pilot:
        editor = await open_editor(pilot, seq=3)
        assert editor.mode == "text" and "decoded" in editor.modes
        assert "not as socket.io: this message is incomplete" in screen_text(app)
        editor.set_mode("decoded")
        await pilot.pause()
        assert editor.mode == "text"
        assert "incomplete: waiting for 1 binary attachment" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert source.commands == []


def test_snapshot_edit_dialog_decoded_80x24(snap_compare) -> None:
    _, app = sio_app('421["chat",{"text":"hi","room":"lobby"}]')

    async def run_before(pilot) -> None:
        await open_editor(pilot, seq=3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_editing_a_held_socketio_event_decoded_through_the_proxy(short_tmp) -> None:
    """python-socketio through the real proxy, the screen on its tap: a d:event=chat
    breakpoint made with b holds an event that wants an ack; e opens it decoded; its
    arguments edited to hold bytes, ^s sends the placeholder and the attachment before
    the event queued behind it, and the client gets the ack."""
    import asyncio
    import re
    from typing import Any

    import socketio
    from aiohttp import web

    from devconsole.tap import TapClient
    from tests.conftest import running_proxy, wait_until
    from tests.protocol_servers import aiohttp_server

    sio = socketio.AsyncServer(async_mode="aiohttp")
    web_app = web.Application()
    sio.attach(web_app)
    got: list[tuple[str, list[Any]]] = []

    @sio.on("chat")  # type: ignore[misc]
    async def chat(sid: str, *args: Any) -> Any:
        got.append(("chat", list(args)))
        return "thanks"

    @sio.on("note")  # type: ignore[misc]
    async def note(sid: str, *args: Any) -> None:
        got.append(("note", list(args)))

    async with (
        aiohttp_server(web_app) as port,
        running_proxy(f"reverse:http://127.0.0.1:{port}", short_tmp) as px,
    ):
        app = make_app(TapClient(px.tap), tz=UTC)
        client = socketio.AsyncClient()
        async with app.run_test(size=(160, 45)) as pilot:
            await client.connect(
                f"http://127.0.0.1:{px.port}", transports=["websocket"], wait_timeout=10
            )
            try:
                await wait_until(lambda: app.session.connections)
                await settle(pilot)
                assert app.main.apply_filter("d:event=chat")
                await settle(pilot)
                await pilot.press("b", "enter")
                await wait_until(lambda: len(app.session.breakpoints) == 1)
                call = asyncio.ensure_future(client.call("chat", {"text": "hi"}, timeout=60))
                await wait_until(lambda: len(app.session.held) == 1)
                await client.emit("note", "after")
                [held] = app.session.held.values()
                assert re.match(rb"42\d+\[", held.payload)
                assert app.main.apply_filter("")
                await settle(pilot)
                editor = await open_editor(pilot, seq=held.seq)
                assert editor.mode == "decoded"
                fields = json.loads(editor.text)
                assert fields["event"] == "chat" and fields["args"] == [{"text": "hi"}]
                fields["args"] = [{"text": "edited"}, {"$b64": "AAEC"}]
                editor.set_text(json.dumps(fields, indent=2))
                await pilot.pause()
                assert "2 messages" in screen_text(app)
                await pilot.press("ctrl+s")
                assert await asyncio.wait_for(call, 20) == "thanks"
                await wait_until(lambda: len(got) == 2)
                assert got == [
                    ("chat", [{"text": "edited"}, b"\x00\x01\x02"]),
                    ("note", ["after"]),
                ]
                await wait_until(lambda: app.session.get(held.seq).outcome == "edited")
            finally:
                await client.disconnect()
