"""Secrets and personal data: credentials never leave the process; contexts only when opted in.

The credentials are recognisable strings, so a grep of everything the exporter writes or
serves (logs at debug level, /metrics, spans with their resource, the state directory, every
``--help``) proves they are absent.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from studio_exporter.app import build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.simulator import Simulator, SimulatorConfig
from tests.exporter_process import ExporterProcess, exporter_command, scrape
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, running_receiver
from tests.test_accounts import account_registry, exported, sdk_reading
from tests.truthcheck import expected_span_count, metric_mismatches

pytestmark = pytest.mark.integration

AUTH_TOKEN = "SECRET-TOKEN-1234567890abcdef"
API_KEY = "SK" + "5ec7" * 8
API_SECRET = "SECRET-APISECRET-fedcba0987654321"
WRONG_TOKEN = "SECRET-WRONG-TOKEN-55aa55aa55aa"
PHONE_PREFIX = "+1555"
CONTEXT_PREFIX = "twilio.studio.context."


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=21,
        history_executions=40,
        history_days=1,
        auth_token=AUTH_TOKEN,
        api_key_sid=API_KEY,
        api_key_secret=API_SECRET,
    )
    with Simulator(config) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


def forbidden(username: str, password: str) -> list[str]:
    """The secret itself and every form of the Authorization header that carries it."""
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [password, encoded, f"Basic {encoded}"]


def assert_absent(what: str, text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} leaked into {what}"


def spans_text(spans: list[ReceivedSpan]) -> str:
    return "\n".join(repr((span.name, span.attributes, span.resource)) for span in spans)


def run_args(sim: Simulator, state_dir: Path) -> list[str]:
    return [
        "--state-dir",
        str(state_dir),
        "--twilio-base-url",
        sim.url,
        "--web.listen-address",
        "127.0.0.1:0",
        "--lookback",
        "2d",
        "--poll-interval",
        "1s",
        "--log-level",
        "debug",
    ]


@pytest.mark.parametrize(
    ("credentials", "username", "password"),
    [
        pytest.param(
            {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}, None, AUTH_TOKEN, id="account-sid-and-auth-token"
        ),
        pytest.param(
            {"TWILIO_API_KEY": API_KEY, "TWILIO_API_SECRET": API_SECRET},
            API_KEY,
            API_SECRET,
            id="api-key-and-secret",
        ),
    ],
)
def test_a_full_run_leaks_no_credential(
    simulator: Simulator,
    receiver: OtlpReceiver,
    tmp_path: Path,
    credentials: dict[str, str],
    username: str | None,
    password: str,
) -> None:
    secrets = forbidden(username or simulator.account_sid, password)
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        **credentials,
    }
    process = ExporterProcess(
        run_args(simulator, tmp_path / "state"), env, tmp_path / "exporter.log"
    ).start()
    try:
        url = process.web_url()
        truth = simulator.truth()
        deadline = time.monotonic() + 60
        while metric_mismatches(scrape(url)[1], truth) and time.monotonic() < deadline:
            time.sleep(0.1)
        receiver.wait_for_spans(expected_span_count(truth), timeout=60)
        metrics_text, registry = scrape(url)
        assert metric_mismatches(registry, truth) == [], "the run did not complete"
    finally:
        assert process.terminate() == 0
    log = process.own_log()
    assert "DEBUG" in log, "the log was not at debug level"
    assert_absent("the log", log, secrets)
    assert_absent("/metrics", metrics_text, secrets)
    assert_absent("the spans", spans_text(receiver.spans), secrets)
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert_absent(str(path), path.read_bytes().decode("latin-1"), secrets)


def test_a_run_with_subaccounts_exports_what_each_reads_and_leaks_no_token(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """The acceptance run: ``run --include-subaccounts`` exports for every account exactly
    what its own credentials read through Twilio's SDK, picks up a subaccount added while it
    runs at the next account refresh, and no account's token shows anywhere."""
    config = SimulatorConfig(
        seed=23, history_executions=30, history_days=1, auth_token=AUTH_TOKEN, subaccounts=2
    )
    with Simulator(config) as sim:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": sim.account_sid,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "STUDIO_EXPORTER_INCLUDE_SUBACCOUNTS": "true",
        }
        args = [*run_args(sim, tmp_path / "state"), "--account-refresh-interval", "2s"]
        process = ExporterProcess(args, env, tmp_path / "exporter.log").start()
        try:
            url = process.web_url()

            def settled() -> bool:
                registry = scrape(url)[1]
                return all(
                    exported(registry, a.sid) == sdk_reading(sim, a.sid, a.auth_token)
                    for a in sim.accounts
                )

            deadline = time.monotonic() + 60
            while not settled() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert settled(), "the accounts' metrics did not reach what the SDK reads"
            added = sim.add_subaccount("Added while running")
            deadline = time.monotonic() + 60
            while not settled() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert settled(), "the subaccount added while running was not picked up"
            metrics_text, registry = scrape(url)
            assert added.sid in metrics_text
            for account in sim.accounts:
                view = account_registry(registry, account.sid)
                assert metric_mismatches(view, sim.truth(account.sid)) == [], account.sid
            spans = sum(expected_span_count(sim.truth(a.sid)) for a in sim.accounts)
            receiver.wait_for_spans(spans, timeout=60)
        finally:
            assert process.terminate() == 0
        secrets = [secret for a in sim.accounts for secret in forbidden(a.sid, a.auth_token)]
    log = process.own_log()
    assert "DEBUG" in log
    assert_absent("the log", log, secrets)
    assert_absent("/metrics", metrics_text, secrets)
    assert_absent("the spans", spans_text(receiver.spans), secrets)
    state_files = [path for path in (tmp_path / "state").rglob("*") if path.is_file()]
    assert any(added.sid in path.name for path in state_files)
    for path in state_files:
        assert_absent(str(path), path.read_bytes().decode("latin-1"), secrets)


