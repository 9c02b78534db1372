"""One settings file, one reading: .env.example (every commented setting switched on) reads the same in honcho
and in python-dotenv (the CLI's reader, and systemd's rules for quotes); a line honcho would read otherwise is
the one `anchorpipe config check` warns about."""

from __future__ import annotations

import io
import re

import pytest
from dotenv import dotenv_values
from honcho.environ import parse

from pipelines.ops.envfile import ambiguous_lines
from tests.support.paths import ROOT

pytestmark = pytest.mark.unit


def _every_setting_on() -> str:
    text = (ROOT / ".env.example").read_text()
    return re.sub(r"^# ((?:ANCHORPIPE|SENTRY|AWS|PROMETHEUS)_[A-Z_]+=)", r"\1", text, flags=re.M)


def test_the_example_reads_the_same_in_honcho_and_the_cli():
    text = _every_setting_on()
    honcho, cli = dict(parse(text)), dict(dotenv_values(stream=io.StringIO(text)))
    assert "ANCHORPIPE_WITNESSES" in honcho and " " in honcho["ANCHORPIPE_WITNESSES"]
    assert honcho == {k: v for k, v in cli.items() if v is not None}
    assert ambiguous_lines(text) == []


def test_an_unquoted_value_with_spaces_is_read_two_ways_and_flagged():
    line = "ANCHORPIPE_WITNESSES=https://w.example w+1+abc, https://x.example x+2+def\n"
    assert dict(parse(line)) != dict(dotenv_values(stream=io.StringIO(line)))  # the reason for the rule
    ((number, name, why),) = ambiguous_lines("# a comment\n" + line)
    assert (number, name) == (2, "ANCHORPIPE_WITNESSES") and "double quotes" in why
    assert ambiguous_lines('A="x y"\nB=plain\nC=\'single q\'\n') == []
    assert [n for _, n, _ in ambiguous_lines("D=a#b\nE=ok\nF=9101   # a comment systemd would keep\n")] == ["D", "F"]
