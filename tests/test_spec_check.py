"""scripts/spec_check.py (``make spec-check``): conformance and spec-diff against spec files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reference import reference_path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "spec_check.py"
STUDIO = "twilio_studio_v2.json"
V2010 = "twilio_api_v2010.json"
STEP = "studio.v2.flow.execution.execution_step"

Spec = dict[str, Any]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )


def modified(tmp_path: Path, name: str, change: Callable[[Spec], None]) -> Path:
    """A copy of Twilio's spec ``name`` with ``change`` applied, as a new file."""
    spec = json.loads(reference_path(name).read_text(encoding="utf-8"))
    changed = copy.deepcopy(spec)
    change(changed)
    assert changed != spec, "the change should change something"
    path = tmp_path / f"new_{name}"
    path.write_text(json.dumps(changed), encoding="utf-8")
    return path


def _step_field_added(spec: Spec) -> None:
    spec["components"]["schemas"][STEP]["properties"]["duration"] = {
        "type": "integer",
        "nullable": True,
    }


def _status_value_added(spec: Spec) -> None:
    spec["components"]["schemas"]["execution_enum_status"]["enum"].append("paused")


def _step_field_removed(spec: Spec) -> None:
    del spec["components"]["schemas"][STEP]["properties"]["transitioned_from"]


def _sid_pattern_changed(spec: Spec) -> None:
    spec["components"]["schemas"][STEP]["properties"]["sid"]["pattern"] = "^FT[0-9a-z]{32}$"


def test_the_reference_spec_agrees_and_nothing_changed() -> None:
    studio, v2010 = reference_path(STUDIO), reference_path(V2010)
    result = run(
        "--spec", studio, "--baseline", studio, "--v2010", v2010, "--v2010-baseline", v2010
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "openapi/ agrees with this spec" in result.stdout
    assert result.stdout.count("No changes in the operations we use") == 2
    assert result.stdout.endswith("verdict: none\n")


@pytest.mark.parametrize(
    ("change", "expected", "verdict"),
    [
        pytest.param(
            _step_field_added,
            ["field added         steps[].duration: integer|null",
             "ListExecutionStep: field steps[].duration missing from openapi/"],
            "additive",
            id="field-added",
        ),
        pytest.param(
            _status_value_added,
            ["executions[].status: string values=[active,ended] -> "
             "string values=[active,ended,paused]"],
            "additive",
            id="status-value-added",
        ),
        pytest.param(
            _step_field_removed,
            ["field removed       steps[].transitioned_from",
             "ListExecutionStep: field steps[].transitioned_from is not in Twilio's spec"],
            "breaking",
            id="field-removed",
        ),
        pytest.param(
            _sid_pattern_changed,
            ["FetchExecutionStep: field sid: Twilio string|null pattern=^FT[0-9a-z]{32}$"],
            "breaking",
            id="sid-pattern",
        ),
    ],
)  # fmt: skip
def test_a_changed_studio_spec_is_reported(
    tmp_path: Path, change: Callable[[Spec], None], expected: list[str], verdict: str
) -> None:
    new = modified(tmp_path, STUDIO, change)
    report = tmp_path / "report.md"
    result = run("--spec", new, "--baseline", reference_path(STUDIO), "--report", report)
    assert result.returncode == 1, result.stdout + result.stderr
    for line in expected:
        assert line in result.stdout
    assert result.stdout.endswith(f"verdict: {verdict}\n")
    assert report.read_text(encoding="utf-8") == result.stdout


def test_without_a_baseline_the_conformance_alone_decides(tmp_path: Path) -> None:
    new = modified(tmp_path, STUDIO, _step_field_added)
    result = run("--spec", new)
    assert result.returncode == 1
    assert "Spec-diff" not in result.stdout
    assert result.stdout.endswith("verdict: additive\n")


def test_a_changed_v2010_account_is_reported(tmp_path: Path) -> None:
    def drop_owner(spec: Spec) -> None:
        del spec["components"]["schemas"]["api.v2010.account"]["properties"]["owner_account_sid"]

    old = reference_path(V2010)
    new = modified(tmp_path, V2010, drop_owner)
    studio = reference_path(STUDIO)
    result = run("--spec", studio, "--v2010", new, "--v2010-baseline", old)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "ListAccount" in result.stdout
    assert "field removed       accounts[].owner_account_sid" in result.stdout
    assert result.stdout.endswith("verdict: breaking\n")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--spec", "does-not-exist.json"], id="missing-file"),
        pytest.param(["--spec", "x.json", "--v2010", "y.json"], id="v2010-without-baseline"),
        pytest.param([], id="no-spec"),
    ],
)
def test_errors_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "verdict" not in result.stdout


def test_make_spec_check_needs_spec_and_runs_the_script() -> None:
    make = ["make", "--no-print-directory", "-C", str(ROOT), "spec-check"]
    without = subprocess.run(make, capture_output=True, text=True, check=False, timeout=120)
    assert without.returncode == 2
    assert "usage: make spec-check SPEC=" in without.stderr
    spec = reference_path(STUDIO)
    ran = subprocess.run(
        [*make, f"SPEC={spec}", f"BASELINE={spec}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "verdict: none" in ran.stdout
