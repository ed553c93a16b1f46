"""End to end over real sockets: simulator → exporter → /metrics and an OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from psycopg import sql

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.simulator import FakeClock, Simulator, SimulatorConfig
from studio_exporter.sources.poller import CycleReport, utc_now
from studio_exporter.store.postgres import account_schema
from studio_exporter.store.sqlite import STATE_FILENAME
from tests.exporter_process import ExporterProcess, scrape
from tests.otlp_receiver import OtlpReceiver, running_receiver
from tests.truthcheck import expected_span_count, metric_mismatches, samples

pytestmark = pytest.mark.integration

HISTORY = 1500


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=11, history_executions=HISTORY, history_days=2)) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


def make_exporter(sim: Simulator, state_dir: Path, receiver: OtlpReceiver) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "lookback": "3d",
            "concurrency": "8",
        },
        {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
    )
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
    exporter = build_exporter(config, env=env)
    exporter.start()
    return exporter


def stop(exporter: Exporter) -> None:
    exporter.close()


def poll(exporter: Exporter, *, backfill_days: float | None = None) -> CycleReport:
    """One cycle (or a backfill) in its own event loop, closing the HTTP client in that loop."""

    async def scenario() -> CycleReport:
        try:
            if backfill_days is not None:
                since = utc_now() - timedelta(days=backfill_days)
                return await exporter.poller.backfill(since)
            return await exporter.poller.cycle()
        finally:
            await exporter.api.aclose()

    return asyncio.run(scenario())


def test_backfill_matches_truth_and_every_span_arrives_once(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver)
    try:
        report = poll(exporter, backfill_days=3)
        assert report.ok
        truth = simulator.truth()
        assert metric_mismatches(exporter.registry, truth) == []
        assert exporter.shipper.flush()
        spans = receiver.wait_for_spans(expected_span_count(truth), timeout=30)
    finally:
        stop(exporter)
    ids = [(span.trace_id, span.span_id) for span in spans]
    assert len(ids) == expected_span_count(truth)
    assert len(set(ids)) == len(ids), "a span arrived twice"
    roots = [span for span in spans if span.parent_span_id is None]
    assert len(roots) == sum(flow["executions_ended"] for flow in truth["flows"].values())
    # Every visit span nests under a span of its own trace.
    by_trace: dict[int, set[int]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, set()).add(span.span_id)
    assert all(
        span.parent_span_id in by_trace[span.trace_id] for span in spans if span.parent_span_id
    )
    # The trace id spells the execution SID.
    for span in roots[:20]:
        sid = span.attributes["twilio.studio.execution.sid"]
        assert isinstance(sid, str)
        assert int(sid[2:], 16) == span.trace_id


def test_restart_neither_recounts_nor_resends(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    first = make_exporter(simulator, tmp_path, receiver)
    try:
        poll(first)
        assert first.shipper.flush()
    finally:
        stop(first)
    sent = len(receiver.spans)
    assert sent > 0
    freshness = "twilio_studio_exporter_last_successful_poll_timestamp_seconds"
    polled = first.registry.get_sample_value(freshness)
    assert polled is not None
    assert polled > 0
    second = make_exporter(simulator, tmp_path, receiver)
    try:
        # Before its first cycle, the restarted exporter says when the last poll succeeded,
        # not 0 ("56 years ago"), so a restart neither hides nor invents a stall.
        assert second.registry.get_sample_value(freshness) == pytest.approx(polled, abs=1e-3)
        report = poll(second)
        assert report.ok
        assert report.steps_exported == 0
        assert second.shipper.flush()
        truth = simulator.truth()
        window = {
            labels["flow_sid"]: value
            for labels, value in samples(second.registry, "twilio_studio_executions_started_total")
        }
        assert sum(window.values()) > 0, "counters were not restored from the state"
    finally:
        stop(second)
    assert len(receiver.spans) == sent
    assert truth["steps_withheld"] == 0


def test_metrics_endpoint_serves_every_metric_with_data(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver)
    try:
        poll(exporter)
        assert exporter.web is not None
        response = httpx.get(f"{exporter.web.url}/metrics", timeout=5)
        openmetrics = httpx.get(
            f"{exporter.web.url}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            timeout=5,
        )
        ready = httpx.get(f"{exporter.web.url}/health/ready", timeout=5)
        live = httpx.get(f"{exporter.web.url}/health/live", timeout=5)
    finally:
        stop(exporter)
    assert response.status_code == 200
    text = response.text
    for name in (
        "twilio_studio_steps_total",
        "twilio_studio_step_duration_seconds_bucket",
        "twilio_studio_executions_started_total",
        "twilio_studio_executions_ended_total",
        "twilio_studio_execution_duration_seconds_bucket",
        "twilio_studio_executions_active",
        "twilio_studio_flow_info",
        "twilio_studio_exporter_api_requests_total",
        "twilio_studio_exporter_last_successful_poll_timestamp_seconds",
    ):
        assert f"\n{name}{{" in text or f"\n{name} " in text, name
    assert "# {trace_id=" in openmetrics.text, "no exemplars in the OpenMetrics exposition"
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize(
    "reading",
    [
        pytest.param("into", id="parent-is-step-into-run-subflow"),
        pytest.param("out", id="parent-is-step-out-of-run-subflow"),
    ],
)
def test_subflows_nest_under_run_subflow_whichever_step_parent_step_sid_names(
    reading: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Poll live traffic that is caught mid-subflow; metrics and span nesting match the truth."""
    clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    config = SimulatorConfig(
        seed=5, history_executions=300, history_days=1, rate=30, speed=20, clock=clock,
        subflow_parent=reading,
    )  # fmt: skip
    with Simulator(config) as sim:
        exporter_config = config_from_mapping(
            {
                "twilio_base_url": sim.url,
                "state_dir": str(tmp_path),
                "listen_address": "127.0.0.1:0",
                "lookback": "2d",
            },
            {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
        )
        env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
        exporter = build_exporter(exporter_config, env=env, clock=clock)
        exporter.start()

        async def cycles() -> list[CycleReport]:
            reports = []
            try:
                for _ in range(8):
                    clock.advance(20)
                    reports.append(await exporter.poller.cycle())
            finally:
                await exporter.api.aclose()
            return reports

        try:
            reports = asyncio.run(cycles())
            truth = sim.truth()
            assert all(report.ok for report in reports)
            assert metric_mismatches(exporter.registry, truth) == []
            assert exporter.shipper.flush()
            spans = receiver.wait_for_spans(expected_span_count(truth), timeout=30)
        finally:
            stop(exporter)
    anomalies = samples(exporter.registry, "twilio_studio_exporter_anomalies_total")
    assert sum(value for _, value in anomalies) == 0
    subflow_sid = sim.flow_sids[4]
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    nested = [s for s in spans if s.attributes.get("twilio.studio.flow.sid") == subflow_sid]
    assert len(nested) > 50
    for span in nested:
        parent = by_id[(span.trace_id, span.parent_span_id or 0)]
        assert parent.name == "verify_identity", (span, parent)
        assert parent.start_ns <= span.start_ns <= span.end_ns <= parent.end_ns


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def test_run_with_postgres_state_matches_truth_and_resumes_without_recounting(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path, postgres_url: str
) -> None:
    """`run` keeps its state in PostgreSQL (the URL, with its password, from the environment):
    /metrics equals the truth, and a restarted process carries on from the shared state."""
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
        "STUDIO_EXPORTER_STATE_POSTGRES_URL": postgres_url,
    }
    args = [
        "--state-dir",
        str(tmp_path / "state"),
        "--twilio-base-url",
        simulator.url,
        "--web.listen-address",
        "127.0.0.1:0",
        "--lookback",
        "3d",
        "--poll-interval",
        "1s",
    ]
    log_path = tmp_path / "exporter.log"
    truth = simulator.truth()
    spans_expected = expected_span_count(truth)
    freshness = "twilio_studio_exporter_last_successful_poll_timestamp_seconds"

    first = ExporterProcess(args, env, log_path).start()
    try:
        url = first.web_url()

        def caught_up() -> bool:
            return metric_mismatches(scrape(url)[1], truth) == []

        assert _wait_until(caught_up, 120), metric_mismatches(scrape(url)[1], truth)[:10]
        receiver.wait_for_spans(spans_expected, timeout=60)
        polled = scrape(url)[1].get_sample_value(freshness)
    finally:
        assert first.terminate() == 0, first.own_log()[-2000:]
    sent = len(receiver.spans)
    assert sent == spans_expected

    second = ExporterProcess(args, env, log_path).start()
    try:
        url = second.web_url()
        assert polled is not None

        def polled_again() -> bool:
            again = scrape(url)[1].get_sample_value(freshness)
            return again is not None and again > polled

        assert _wait_until(polled_again, 60), second.own_log()[-2000:]
        _, registry = scrape(url)
    finally:
        assert second.terminate() == 0, second.own_log()[-2000:]
    assert metric_mismatches(registry, truth) == []  # restored, not counted again
    assert len(receiver.spans) == sent  # nothing sent twice
    log = log_path.read_text()
    password = urlsplit(postgres_url).password
    assert password
    assert password not in log
    # The state is in PostgreSQL, in the account's schema, and nowhere else.
    assert not (tmp_path / "state" / STATE_FILENAME).exists()
    with psycopg.connect(postgres_url) as db:
        row = db.execute(
            sql.SQL("SELECT count(*) FROM {}.executions WHERE done").format(
                sql.Identifier(account_schema(simulator.account_sid))
            )
        ).fetchone()
    assert row is not None
    assert row[0] > 0
