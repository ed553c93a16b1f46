"""Tests of the shipped alert rules: promtool check and unit tests, known metrics, hygiene."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from grafana.dashboards import (
    FAILURE_EVENTS,
    RECORDED_METRICS,
    SYSTEM_WIDGET_TYPES,
    build_dashboards,
    metrics_in,
)
from tests.test_dashboards import PROMETHEUS_SYNTHETIC, architecture_metrics

ALERTS = Path(__file__).resolve().parent.parent / "grafana" / "alerts"
RULES = ALERTS / "studio-exporter.rules.yml"
RECORDING = ALERTS / "studio-exporter.recording.rules.yml"
RULE_TESTS = ALERTS / "studio-exporter.rules.test.yml"
# The alerts that compare with last week need a week of samples: evaluated every 10 minutes.
WEEKLY_TESTS = ALERTS / "studio-exporter.weekly.test.yml"
RUNBOOKS = ALERTS.parent.parent / "docs" / "runbooks.md"
# By the caller's pain: failing or stuck callers, then possible pain or blind monitoring, then
# the exporter's upkeep.
SEVERITIES = {"critical", "warning", "info"}


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


def recording_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RECORDING.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES), str(RECORDING))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules())} rules found" in result.stdout
    assert f"{len(recording_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS), str(WEEKLY_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule with a wrong threshold makes them fail."""
    broken = RULES.read_text(encoding="utf-8").replace("> 600", "> 6000", 1)
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RECORDING, tmp_path / RECORDING.name)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)  # the stalled cases live here
    result = run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "TwilioStudioExporterStalled" in result.stdout + result.stderr


@pytest.mark.parametrize("rule", alert_params())
def test_alert_has_for_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule.get("for"), "an alert waits before firing"
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()


def runbook_sections() -> dict[str, str]:
    """Heading anchor (as GitHub and most renderers make it) → section text."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {
        title.strip().lower(): body for title, body in zip(parts[1::2], parts[2::2], strict=True)
    }


@pytest.mark.parametrize("rule", alert_params())
def test_alert_has_a_runbook_saying_what_it_means_what_to_check_how_to_fix(
    rule: dict[str, Any],
) -> None:
    url = rule["annotations"]["runbook_url"]
    path, _, anchor = url.partition("#")
    assert path == "docs/runbooks.md"
    assert anchor == rule["alert"].lower()
    section = runbook_sections()[anchor]
    for part in ("**What it means.**", "**What to check.**", "**How to fix.**"):
        assert part in section


def test_every_runbook_belongs_to_an_alert() -> None:
    assert set(runbook_sections()) == {rule["alert"].lower() for rule in rules()}


@pytest.mark.parametrize("rule", alert_params())
def test_alert_links_to_the_panel_that_shows_it(rule: dict[str, Any]) -> None:
    url = urlsplit(rule["annotations"]["dashboard_url"])
    uid = url.path.removeprefix("/d/")
    board = build_dashboards()[f"{uid}.json"]
    query = parse_qs(url.query)
    (panel_id,) = query.pop("viewPanel")
    titles = {panel["id"]: panel["title"] for panel in board["panels"] if panel["type"] != "row"}
    assert int(panel_id) in titles
    variables = {variable["name"] for variable in board["templating"]["list"]}
    assert {name.removeprefix("var-") for name in query} <= variables


def test_severity_follows_the_callers_pain() -> None:
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in rules()}
    callers = {"TwilioStudioWidgetFailureRatioHigh", "TwilioStudioExecutionsPilingUp"}
    assert {name for name, level in severity.items() if level == "critical"} == callers
    assert severity["TwilioStudioExporterDown"] == "warning"


def test_rules_and_dashboards_share_the_definitions_of_failure_and_system_widgets() -> None:
    text = RULES.read_text(encoding="utf-8") + RECORDING.read_text(encoding="utf-8")
    assert f'event=~"{FAILURE_EVENTS}"' in text
    assert f'widget_type=~"{SYSTEM_WIDGET_TYPES}"' in text
    failures = re.findall(r'event=~"([^"]*)"', text)
    widget_types = re.findall(r'widget_type=~"([^"]*)"', text)
    assert set(failures) == {FAILURE_EVENTS}
    assert set(widget_types) == {SYSTEM_WIDGET_TYPES}


def test_the_dashboards_recording_rules_are_the_ones_recorded() -> None:
    assert {rule["record"] for rule in recording_rules()} == RECORDED_METRICS
    for rule in recording_rules():
        assert metrics_in(rule["expr"]) <= architecture_metrics()


@pytest.mark.parametrize("rule", alert_params())
def test_alert_uses_only_known_metrics(rule: dict[str, Any]) -> None:
    used = metrics_in(rule["expr"])
    assert used
    assert used <= architecture_metrics() | PROMETHEUS_SYNTHETIC


def minutes(duration: str) -> int:
    """`7d1h20m`, `90m`, `15m` → minutes (the units promtool's test files use here)."""
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?", duration)
    assert duration, "an empty duration"
    assert parts is not None, duration
    days, hours, mins = (int(part or 0) for part in parts.groups())
    return (days * 24 + hours) * 60 + mins


def unit_tests(rule: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(case, check) for every check of `rule` in the promtool test files."""
    found = []
    for path in (RULE_TESTS, WEEKLY_TESTS):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        step = minutes(document["evaluation_interval"])
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["alertname"] == rule["alert"]:
                    found.append(({**case, "step": step}, check))
    return found


@pytest.mark.parametrize("rule", alert_params())
def test_alert_is_unit_tested_firing_silent_several_and_at_its_for_boundary(
    rule: dict[str, Any],
) -> None:
    checks = unit_tests(rule)
    assert any(check["exp_alerts"] for _, check in checks), "a case where it fires"
    assert any(not check["exp_alerts"] for _, check in checks), "a case where it stays silent"
    assert any(len(check["exp_alerts"]) >= 2 for _, check in checks), "several series at once"
    # The `for:` boundary: in one case, silent one evaluation before the time it fires.
    boundaries = [
        (case["name"], minutes(check["eval_time"]))
        for case, check in checks
        if check["exp_alerts"]
        and any(
            other is not check
            and not other["exp_alerts"]
            and minutes(other["eval_time"]) == minutes(check["eval_time"]) - case["step"]
            for other in case["alert_rule_test"]
            if other["alertname"] == rule["alert"]
        )
    ]
    assert boundaries, "a check one evaluation before it fires"
    # Every firing check says what the alert's labels and annotations will be.
    for _, check in checks:
        for alert in check["exp_alerts"]:
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"])


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
    # The recording rules the dashboards read are loaded with the alerts; the tests are not.
    assert loaded == sorted([RULES.name, RECORDING.name])


def test_promtool_unit_tests_catch_a_broken_recording_rule(tmp_path: Path) -> None:
    """The recording rules are unit-tested too: exits counted from the wrong steps fail."""
    broken = RECORDING.read_text(encoding="utf-8").replace('next_widget="Ended"', 'event="sent"')
    assert broken != RECORDING.read_text(encoding="utf-8")
    (tmp_path / RECORDING.name).write_text(broken)
    shutil.copy(RULES, tmp_path / RULES.name)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "flow_widget:twilio_studio_step_exits:rate5m" in result.stdout + result.stderr
