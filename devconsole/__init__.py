"""devconsole: a WebSocket debugging proxy and live traffic inspector for the terminal."""

__version__ = "0.1.0"
