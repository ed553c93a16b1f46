"""Tests for the exporter's own health metrics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from studio_exporter.core.sharding import NO_SHARDING, Shard
from studio_exporter.sinks.metrics import StudioMetrics
from studio_exporter.sinks.selfmetrics import (
    ANOMALY_KINDS,
    DISAGREEMENT_FIELDS,
    DROP_REASONS,
    HTTP_REFUSAL_REASONS,
    ExporterMetrics,
    PushMetrics,
)
from tests.test_dashboards import architecture_metrics


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def health(registry: CollectorRegistry) -> ExporterMetrics:
    return ExporterMetrics(registry, version="1.2.3")


def test_api_requests_are_counted_by_operation_and_code(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    health.api_request("list_steps", 200, 0.12)
    health.api_request("list_steps", 200, 0.08)
    health.api_request("list_steps", "timeout", 10.0)
    total = "twilio_studio_exporter_api_requests_total"
    assert registry.get_sample_value(total, {"operation": "list_steps", "code": "200"}) == 2
    assert registry.get_sample_value(total, {"operation": "list_steps", "code": "timeout"}) == 1
    duration = "twilio_studio_exporter_api_request_duration_seconds"
    assert registry.get_sample_value(f"{duration}_count", {"operation": "list_steps"}) == 3
    assert registry.get_sample_value(
        f"{duration}_bucket", {"operation": "list_steps", "le": "0.1"}
    ) == 1  # fmt: skip


def test_poll_cycles_start_at_zero_and_count_results(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    cycles = "twilio_studio_exporter_poll_cycles_total"
    assert registry.get_sample_value(cycles, {"result": "error"}) == 0
    health.poll_cycle(ok=True)
    health.poll_cycle(ok=False)
    health.poll_cycle(ok=True)
    assert registry.get_sample_value(cycles, {"result": "ok"}) == 2
    assert registry.get_sample_value(cycles, {"result": "error"}) == 1


def test_poll_errors_rate_limits_and_concurrency(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    health.poll_error("server_error")
    health.rate_limit_wait(1.5)
    health.rate_limit_wait(0.5)
    health.set_concurrency_limit(6)
    assert (
        registry.get_sample_value(
            "twilio_studio_exporter_poll_errors_total", {"reason": "server_error"}
        )
        == 1
    )
    assert registry.get_sample_value("twilio_studio_exporter_rate_limit_waits_total") == 2
    assert registry.get_sample_value("twilio_studio_exporter_rate_limit_wait_seconds_total") == 2.0
    assert registry.get_sample_value("twilio_studio_exporter_concurrency_limit") == 6


def test_last_successful_poll_is_a_unix_timestamp(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    health.poll_succeeded(datetime(2024, 5, 1, tzinfo=UTC))
    gauge = "twilio_studio_exporter_last_successful_poll_timestamp_seconds"
    assert registry.get_sample_value(gauge) == 1714521600


def test_export_lag_and_spans(registry: CollectorRegistry, health: ExporterMetrics) -> None:
    health.export_lag(3.0)
    health.export_lag(-1.0)  # clock skew: never a negative observation
    health.spans_exported(10)
    health.spans_dropped(2)
    health.span_export_failed()
    health.set_spans_pending(7)
    lag = "twilio_studio_exporter_export_lag_seconds"
    assert registry.get_sample_value(f"{lag}_count") == 2
    assert registry.get_sample_value(f"{lag}_sum") == 3.0
    assert registry.get_sample_value("twilio_studio_exporter_spans_exported_total") == 10
    assert registry.get_sample_value("twilio_studio_exporter_spans_dropped_total") == 2
    assert registry.get_sample_value("twilio_studio_exporter_span_export_failures_total") == 1
    assert registry.get_sample_value("twilio_studio_exporter_spans_pending") == 7


def test_web_refusals_start_at_zero_and_count_by_reason(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    name = "twilio_studio_exporter_http_refused_total"
    assert all(
        registry.get_sample_value(name, {"reason": reason}) == 0 for reason in HTTP_REFUSAL_REASONS
    )
    health.http_refused("too_large")
    health.http_refused("too_large")
    assert registry.get_sample_value(name, {"reason": "too_large"}) == 2


def test_vanished_executions_and_anomalies(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    anomalies = "twilio_studio_exporter_anomalies_total"
    for kind in ANOMALY_KINDS:
        assert registry.get_sample_value(anomalies, {"kind": kind}) == 0
    health.executions_vanished()
    health.executions_vanished(2)
    health.anomaly("negative_visit_duration", 3)
    assert registry.get_sample_value("twilio_studio_exporter_executions_vanished_total") == 3
    assert registry.get_sample_value(anomalies, {"kind": "negative_visit_duration"}) == 3
    assert registry.get_sample_value(anomalies, {"kind": "negative_execution_duration"}) == 0


def test_build_info(registry: CollectorRegistry, health: ExporterMetrics) -> None:
    info = "twilio_studio_exporter_build_info"
    assert registry.get_sample_value(info, {"version": "1.2.3"}) == 1


@pytest.mark.parametrize(
    ("shard", "labels"),
    [
        pytest.param(NO_SHARDING, {"shard": "0", "total_shards": "1"}, id="unsharded"),
        pytest.param(Shard(2, 3), {"shard": "2", "total_shards": "3"}, id="shard-2-of-3"),
    ],
)
def test_shard_info(shard: Shard, labels: dict[str, str]) -> None:
    registry = CollectorRegistry()
    ExporterMetrics(registry, shard=shard)
    info = [
        sample
        for family in registry.collect()
        if family.name == "twilio_studio_exporter_shard_info"
        for sample in family.samples
    ]
    assert [(sample.labels, sample.value) for sample in info] == [(labels, 1.0)]


def test_every_family_is_listed_in_the_architecture(registry: CollectorRegistry) -> None:
    ExporterMetrics(registry, sources=("poll", "push"))
    documented = architecture_metrics()
    exposed = {sample.name for family in registry.collect() for sample in family.samples}
    own = {name for name in exposed if not name.endswith("_created")}
    assert {name for name in own if not name.startswith("process_")} - documented == set()


def test_lives_beside_the_domain_metrics_in_one_registry(registry: CollectorRegistry) -> None:
    StudioMetrics(registry)
    ExporterMetrics(registry)
    names = {f.name for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert "twilio_studio_exporter_series_overflow" in names  # from StudioMetrics
    assert "twilio_studio_exporter_poll_cycles" in names


@pytest.mark.parametrize(
    ("sources", "present", "absent"),
    [
        pytest.param(("poll",), "poll", "push", id="poll"),
        pytest.param(("push",), "push", "poll", id="push"),
    ],
)
def test_only_the_sources_the_mode_runs_have_a_freshness_gauge(
    sources: tuple[str, ...], present: str, absent: str
) -> None:
    """A poll gauge in push mode would stay 0 forever and read as a stalled exporter."""
    registry = CollectorRegistry()
    health = ExporterMetrics(registry, sources=sources)
    gauge = "twilio_studio_exporter_last_successful_{}_timestamp_seconds"
    assert registry.get_sample_value(gauge.format(present)) == 0
    assert registry.get_sample_value(gauge.format(absent)) is None
    health.succeeded(present, datetime(2026, 1, 1, tzinfo=UTC))
    health.succeeded(absent, datetime(2026, 1, 1, tzinfo=UTC))  # nothing to move: no error
    assert registry.get_sample_value(gauge.format(present)) == 1767225600
    assert registry.get_sample_value(gauge.format(absent)) is None


def test_hybrid_has_both_freshness_gauges_and_restores_them() -> None:
    registry = CollectorRegistry()
    health = ExporterMetrics(registry, sources=("poll", "push"))
    health.restore_last_success("poll", datetime(2026, 1, 1, tzinfo=UTC))
    health.restore_last_success("push", None)  # never succeeded before: stays 0
    poll = "twilio_studio_exporter_last_successful_poll_timestamp_seconds"
    assert registry.get_sample_value(poll) == 1767225600
    push = "twilio_studio_exporter_last_successful_push_timestamp_seconds"
    assert registry.get_sample_value(push) == 0


def test_an_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="pull"):
        ExporterMetrics(CollectorRegistry(), sources=("pull",))


def test_process_start_time_is_exposed_for_restart_annotations(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    started = registry.get_sample_value("process_start_time_seconds")
    assert started is not None
    assert started > 1.6e9


def test_account_errors_are_counted_by_account_and_reason(
    registry: CollectorRegistry, health: ExporterMetrics
) -> None:
    account = "AC" + "3" * 32
    health.account_error(account, "unauthorized")
    health.account_error(account, "unauthorized")
    health.account_error(account, "no_auth_token")
    total = "twilio_studio_exporter_account_errors_total"
    refused = {"account_sid": account, "reason": "unauthorized"}
    missing = {"account_sid": account, "reason": "no_auth_token"}
    assert registry.get_sample_value(total, refused) == 2
    assert registry.get_sample_value(total, missing) == 1


def test_push_families_are_present_from_the_first_scrape(registry: CollectorRegistry) -> None:
    """In the order the processor and the receiver registered them, as /metrics always had."""
    PushMetrics(registry)
    assert [family.name for family in registry.collect()] == [
        "twilio_studio_exporter_push_rest_reads",
        "twilio_studio_exporter_events_dropped",
        "twilio_studio_exporter_events_pending",
        "twilio_studio_exporter_event_rest_disagreements",
        "twilio_studio_exporter_events_received",
        "twilio_studio_exporter_webhook_requests",
    ]
    dropped = "twilio_studio_exporter_events_dropped_total"
    assert all(registry.get_sample_value(dropped, {"reason": r}) == 0 for r in DROP_REASONS)
    disagreements = "twilio_studio_exporter_event_rest_disagreements_total"
    assert all(
        registry.get_sample_value(disagreements, {"field": name}) == 0
        for name in DISAGREEMENT_FIELDS
    )
    assert registry.get_sample_value("twilio_studio_exporter_events_pending") == 0


def test_push_metrics_count_by_label(registry: CollectorRegistry) -> None:
    push = PushMetrics(registry)
    push.webhook_answered(200)
    push.webhook_answered(200)
    push.webhook_answered(403)
    push.events_received("other", "ignored", 3)
    push.events_dropped("api_error", 2)
    push.set_events_pending(5)
    push.rest_read("end_list")
    push.disagreements.count("type")
    value = registry.get_sample_value
    assert value("twilio_studio_exporter_webhook_requests_total", {"code": "200"}) == 2
    assert value("twilio_studio_exporter_webhook_requests_total", {"code": "403"}) == 1
    received = {"type": "other", "result": "ignored"}
    assert value("twilio_studio_exporter_events_received_total", received) == 3
    assert value("twilio_studio_exporter_events_dropped_total", {"reason": "api_error"}) == 2
    assert value("twilio_studio_exporter_events_pending") == 5
    assert value("twilio_studio_exporter_push_rest_reads_total", {"reason": "end_list"}) == 1
    assert value("twilio_studio_exporter_event_rest_disagreements_total", {"field": "type"}) == 1
