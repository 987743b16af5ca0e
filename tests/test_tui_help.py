from __future__ import annotations

from textual.binding import Binding

from devconsole.source import MemorySource
from devconsole.tui import make_app
from devconsole.tui.app import help_groups
from devconsole.tui.handshake import HandshakeScreen
from devconsole.tui.help import HelpScreen, binding_rows
from devconsole.tui.main import MainScreen
from tests.tui_fixtures import UTC, demo_traffic, frozen_clock, screen_text, settle


def all_bindings() -> list[Binding]:
    out = [b for _, bindings in help_groups() for b in bindings if isinstance(b, Binding)]
    out += [b for b in HandshakeScreen.BINDINGS + HelpScreen.BINDINGS if isinstance(b, Binding)]
    return out


def test_every_binding_has_an_id_and_a_tooltip() -> None:
    bindings = all_bindings()
    assert len(bindings) > 20
    for b in bindings:
        assert b.id, b
        assert b.tooltip, b
        assert b.description, b


def test_required_keys_are_bound() -> None:
    keys = {k for b in all_bindings() for k in b.key.split(",")}
    for key in ("slash", "space", "h", "enter", "tab", "c", "question_mark", "q", "end", "v"):
        assert key in keys, key
    main = {k for b in MainScreen.BINDINGS if isinstance(b, Binding) for k in b.key.split(",")}
    assert {"x", "i", "r"} <= main  # fault menu, inject, report


async def test_question_mark_opens_help_listing_every_key() -> None:
    app = make_app(MemorySource(demo_traffic().events), clock=frozen_clock, tz=UTC)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        rows = binding_rows(app, help_groups())
        assert any(r[2] == "Pause" and r[1] == "space" for r in rows)
        shown = screen_text(app)
        for text in ("Filter", "Pause", "Handshake", "Follow", "Quit", "Fault", "Inject"):
            assert text in shown
        await pilot.press("end")
        await pilot.pause()
        shown = screen_text(app)
        for text in ("Abort (RST)", "Half-open", "Next endpoint", "Filter syntax"):
            assert text in shown
        assert "from:client" in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_help_follows_the_keymap() -> None:
    app = make_app(
        MemorySource([]), clock=frozen_clock, tz=UTC, keymap={"pause": "p", "filter": "f"}
    )
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        rows = binding_rows(app, help_groups())
        assert any(r[2] == "Pause" and r[1] == "p" for r in rows)
        assert any(r[2] == "Filter" and r[1] == "f" for r in rows)
