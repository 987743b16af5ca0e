"""``devconsole proxy`` as a child process with a private tap socket: what ``devconsole``
(no command) and ``devconsole demo`` start before attaching the TUI to it.

The TUI never runs in the forwarding path: the proxy is its own process, so a slow screen
cannot slow or reorder traffic.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence


class ChildProxyError(Exception):
    """The child proxy did not start; the message is the last line it logged."""


class ChildProxy:
    """``devconsole proxy`` as a child process with a private tap socket. ``args`` holds
    the proxy options (``devconsole.commands.add_proxy_args``)."""

    def __init__(self, args: argparse.Namespace, extra: Sequence[str] = ()) -> None:
        from devconsole.tap import ensure_private_dir, runtime_dir

        d = ensure_private_dir(runtime_dir())
        self.tap = str(d / f"tap-{os.getpid()}.sock")
        self.log_path = str(d / f"proxy-{os.getpid()}.log")
        cmd = [
            sys.executable,
            "-m",
            "devconsole",
            "proxy",
            "--listen",
            args.listen,
            "--mode",
            args.mode,
            "--tap",
            self.tap,
            "--buffer-messages",
            str(args.buffer_messages),
            "--buffer-bytes",
            args.buffer_bytes,
            "--max-payload",
            args.max_payload,
            "--hold-bytes",
            args.hold_bytes,
            *extra,
        ]
        if getattr(args, "rules", None):
            cmd += ["--rules", args.rules]
        if args.confdir:
            cmd += ["--confdir", args.confdir]
        if getattr(args, "record", None):
            cmd += ["--record", args.record]
            if args.record_max is not None:
                cmd += ["--record-max", str(args.record_max)]
        for s in args.set or []:
            cmd += ["--set", s]
        for d in getattr(args, "decoder", None) or []:
            cmd += ["--decoder", d]
        for d in getattr(args, "proto_desc", None) or []:
            cmd += ["--proto-desc", d]
        for d in getattr(args, "proto_type", None) or []:
            cmd += ["--proto-type", d]
        self.log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL, text=True
        )
        self.listen = ""

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait for the proxy's "listening on" line; raise ChildProxyError if it exits."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout)
            self.log.flush()
            with open(self.log_path) as fh:
                err = fh.read().strip().splitlines()
            raise ChildProxyError(err[-1] if err else "the proxy exited")
        m = re.search(r"listening on (\S+?)(?:,|;)", line)
        self.listen = m.group(1) if m else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
