"""Prometheus's own checker on what ships in infra/prometheus/: the scrape config and rules parse
(`promtool check config`, paths aside), every alert has a unit test on synthetic series that fires and
resolves (`promtool test rules alerts.test.yml`), and a broken rule fails those tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT

pytestmark = pytest.mark.system

SHIPPED = ROOT / "infra" / "prometheus"
PROMTOOL = ROOT / ".tools" / "prometheus" / "usr" / "bin" / "promtool"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    if not PROMTOOL.exists():
        pytest.fail("promtool is needed: `make .tools/prometheus/usr/bin/promtool` (from Debian's prometheus package)")
    return subprocess.run([str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_scrape_config_and_its_rules_pass_promtool(tmp_path: Path):
    config = (SHIPPED / "prometheus.yml").read_text()
    token = re.search(r"credentials_file: (\S+?)\}", config).group(1)
    (tmp_path / "token").write_text("a-metrics-token\n")
    (tmp_path / "prometheus.yml").write_text(config.replace(token, str(tmp_path / "token")))
    shutil.copy(SHIPPED / "alerts.yml", tmp_path)
    res = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0 and "13 rules found" in res.stdout, res.stdout + res.stderr


def test_every_alert_has_a_unit_test_that_fires_and_resolves():
    alerts = [r["alert"] for g in yaml.safe_load((SHIPPED / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    tests = yaml.safe_load((SHIPPED / "alerts.test.yml").read_text())["tests"]
    for name in alerts:
        evals = [e for t in tests for e in t["alert_rule_test"] if e["alertname"] == name]
        fired = [e["eval_time"] for e in evals if e["exp_alerts"]]
        silent = [e["eval_time"] for e in evals if not e["exp_alerts"]]
        assert fired and len(silent) >= 2, f"{name}: a test must see it silent, firing, then resolved"
    res = promtool("test", "rules", "alerts.test.yml", cwd=SHIPPED)
    assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


def test_a_rule_that_can_no_longer_fire_fails_its_test(tmp_path: Path):
    rules = (SHIPPED / "alerts.yml").read_text()
    broken = rules.replace('{outcome="dead"}', '{outcome="deadd"}')  # a label value misspelt: never fires
    assert broken != rules
    (tmp_path / "alerts.yml").write_text(broken)
    shutil.copy(SHIPPED / "alerts.test.yml", tmp_path)
    res = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert res.returncode != 0 and "AnchorpipeWebhooksDead" in res.stdout + res.stderr
