"""The Textual TUI: ``make_app(source)`` builds the app the CLI runs."""

from devconsole.tui.app import DevconsoleApp, make_app

__all__ = ["DevconsoleApp", "make_app"]