def test_a_rejected_token_is_not_in_the_error(simulator: Simulator, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": WRONG_TOKEN,
    }
    process = ExporterProcess(
        run_args(simulator, tmp_path / "state"), env, tmp_path / "exporter.log"
    ).start()
    try:
        process.wait_for_log(r"HTTP 401")
        # A 401 is logged, counted and retried next cycle: the exporter does not exit.
        assert process.running()
        url = process.web_url()
        ready = httpx.get(f"{url}/health/ready", timeout=5)
        metrics_text, _ = scrape(url)
    finally:
        assert process.terminate() == 0
    secrets = forbidden(simulator.account_sid, WRONG_TOKEN)
    assert ready.status_code == 503, "/health/ready hid the failing polls"
    assert_absent("/health/ready", ready.text, secrets)
    assert_absent("/metrics", metrics_text, secrets)
    assert 'code="401"' in metrics_text
    assert_absent("the log", process.own_log(), secrets)


OTLP_USER = "otlp-user-9f8e7d"
OTLP_PASSWORD = "SECRET-OTLP-PASSWORD-0a1b2c3d"
OTLP_HEADER_VALUE = "SECRET-OTLP-API-KEY-4e5f6a7b"


def test_otlp_header_values_and_endpoint_user_info_never_reach_the_logs(
    simulator: Simulator, tmp_path: Path
) -> None:
    """A collector that refuses connections makes the exporter log its endpoint; the log
    shows where it failed, never the user info or the header values (often API keys)."""
    dead_port = free_port()
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": (
            f"http://{OTLP_USER}:{OTLP_PASSWORD}@127.0.0.1:{dead_port}/v1/traces"
        ),
        "OTEL_EXPORTER_OTLP_HEADERS": f"api-key={OTLP_HEADER_VALUE},x-scope=studio",
    }
    process = ExporterProcess(
        run_args(simulator, tmp_path / "state"), env, tmp_path / "exporter.log"
    ).start()
    try:
        process.wait_for_log(rf"127\.0\.0\.1:{dead_port}", timeout=60)
    finally:
        assert process.terminate() == 0
    log = process.own_log()
    assert_absent("the log", log, [OTLP_USER, OTLP_PASSWORD, OTLP_HEADER_VALUE, AUTH_TOKEN])
    assert f"http://********@127.0.0.1:{dead_port}" in log


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


