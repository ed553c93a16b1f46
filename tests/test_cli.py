"""Bad input at the edges: invalid flags, foreign state files and hostile SIDs stop early."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from studio_exporter.app import STOP_GRACE
from studio_exporter.cli import build_parser, load_config
from studio_exporter.config import (
    DEFAULT_BACKFILL_CONCURRENCY,
    DEFAULT_CONCURRENCY,
    Credentials,
    Secret,
)
from studio_exporter.core.sharding import Shard
from studio_exporter.simulator import Simulator, SimulatorConfig
from studio_exporter.sinks.shipper import STOP_TIMEOUT
from studio_exporter.sources.studio_api import ApiError, StudioApi
from studio_exporter.store.sqlite import Store, state_file
from tests.exporter_process import ExporterProcess, exporter_command
from tests.otlp_receiver import OtlpReceiver
from tests.tls import self_signed_certificate

pytestmark = pytest.mark.integration

FLOW = "FW" + "0" * 32
EXECUTION = "FN" + "0" * 32


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=4, history_executions=5, history_days=1)) as sim:
        yield sim


def requests_served(sim: Simulator) -> int:
    return sum(sim.truth()["requests"]["by_operation"].values())


def run_exporter(
    sim: Simulator, state_dir: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``studio-exporter run``; a valid start would keep running, so the timeout fails it."""
    base_env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": sim.account_sid,
        "TWILIO_AUTH_TOKEN": sim.auth_token,
        **(env or {}),
    }
    command = exporter_command(
        "run",
        "--state-dir",
        str(state_dir),
        "--twilio-base-url",
        sim.url,
        "--web.listen-address",
        "127.0.0.1:0",
        *flags,
    )
    return subprocess.run(
        command, env=base_env, capture_output=True, text=True, timeout=20, check=False
    )


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        pytest.param("rate_limit: {burst: 1}\n", "rate_limit: not supported", id="refused-key"),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n",
            "cannot load certificates",
            id="key-that-is-not-a-key",
        ),
    ],
)
def test_a_web_config_that_cannot_be_served_stops_start_up(
    simulator: Simulator, tmp_path: Path, config_text: str, message: str
) -> None:
    cert, _ = self_signed_certificate(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(config_text.replace("{cert}", str(cert)))
    done = run_exporter(simulator, tmp_path / "state", "--web.config.file", str(config))
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_sighup_reloads_the_web_config_and_keeps_running(
    simulator: Simulator, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
    }
    args = [
        "--state-dir", str(tmp_path / "state"), "--twilio-base-url", simulator.url,
        "--web.listen-address", "127.0.0.1:0", "--web.config.file", str(config),
    ]  # fmt: skip
    process = ExporterProcess(args, env, tmp_path / "exporter.log").start()
    try:
        url = process.web_url()
        assert url.startswith("https://")
        os.kill(process.pid, signal.SIGHUP)
        process.wait_for_log(r"web config .* reloaded")
        assert process.running()
        verify = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{url}/health/live", verify=verify, timeout=5).status_code == 200
    finally:
        assert process.terminate() == 0


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        pytest.param(
            ["--flow", "FW123"], {}, "--flow: 'FW123' is not a Flow SID", id="bad-flow-sid"
        ),
        pytest.param(
            [], {"TWILIO_ACCOUNT_SID": "AC-not-a-sid"}, "not an Account SID", id="bad-account-sid"
        ),
        pytest.param(
            ["--twilio-base-url", "ftp://studio.example"],
            {},
            "--twilio-base-url: 'ftp://studio.example' is not an http(s) URL",
            id="bad-url-scheme",
        ),
        pytest.param(
            ["--twilio-base-url", "https://user:pw@studio.example"],
            {},
            "without credentials",
            id="url-with-credentials",
        ),
        pytest.param(
            ["--poll-interval=-5s"],
            {},
            "--poll-interval: '-5s' is not a duration",
            id="negative-interval",
        ),
        pytest.param(
            ["--poll-interval", "0s"],
            {},
            "--poll-interval: '0s' is below the minimum",
            id="zero-interval",
        ),
        pytest.param(
            ["--concurrency", "0"], {}, "--concurrency: 0 is outside", id="zero-concurrency"
        ),
        pytest.param(
            ["--lookback", "90d"], {}, "--lookback: Studio keeps", id="lookback-past-retention"
        ),
        pytest.param(
            ["--web.listen-address", "localhost"],
            {},
            "--web.listen-address:",
            id="bad-listen-address",
        ),
        pytest.param(["--log-level", "loud"], {}, "--log.level: 'loud'", id="bad-log-level"),
        pytest.param(
            ["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag", id="unknown-flag"
        ),
        pytest.param(
            [], {"TWILIO_AUTH_TOKEN": ""}, "TWILIO_AUTH_TOKEN (or TWILIO_API_KEY", id="no-token"
        ),
        pytest.param(
            [],
            {"TWILIO_API_KEY": "SK" + "1" * 32},
            "must be given together",
            id="key-without-secret",
        ),
    ],
)
def test_an_invalid_value_stops_start_up_before_anything_runs(
    simulator: Simulator, tmp_path: Path, flags: list[str], env: dict[str, str], message: str
) -> None:
    before = requests_served(simulator)
    state_dir = tmp_path / "state"
    done = run_exporter(simulator, state_dir, *flags, env=env)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing ran: no state directory, no request to Studio.
    assert not state_dir.exists()
    assert requests_served(simulator) == before


