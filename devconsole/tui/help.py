"""The help screen (``?``): every key binding with its tooltip, and the filter syntax."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from devconsole import filters
from devconsole.decoders import safe_text


def binding_rows(
    app: App[object], groups: Sequence[tuple[str, Iterable[BindingType]]]
) -> list[tuple[str, str, str, str]]:
    """(group, keys, description, tooltip) for every Binding, honouring the keymap."""
    keymap: dict[str, str] = getattr(app, "_keymap", {}) or {}
    rows: list[tuple[str, str, str, str]] = []
    for group, bindings in groups:
        for b in bindings:
            if not isinstance(b, Binding) or b.system:
                continue
            keys = keymap.get(b.id, b.key) if b.id else b.key
            shown = ", ".join(
                app.get_key_display(Binding(k.strip(), b.action)) for k in keys.split(",")
            )
            rows.append((group, shown, b.description, b.tooltip))
    return rows


def help_renderable(rows: list[tuple[str, str, str, str]], about: str = "") -> RenderableType:
    """The help screen's content; ``about`` (where this screen reads from) comes first."""
    head = Text(safe_text(about, keep_newlines=True) + "\n", style="bold") if about else Text()
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("where", style="dim", no_wrap=True)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("what it does")
    for group, keys, desc, tooltip in rows:
        table.add_row(Text(group), Text(keys), Text(desc), Text(tooltip))
    syntax = Text("\nFilter syntax\n", style="bold underline")
    doc = Text(filters.HELP, style="cyan")
    views = Text(
        "\nDetail views: v cycles through the decoders that fit the message "
        "(JSON tree, msgpack, CBOR, hex dump, raw text, close frame) and the frames view."
        "\nCtrl+P opens the command palette: every action by name.",
        style="dim",
    )
    return Group(head, table, syntax, doc, views)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "escape,question_mark,q",
            "dismiss",
            "Close",
            id="help.close",
            tooltip="Close the help screen",
        ),
    ]

    def __init__(
        self, groups: Sequence[tuple[str, Iterable[BindingType]]], about: str = ""
    ) -> None:
        super().__init__()
        self.groups = groups
        self.about = about

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog"), VerticalScroll(id="help-body"):
            yield Static(
                help_renderable(binding_rows(self.app, self.groups), self.about),
                id="help-content",
            )

    def on_mount(self) -> None:
        dialog = self.query_one("#help-dialog")
        dialog.border_title = "devconsole keys"
        dialog.border_subtitle = "esc close"
        self.query_one("#help-body").focus()

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