HELP_COMMANDS = [
    pytest.param(args, id=" ".join(args))
    for args in (
        ("--help",),
        ("run", "--help"),
        ("backfill", "--help"),
        ("demo", "--help"),
        ("simulate", "--help"),
        ("trace", "--help"),
        ("spec-diff", "--help"),
    )
]


@pytest.mark.parametrize("args", HELP_COMMANDS)
def test_help_shows_no_credential_from_the_environment(args: tuple[str, ...]) -> None:
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": "AC" + "51a7" * 8,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_KEY": API_KEY,
        "TWILIO_API_SECRET": API_SECRET,
    }
    done = subprocess.run(
        exporter_command(*args), env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
    assert_absent("--help", done.stdout + done.stderr, [AUTH_TOKEN, API_SECRET])


# -- personal data -----------------------------------------------------------------------------


def export_once(
    sim: Simulator, receiver: OtlpReceiver, state_dir: Path, flags: dict[str, str]
) -> tuple[list[ReceivedSpan], str]:
    """One in-process poll of the whole history; the spans received and /metrics."""
    from prometheus_client import generate_latest

    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "lookback": "2d",
            **flags,
        },
        {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
    )
    exporter = build_exporter(
        config, env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}, serve_web=False
    )
    exporter.start()

    async def poll() -> None:
        try:
            assert (await exporter.poller.cycle()).ok
        finally:
            await exporter.api.aclose()

    try:
        asyncio.run(poll())
        assert exporter.shipper.flush()
        metrics_text = generate_latest(exporter.registry).decode()
    finally:
        exporter.close()
    spans = receiver.wait_for_spans(expected_span_count(sim.truth()), timeout=30)
    return spans, metrics_text


def context_values(spans: list[ReceivedSpan], key: str) -> list[object]:
    return [span.attributes[key] for span in spans if key in span.attributes]


def test_contexts_phone_numbers_and_bodies_are_not_exported_by_default(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    spans, metrics_text = export_once(simulator, receiver, tmp_path, {})
    text = spans_text(spans)
    assert PHONE_PREFIX not in text
    assert PHONE_PREFIX not in metrics_text
    assert not [
        key for span in spans for key in span.attributes if key.startswith("twilio.studio.context")
    ]
    for body in ("call me back", "Body", "Digits"):
        assert body not in text
        assert body not in metrics_text


def test_an_allowlisted_context_key_appears_and_phone_numbers_only_hashed(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    spans, metrics_text = export_once(
        simulator,
        receiver,
        tmp_path,
        {"context_allowlist": "Digits,call.From", "hash_phone_numbers": "true"},
    )
    digits = context_values(spans, CONTEXT_PREFIX + "Digits")
    callers = context_values(spans, CONTEXT_PREFIX + "call.From")
    assert digits
    assert all(isinstance(value, str) and value.isdigit() for value in digits)
    assert callers, "no span carries the allow-listed caller"
    assert all(isinstance(value, str) and value.startswith("sha256:") for value in callers)
    assert PHONE_PREFIX not in spans_text(spans)
    assert PHONE_PREFIX not in metrics_text


def test_without_hashing_an_allowlisted_phone_number_is_exported_as_is(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    # The opposite of the test above, so that one cannot pass by exporting nothing.
    spans, _ = export_once(
        simulator,
        receiver,
        tmp_path,
        {"context_allowlist": "call.From", "hash_phone_numbers": "false"},
    )
    callers = context_values(spans, CONTEXT_PREFIX + "call.From")
    assert callers
    assert all(str(value).startswith(PHONE_PREFIX) for value in callers)