def test_every_mistake_is_reported_at_once(simulator: Simulator, tmp_path: Path) -> None:
    done = run_exporter(
        simulator, tmp_path / "state", "--flow", "nope", "--concurrency", "x", "--lookback", "1y"
    )
    assert done.returncode == 2
    for flag in ("--flow", "--concurrency", "--lookback"):
        assert f"studio-exporter: {flag}:" in done.stderr


def _foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.execute("INSERT INTO invoices VALUES (1, 99.5)")
    db.commit()
    db.close()


@pytest.mark.parametrize(
    ("write", "message"),
    [
        pytest.param(
            lambda path: path.write_bytes(b"not a database\x00" * 100),
            "not a SQLite database",
            id="garbage",
        ),
        pytest.param(_foreign_sqlite, "another application", id="foreign-sqlite"),
        pytest.param(
            lambda path: path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000),
            "refusing to use it",
            id="corrupt-sqlite",
        ),
    ],
)
def test_a_state_file_that_is_not_ours_is_refused_and_left_untouched(
    simulator: Simulator, tmp_path: Path, write: object, message: str
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_file(state_dir)
    assert callable(write)
    write(path)
    original = path.read_bytes()
    before = requests_served(simulator)
    done = run_exporter(simulator, state_dir)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_bytes() == original
    assert sorted(p.name for p in state_dir.iterdir()) == [path.name]
    assert requests_served(simulator) == before


HOSTILE_SIDS = [
    pytest.param("../../Flows", id="path-traversal"),
    pytest.param("FW" + "0" * 31 + "/", id="slash"),
    pytest.param("FW" + "0" * 32 + "?PageSize=1", id="query"),
    pytest.param("FW" + "g" * 32, id="not-hex"),
    pytest.param("FW" + "0" * 32 + "\n", id="newline"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("sid", HOSTILE_SIDS)
def test_a_sid_is_validated_before_it_reaches_a_url(simulator: Simulator, sid: str) -> None:
    api = StudioApi(
        simulator.url,
        Credentials(simulator.account_sid, simulator.account_sid, Secret(simulator.auth_token)),
    )
    before = requests_served(simulator)

    async def attempts() -> list[ApiError]:
        errors = []
        calls = (
            lambda: api.fetch_flow(sid),
            lambda: api.list_executions(sid),
            lambda: api.fetch_execution(FLOW, sid),
            lambda: api.list_steps(FLOW, sid),
            lambda: api.fetch_step(FLOW, EXECUTION, sid),
        )
        try:
            for call in calls:
                with pytest.raises(ApiError) as caught:
                    await call()
                errors.append(caught.value)
        finally:
            await api.aclose()
        return errors

    errors = asyncio.run(attempts())
    assert [error.reason for error in errors] == ["invalid_sid"] * len(errors)
    assert api.requests_sent == 0
    assert requests_served(simulator) == before


#: What a graceful stop may take at most, with margin for a loaded machine: the cycle's grace,
#: the shipper's stop timeout and the process's own exit, well inside Docker's 10 s.
STOP_BOUND_SECONDS = STOP_GRACE + STOP_TIMEOUT + 3.0


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


@contextlib.contextmanager
def refused() -> Iterator[int]:
    """A port nothing listens on: every connection is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


@pytest.mark.parametrize(
    ("receiver", "protocol"),
    [
        pytest.param(black_hole, "http/protobuf", id="http-black-hole"),
        pytest.param(refused, "http/protobuf", id="http-refused"),
        pytest.param(black_hole, "grpc", id="grpc-black-hole"),
    ],
)
def test_sigterm_with_the_otlp_receiver_down_stops_in_time_and_keeps_the_spans(
    simulator: Simulator,
    tmp_path: Path,
    receiver: Callable[[], contextlib.AbstractContextManager[int]],
    protocol: str,
) -> None:
    state_dir = tmp_path / "state"
    with receiver() as port:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_AUTH_TOKEN": simulator.auth_token,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        }
        args = [
            "--state-dir",
            str(state_dir),
            "--twilio-base-url",
            simulator.url,
            "--web.listen-address",
            "127.0.0.1:0",
            "--lookback",
            "2d",
            "--poll-interval",
            "1s",
        ]
        process = ExporterProcess(args, env, tmp_path / "exporter.log").start()
        try:
            process.wait_for_log(r"poll cycle: \d+ flows, \d+ executions read, [1-9]\d* steps")
            time.sleep(0.5)  # the shipper, woken by the commit, is now inside its send
            started = time.monotonic()
            code = process.terminate(timeout=60)
            took = time.monotonic() - started
        finally:
            process.kill()
    assert code == 0, process.own_log()[-3000:]
    assert took < STOP_BOUND_SECONDS, f"stopping took {took:.1f}s"
    with Store.open(state_file(state_dir)) as store:
        assert store.count_pending_spans() > 0, "spans left the outbox without a receiver"


def test_secrets_mounted_as_files_reach_twilio_and_the_otlp_receiver(
    simulator: Simulator, tmp_path: Path
) -> None:
    token_file = tmp_path / "twilio-auth-token"
    token_file.write_text(simulator.auth_token + "\n")
    headers_file = tmp_path / "otlp-headers"
    headers_file.write_text("x-api-key=from-a-file\n")
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("TWILIO_", "OTEL_"))
    }
    receiver = OtlpReceiver().start()
    try:
        env |= {
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_AUTH_TOKEN_FILE": str(token_file),
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS_FILE": str(headers_file),
        }
        args = [
            "--state-dir",
            str(tmp_path / "state"),
            "--twilio-base-url",
            simulator.url,
            "--web.listen-address",
            "127.0.0.1:0",
            "--lookback",
            "2d",
        ]
        process = ExporterProcess(args, env, tmp_path / "exporter.log").start()
        try:
            receiver.wait_for_spans(1, timeout=60)
        finally:
            assert process.terminate() == 0
    finally:
        receiver.stop()
    assert receiver.headers[0]["x-api-key"] == "from-a-file"
    assert simulator.auth_token not in process.own_log()


@pytest.mark.parametrize(
    ("argv", "concurrency"),
    [
        pytest.param(["run"], DEFAULT_CONCURRENCY, id="run"),
        pytest.param(["backfill", "--since", "30d"], DEFAULT_BACKFILL_CONCURRENCY, id="backfill"),
        pytest.param(["backfill", "--concurrency", "3"], 3, id="backfill-flag"),
    ],
)
def test_backfill_has_its_own_default_concurrency(argv: list[str], concurrency: int) -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "token"}
    assert load_config(build_parser().parse_args(argv), env).concurrency == concurrency


@pytest.mark.parametrize(
    "command", [pytest.param(["run"], id="run"), pytest.param(["backfill"], id="backfill")]
)
def test_run_and_backfill_take_the_sharding_flags(command: list[str]) -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "token"}
    args = build_parser().parse_args([*command, "--shard", "2", "--total-shards", "3"])
    assert load_config(args, env).shard == Shard(2, 3)
