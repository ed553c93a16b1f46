"""`studio-exporter trace FLOW_SID EXECUTION_SID` against the simulator, as a user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from studio_exporter.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

CLI = "import sys; from studio_exporter.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=12, history_executions=60, history_days=1)) as sim:
        yield sim


def trace(sim: Simulator, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": sim.account_sid,
        "TWILIO_AUTH_TOKEN": token or sim.auth_token,
    }
    return subprocess.run(
        [sys.executable, "-c", CLI, "trace", "--twilio-base-url", sim.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_prints_the_waterfall_of_an_execution(simulator: Simulator) -> None:
    auth = (simulator.account_sid, simulator.auth_token)
    flow_sid = simulator.flow_sids[0]
    listing = httpx.get(f"{simulator.url}/v2/Flows/{flow_sid}/Executions", auth=auth).json()
    execution = listing["executions"][0]["sid"]
    steps = httpx.get(
        f"{simulator.url}/v2/Flows/{flow_sid}/Executions/{execution}/Steps", auth=auth
    ).json()["steps"]
    result = trace(simulator, flow_sid, execution)
    assert result.returncode == 0, result.stderr
    assert execution in result.stdout
    for step in steps:
        assert step["transitioned_from"] in result.stdout
    assert f"{len(steps)} steps" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("FW123", "FN" + "a" * 32), "not a Flow SID", id="bad-flow-sid"),
        pytest.param(("FW" + "a" * 32, "nope"), "not an Execution SID", id="bad-execution-sid"),
    ],
)
def test_bad_sids_fail_before_any_request(
    simulator: Simulator, args: tuple[str, str], message: str
) -> None:
    result = trace(simulator, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_wrong_token_is_a_clear_error_without_the_token(simulator: Simulator) -> None:
    result = trace(
        simulator, simulator.flow_sids[0], "FN" + "b" * 32, token="WRONG-TOKEN-4242424242"
    )
    assert result.returncode == 1
    assert "401" in result.stderr
    assert "WRONG-TOKEN-4242424242" not in result.stderr + result.stdout


def test_a_server_that_never_answers_times_out_after_request_timeout() -> None:
    """The trace command honours --request-timeout (a black hole: connected, never answered)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)
        url = f"http://127.0.0.1:{hole.getsockname()[1]}"
        env = {**os.environ, "TWILIO_ACCOUNT_SID": "AC" + "a" * 32, "TWILIO_AUTH_TOKEN": "x" * 32}
        argv = [
            sys.executable, "-c", CLI, "trace", "--twilio-base-url", url,
            "--request-timeout", "200ms", "FW" + "a" * 32, "FN" + "a" * 32,
        ]  # fmt: skip
        result = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "timeout" in result.stderr.lower()
