"""Prometheus rules and the Grafana dashboard: valid, tested, and naming only
metrics probed exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from probed.daemon import Daemon
from probed.metrics import create_registry
from tests.support.checks import config_from

ROOT = Path(__file__).parent.parent
RULES = ROOT / "config" / "prometheus" / "probed-rules.yml"
# The long availability windows have a file of their own, evaluated hourly.
RULE_TESTS = [ROOT / "config" / "prometheus" / name for name in ("probed-rules.test.yml", "probed-rules-long.test.yml")]
DASHBOARD = ROOT / "config" / "grafana" / "probed.json"
METRIC = re.compile(r"\bprobed_[a-z_]+\b")
# A recording rule's name, level:metric:operations (the Prometheus convention).
RECORDED = re.compile(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b")
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "stateset": [""], "gauge": [""]}


def exported_metric_names() -> set[str]:
    """Every series name /metrics can carry, with a check of every kind configured."""
    config = config_from(
        {
            "d": {"type": "disk", "path": "/"},
            "h": {"type": "http", "url": "https://example.com/"},
            "p": {"type": "postgres", "host": "db"},
            "r": {"type": "redis"},
            "m": {"type": "smtp", "host": "mx"},
            "s": {"type": "s3", "bucket": "b"},
        }
    )
    registry = create_registry(Daemon(config))
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: run scripts/install-test-deps.sh (Debian package prometheus)"
    return found


def rule_tests() -> list[dict[str, Any]]:
    return [test for path in RULE_TESTS for test in yaml.safe_load(path.read_text())["tests"]]


def test_rules_are_valid() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_unit_tests_pass() -> None:
    files = [str(path) for path in RULE_TESTS]
    done = subprocess.run([promtool(), "test", "rules", *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    tested = {case["alertname"] for test in rule_tests() for case in test.get("alert_rule_test", [])}
    assert alerts == tested


def rules() -> list[dict[str, str]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def rule_expressions() -> list[str]:
    return [rule["expr"] for rule in rules()]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def test_every_recording_rule_has_a_unit_test() -> None:
    tested = {
        name
        for test in rule_tests()
        for case in test.get("promql_expr_test", [])
        for name in RECORDED.findall(case["expr"])
    }
    assert recorded_names() == tested


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [str(variable.get("definition", "")) for variable in dashboard["templating"]["list"]]
    return exprs


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_only_exported_metrics_are_used(source: str) -> None:
    exprs = rule_expressions() if source == "rules" else dashboard_expressions()
    assert {name for expr in exprs for name in RECORDED.findall(expr)} <= recorded_names()
    used = {name for expr in exprs for name in METRIC.findall(RECORDED.sub("", expr))}
    assert used, "no probed metric found: the pattern is wrong"
    assert used <= exported_metric_names(), used - exported_metric_names()


def test_dashboard_covers_what_operators_look_for() -> None:
    used = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}
    assert {
        "probed_ready",
        "probed_check_up",
        "probed_check_duration_seconds_bucket",
        "probed_check_failures_total",
        "probed_tls_cert_expiry_timestamp_seconds",
        "probed_disk_free_ratio",
    } <= used
    recorded = {name for expr in dashboard_expressions() for name in RECORDED.findall(expr)}
    assert {f"job_check:probed_check_availability:ratio_{window}" for window in ("1h", "1d", "30d")} <= recorded
    ids = [panel["id"] for panel in json.loads(DASHBOARD.read_text())["panels"]]
    assert len(ids) == len(set(ids))
