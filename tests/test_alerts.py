"""Tests of the shipped alert rules: promtool check and unit tests, known metrics, hygiene."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from grafana.dashboards import metrics_in
from tests.test_dashboards import PROMETHEUS_SYNTHETIC, architecture_metrics

ALERTS = Path(__file__).resolve().parent.parent / "grafana" / "alerts"
RULES = ALERTS / "studio-exporter.rules.yml"
RULE_TESTS = ALERTS / "studio-exporter.rules.test.yml"
SEVERITIES = {"critical", "warning"}


def promtool() -> str:
    """Path to promtool; in CI its absence is a failure, locally a reasoned skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool is required in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus); required when CI=true")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, check=False, timeout=60
    )


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def alert_params() -> list[pytest.ParameterSet]:
    return [pytest.param(rule, id=rule["alert"]) for rule in rules()]


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule with a wrong threshold makes them fail."""
    broken = RULES.read_text(encoding="utf-8").replace("> 600", "> 6000", 1)
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "TwilioStudioExporterStalled" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", alert_params())
def test_alert_has_for_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("for"), "an alert waits before firing"
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()


@pytest.mark.parametrize("rule", alert_params())
def test_alert_uses_only_known_metrics(rule: dict[str, Any]) -> None:
    used = metrics_in(rule["expr"])
    assert used
    assert used <= architecture_metrics() | PROMETHEUS_SYNTHETIC


@pytest.mark.parametrize("rule", alert_params())
def test_alert_is_unit_tested_firing_and_silent(rule: dict[str, Any]) -> None:
    document = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    checks = [
        check
        for case in document["tests"]
        for check in case["alert_rule_test"]
        if check["alertname"] == rule["alert"]
    ]
    assert any(check["exp_alerts"] for check in checks), "a case where it fires"
    assert any(not check["exp_alerts"] for check in checks), "a case where it stays silent"


def test_prometheus_in_the_stack_loads_the_rules_and_not_their_tests() -> None:
    root = ALERTS.parent.parent
    config = yaml.safe_load((root / "deploy" / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((root / "deploy" / "docker-compose.yml").read_text(encoding="utf-8"))
    mount = next(
        volume
        for volume in compose["services"]["prometheus"]["volumes"]
        if volume.startswith("../grafana/alerts:")
    )
    inside = mount.split(":")[1]
    config_mount = next(
        volume
        for volume in compose["services"]["prometheus"]["volumes"]
        if volume.startswith("./prometheus.yml:")
    )
    (pattern,) = config["rule_files"]
    # Prometheus resolves a relative rule path against its config file's directory.
    in_container = str(PurePosixPath(config_mount.split(":")[1]).parent / pattern)
    assert in_container.startswith(f"{inside}/")
    # From the repository the same relative path goes through deploy/rules to grafana/alerts.
    assert (root / "deploy" / pattern).parent.resolve() == ALERTS.resolve()
    loaded = sorted(path.name for path in ALERTS.glob(in_container.removeprefix(f"{inside}/")))
    assert loaded == [RULES.name]
