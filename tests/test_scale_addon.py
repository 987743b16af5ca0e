"""The ScaleOut addon's options, checked as mitmproxy checks them (taddons)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from devconsole.capture import Capture
from devconsole.commands.proxy import scale_sets
from devconsole.scale.addon import ScaleOut, default_name


def test_options_are_validated_with_one_clear_message() -> None:
    addon = ScaleOut(Capture())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, devconsole_publish="redis://127.0.0.1:6379/0")
        with pytest.raises(exceptions.OptionsError, match="not a Redis URL"):
            tctx.configure(addon, devconsole_publish="http://127.0.0.1:6379")
        with pytest.raises(exceptions.OptionsError, match="may not contain"):
            tctx.configure(addon, devconsole_name="a/b")
        with pytest.raises(exceptions.OptionsError, match="--backplane needs --channels"):
            tctx.configure(addon, devconsole_backplane="redis://127.0.0.1:6379/0")
        with pytest.raises(exceptions.OptionsError, match="at least 10"):
            tctx.configure(addon, devconsole_stream_maxlen=3)
        with pytest.raises(exceptions.OptionsError, match="trace-key"):
            tctx.configure(addon, devconsole_trace_key="$")
    addon = ScaleOut(Capture())
    with taddons.context(addon) as tctx:
        with pytest.raises(exceptions.OptionsError, match="needs --publish"):
            tctx.configure(addon, devconsole_accept_commands=True)


def test_commands_are_off_by_default_and_the_name_has_a_default() -> None:
    addon = ScaleOut(Capture())
    with taddons.context(addon) as tctx:
        assert tctx.options.devconsole_accept_commands is False
        assert tctx.options.devconsole_publish == ""
        name = default_name(tctx.master)
        assert ":" in name and "/" not in name


def test_cli_arguments_become_options_in_a_valid_order() -> None:
    import argparse

    args = argparse.Namespace(
        publish="redis://h:1/0",
        name="n",
        stream=None,
        stream_maxlen=50,
        accept_commands=True,
        backplane="redis://h:1/0",
        channels="a*,b",
        trace_key="id",
    )
    sets = scale_sets(args)
    assert sets[0] == "devconsole_publish=redis://h:1/0"
    assert "devconsole_accept_commands=true" in sets
    assert sets.index("devconsole_channels=a*,b") < sets.index("devconsole_backplane=redis://h:1/0")
