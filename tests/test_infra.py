"""Deployment files keep their security promises: the internet-facing parts cannot reach the signing key."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "infra" / "systemd"
KEY = "/etc/anchorpipe/log.key"


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser["Service"]


def test_only_the_sequencer_is_handed_the_log_key():
    units = sorted(p.name for p in UNITS.glob("*.service"))
    assert "anchorpipe-sequencer.service" in units and "anchorpipe-api.service" in units
    for name in units:
        service = unit(name)
        if name == "anchorpipe-sequencer.service":
            assert service["LoadCredential"] == f"log.key:{KEY}"
            assert service["Environment"] == "ANCHORPIPE_LOG_KEY_FILE=%d/log.key"
        else:
            assert "LoadCredential" not in service, name
            assert service["UnsetEnvironment"] == "ANCHORPIPE_LOG_KEY_FILE", name
            assert service["InaccessiblePaths"].lstrip("-") == KEY, name


def test_the_api_runs_as_its_own_user():
    api, sequencer = unit("anchorpipe-api.service"), unit("anchorpipe-sequencer.service")
    assert api["User"] not in (sequencer["User"], "root")
    assert api["NoNewPrivileges"] == "yes" and api["ProtectSystem"] == "strict"


def test_the_procfile_binds_to_loopback_and_flower_needs_a_password():
    procs = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if ": " in line)
    assert "--host ${HOST:-127.0.0.1}" in procs["web"]
    assert "--address=127.0.0.1" in procs["flower"]
    assert re.search(r"--basic-auth=\$\{FLOWER_BASIC_AUTH:\?", procs["flower"])
