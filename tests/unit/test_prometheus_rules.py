"""The Prometheus alert rules: promtool checks them and runs their unit tests (tests/prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "roles/safeguards/files/prometheus/etcd-alerts.yml"
TESTS = ROOT / "tests/prometheus/etcd-alerts.test.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, (
        "promtool not found: install the Debian package prometheus (./setup.sh --deps-only --dev does)"
    )
    return path


def test_rules_are_valid(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 9 rules found" in proc.stdout


def test_rule_unit_tests_pass(promtool):
    proc = subprocess.run(
        [promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, cwd=TESTS.parent
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_every_alert_has_a_test_that_expects_it_to_fire():
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    tested = {
        case["alertname"]
        for t in yaml.safe_load(TESTS.read_text())["tests"]
        for case in t["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert alerts == tested
    # Each alert says how bad it is and what it means.
    for g in yaml.safe_load(RULES.read_text())["groups"]:
        for r in g["rules"]:
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"] and r["annotations"]["description"]
