"""Tests for the Studio domain metrics collector."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from studio_exporter.core.domain import Step, Visit
from studio_exporter.sinks.metrics import (
    OVERFLOW,
    AccountMetrics,
    FlowLabels,
    StudioMetrics,
    UnitMetrics,
)

ACCOUNT = "AC" + "d" * 32
FLOW = FlowLabels("FW" + "a" * 32, "Onboarding", ACCOUNT)
OTHER_FLOW = FlowLabels("FW" + "b" * 32, "Reminders", ACCOUNT)
TRACE = "c" * 32
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def make_step(
    widget: str = "send_welcome",
    next_widget: str = "wait_reply",
    *,
    event: str = "sent",
    widget_type: str = "send-message",
    second: float = 1,
    number: int = 1,
) -> Step:
    return Step(
        sid=f"FT{number:032x}",
        flow_sid=FLOW.flow_sid,
        execution_sid="FN" + "c" * 32,
        event=event,
        transitioned_from=widget,
        transitioned_to=next_widget,
        widget_type=widget_type,
        date_created=T0 + timedelta(seconds=second),
    )


def make_visit(
    seconds: float | None, widget: str = "send_welcome", widget_type: str = "send-message"
) -> Visit:
    exit_step = (
        None
        if seconds is None
        else make_step(widget, "next", widget_type=widget_type, second=seconds)
    )
    return Visit(widget, widget_type, FLOW.flow_sid, T0, None, exit_step)


def step_labels(
    flow: FlowLabels = FLOW,
    widget: str = "send_welcome",
    next_widget: str = "wait_reply",
    event: str = "sent",
    widget_type: str = "send-message",
) -> dict[str, str]:
    return {
        "account_sid": flow.account_sid,
        "flow_sid": flow.flow_sid,
        "flow": flow.flow_name,
        "widget": widget,
        "widget_type": widget_type,
        "event": event,
        "next_widget": next_widget,
    }


def duration_labels(widget: str = "send_welcome") -> dict[str, str]:
    return {
        "account_sid": ACCOUNT,
        "flow_sid": FLOW.flow_sid,
        "flow": FLOW.flow_name,
        "widget": widget,
        "widget_type": "send-message",
    }


def flow_labels(flow: FlowLabels = FLOW) -> dict[str, str]:
    return {"account_sid": flow.account_sid, "flow_sid": flow.flow_sid, "flow": flow.flow_name}


def openmetrics(registry: CollectorRegistry) -> str:
    """The exposition a scraper asking for application/openmetrics-text gets."""
    text: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
    return text.decode()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> StudioMetrics:
    return StudioMetrics(registry)


def test_steps_are_counted_per_transition(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    for number in range(3):
        metrics.record_step(FLOW, make_step(number=number))
    metrics.record_step(FLOW, make_step(event="failed", next_widget="Ended"))
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels()) == 3
    failed = step_labels(event="failed", next_widget="Ended")
    assert registry.get_sample_value("twilio_studio_steps_total", failed) == 1


@pytest.mark.parametrize(
    ("seconds", "le_counts"),
    [
        pytest.param(0, {"0.5": 1, "1.0": 1, "+Inf": 1}, id="same-second"),
        pytest.param(1, {"0.5": 0, "1.0": 1, "+Inf": 1}, id="on-a-bound-counts-in-it"),
        pytest.param(7200, {"3600.0": 0, "7200.0": 1, "+Inf": 1}, id="two-hours"),
        pytest.param(200_000, {"86400.0": 0, "+Inf": 1}, id="beyond-the-last-bound"),
    ],
)
def test_visit_duration_lands_in_the_right_bucket(
    registry: CollectorRegistry,
    metrics: StudioMetrics,
    seconds: float,
    le_counts: dict[str, int],
) -> None:
    metrics.record_visit(FLOW, make_visit(seconds), TRACE)
    name = "twilio_studio_step_duration_seconds"
    for le, expected in le_counts.items():
        labels = {**duration_labels(), "le": le}
        assert registry.get_sample_value(f"{name}_bucket", labels) == expected, le
    assert registry.get_sample_value(f"{name}_count", duration_labels()) == 1
    assert registry.get_sample_value(f"{name}_sum", duration_labels()) == seconds


def test_open_visits_are_not_observed(registry: CollectorRegistry, metrics: StudioMetrics) -> None:
    metrics.record_visit(FLOW, make_visit(None), TRACE)
    count = "twilio_studio_step_duration_seconds_count"
    assert registry.get_sample_value(count, duration_labels()) is None


def test_a_negative_duration_is_refused_not_clamped(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    # The poller counts these as anomalies; a histogram must not hide them in its first bucket.
    with pytest.raises(ValueError, match="negative duration"):
        metrics.record_visit(FLOW, make_visit(-2), TRACE)
    with pytest.raises(ValueError, match="negative duration"):
        metrics.record_execution_ended(FLOW, "a", -1.0, TRACE)
    name = "twilio_studio_step_duration_seconds"
    assert registry.get_sample_value(f"{name}_count", duration_labels()) is None
    ended = {**flow_labels(), "final_widget": "a"}
    assert registry.get_sample_value("twilio_studio_executions_ended_total", ended) is None


def test_openmetrics_exposition_carries_the_trace_id_exemplar(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    metrics.record_visit(FLOW, make_visit(3), "1" * 32)
    metrics.record_visit(FLOW, make_visit(4), TRACE)  # the latest one of a bucket wins
    text = openmetrics(registry)
    bucket = next(
        line
        for line in text.splitlines()
        if line.startswith("twilio_studio_step_duration_seconds_bucket") and 'le="5.0"' in line
    )
    assert bucket.endswith(f'2.0 # {{trace_id="{TRACE}"}} 4.0')
    # The classic text format has no exemplars.
    assert "trace_id" not in generate_latest(registry).decode()


def test_executions_started_ended_and_their_duration(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    metrics.record_execution_started(FLOW)
    metrics.record_execution_started(FLOW)
    metrics.record_execution_ended(FLOW, "send_goodbye", 95.0, TRACE)
    metrics.record_execution_ended(FLOW, None, None, None)
    assert registry.get_sample_value("twilio_studio_executions_started_total", flow_labels()) == 2
    ended = "twilio_studio_executions_ended_total"
    final = {**flow_labels(), "final_widget": "send_goodbye"}
    assert registry.get_sample_value(ended, final) == 1
    assert registry.get_sample_value(ended, {**flow_labels(), "final_widget": ""}) == 1
    duration = "twilio_studio_execution_duration_seconds"
    assert registry.get_sample_value(f"{duration}_count", flow_labels()) == 1
    assert registry.get_sample_value(f"{duration}_sum", flow_labels()) == 95.0
    le_120 = {**flow_labels(), "le": "120.0"}
    assert registry.get_sample_value(f"{duration}_bucket", le_120) == 1


def test_gaps_are_counted(registry: CollectorRegistry, metrics: StudioMetrics) -> None:
    metrics.record_gap(FLOW)
    metrics.record_gap(FLOW, 2)
    assert registry.get_sample_value("twilio_studio_step_gaps_total", flow_labels()) == 3


def test_gauges_replace_all_series_on_each_refresh(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    metrics.set_active({FLOW: 4, OTHER_FLOW: 1})
    metrics.set_in_progress({(FLOW, "wait_reply"): 3, (FLOW, "gather"): 1})
    metrics.set_active({FLOW: 2})
    metrics.set_in_progress({(FLOW, "gather"): 2})
    active = "twilio_studio_executions_active"
    assert registry.get_sample_value(active, flow_labels()) == 2
    assert registry.get_sample_value(active, flow_labels(OTHER_FLOW)) is None
    waiting = "twilio_studio_widget_visits_in_progress"
    assert registry.get_sample_value(waiting, {**flow_labels(), "widget": "gather"}) == 2
    assert registry.get_sample_value(waiting, {**flow_labels(), "widget": "wait_reply"}) is None


def test_a_flow_of_thousands_of_widgets_is_capped(registry: CollectorRegistry) -> None:
    cap = 500
    metrics = StudioMetrics(registry, max_series_per_metric=cap)
    widgets = [f"widget_{n}" for n in range(3000)]
    for number, widget in enumerate(widgets):
        metrics.record_step(FLOW, make_step(widget, "Ended", number=number))
        metrics.record_visit(FLOW, make_visit(2, widget), TRACE)

    families = {f.name: f for f in metrics.collect()}
    steps = families["twilio_studio_steps"].samples
    assert len(steps) == cap + 1  # the cap, plus the flow's one overflow series
    assert sum(s.value for s in steps) == len(widgets)  # nothing lost, only folded
    overflow = step_labels(
        widget=OVERFLOW, widget_type=OVERFLOW, event=OVERFLOW, next_widget=OVERFLOW
    )
    folded = len(widgets) - cap
    assert registry.get_sample_value("twilio_studio_steps_total", overflow) == folded
    count = "twilio_studio_step_duration_seconds_count"
    overflow_duration = {**flow_labels(), "widget": OVERFLOW, "widget_type": OVERFLOW}
    assert registry.get_sample_value(count, overflow_duration) == folded
    hits = "twilio_studio_exporter_series_overflow_total"
    assert registry.get_sample_value(hits, {"metric": "twilio_studio_steps_total"}) == folded
    duration_hits = {"metric": "twilio_studio_step_duration_seconds"}
    assert registry.get_sample_value(hits, duration_hits) == folded
    # Series that existed before the cap filled keep counting as themselves.
    metrics.record_step(FLOW, make_step("widget_0", "Ended"))
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels(
        widget="widget_0", next_widget="Ended"
    )) == 2  # fmt: skip


def test_metrics_with_only_flow_labels_fold_the_flow_labels(registry: CollectorRegistry) -> None:
    metrics = StudioMetrics(registry, max_series_per_metric=2)
    flows = [FlowLabels(f"FW{n:032x}", f"flow {n}", ACCOUNT) for n in range(5)]
    for flow in flows:
        metrics.record_execution_started(flow)
    started = "twilio_studio_executions_started_total"
    assert registry.get_sample_value(started, flow_labels(flows[1])) == 1
    overflow = {"account_sid": OVERFLOW, "flow_sid": OVERFLOW, "flow": OVERFLOW}
    assert registry.get_sample_value(started, overflow) == 3


def test_gauges_are_capped_too(registry: CollectorRegistry) -> None:
    metrics = StudioMetrics(registry, max_series_per_metric=2)
    metrics.set_in_progress({(FLOW, f"w{n}"): 1 for n in range(5)})
    waiting = "twilio_studio_widget_visits_in_progress"
    assert registry.get_sample_value(waiting, {**flow_labels(), "widget": OVERFLOW}) == 3


def fill(metrics: StudioMetrics) -> None:
    metrics.record_step(FLOW, make_step())
    metrics.record_step(OTHER_FLOW, make_step(event='a "quoted" \\ event\n'))
    metrics.record_visit(FLOW, make_visit(0.25), TRACE)
    metrics.record_visit(FLOW, make_visit(40), None)
    metrics.record_execution_started(FLOW)
    metrics.record_execution_ended(FLOW, "send_welcome", 40.25, TRACE)
    metrics.record_gap(OTHER_FLOW)


def test_snapshot_restores_counters_and_histograms_exactly() -> None:
    original_registry = CollectorRegistry()
    original = StudioMetrics(original_registry)
    fill(original)
    original.set_active({FLOW: 3})
    restored_registry = CollectorRegistry()
    restored = StudioMetrics(restored_registry)
    restored.restore(original.snapshot())
    original.set_active({})  # gauges are not part of the snapshot
    assert openmetrics(restored_registry) == openmetrics(original_registry)
    # And it keeps counting from there.
    restored.record_step(FLOW, make_step())
    assert restored_registry.get_sample_value("twilio_studio_steps_total", step_labels()) == 2


def test_restore_replaces_rather_than_adds(registry: CollectorRegistry) -> None:
    metrics = StudioMetrics(registry)
    fill(metrics)
    snapshot = metrics.snapshot()
    metrics.record_step(FLOW, make_step())
    metrics.restore(snapshot)
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels()) == 1


def test_restore_rebins_a_snapshot_taken_with_other_buckets(registry: CollectorRegistry) -> None:
    before = StudioMetrics(CollectorRegistry(), duration_buckets=(1, 10, 100))
    for seconds in (0, 5, 50, 500):
        before.record_visit(FLOW, make_visit(seconds), None)
    after = StudioMetrics(registry, duration_buckets=(2, 60))
    after.restore(before.snapshot())
    name = "twilio_studio_step_duration_seconds"

    def bucket(le: str) -> float | None:
        return registry.get_sample_value(f"{name}_bucket", {**duration_labels(), "le": le})

    # 0 (<=1) -> le 2; 5 (<=10) -> le 60; 50 (<=100) -> +Inf; 500 -> +Inf.
    assert (bucket("2.0"), bucket("60.0"), bucket("+Inf")) == (1, 2, 4)
    assert registry.get_sample_value(f"{name}_sum", duration_labels()) == 555


def test_restore_folds_series_beyond_a_lower_cap(registry: CollectorRegistry) -> None:
    wide = StudioMetrics(CollectorRegistry())
    for n in range(10):
        wide.record_step(FLOW, make_step(f"w{n}"))
    narrow = StudioMetrics(registry, max_series_per_metric=4)
    narrow.restore(wide.snapshot())
    samples = next(f for f in narrow.collect() if f.name == "twilio_studio_steps").samples
    assert len(samples) == 5
    assert sum(s.value for s in samples) == 10


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b'{"version": 99, "counters": {}, "histograms": {}}', id="future-version"),
        pytest.param(
            b'{"version": 1, "counters": {"nope_total": []}, "histograms": {}}',
            id="unknown-metric",
        ),
        pytest.param(
            b'{"version": 1, "counters": {"twilio_studio_steps_total": [["a", 1]]},'
            b' "histograms": {}}',
            id="wrong-label-count",
        ),
    ],
)
def test_restore_rejects_what_is_not_a_snapshot(metrics: StudioMetrics, data: bytes) -> None:
    with pytest.raises(ValueError, match=r"snapshot|series|counter"):
        metrics.restore(data)


def test_snapshot_is_compact_json(metrics: StudioMetrics) -> None:
    fill(metrics)
    decoded = json.loads(metrics.snapshot())
    assert decoded["version"] == 2
    assert set(decoded["counters"]) == {
        "twilio_studio_steps_total",
        "twilio_studio_executions_started_total",
        "twilio_studio_executions_ended_total",
        "twilio_studio_step_gaps_total",
    }
    snapshot = metrics.snapshot()
    assert b": " not in snapshot  # no pretty-printing
    assert b", " not in snapshot


def test_text_exposition_parses_and_names_follow_conventions(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    fill(metrics)
    metrics.set_active({FLOW: 1})
    metrics.set_in_progress({(FLOW, "wait_reply"): 1})
    families = {
        f.name: f.type for f in text_string_to_metric_families(generate_latest(registry).decode())
    }
    assert families == {
        "twilio_studio_steps": "counter",
        "twilio_studio_step_duration_seconds": "histogram",
        "twilio_studio_executions_started": "counter",
        "twilio_studio_executions_ended": "counter",
        "twilio_studio_execution_duration_seconds": "histogram",
        "twilio_studio_executions_active": "gauge",
        "twilio_studio_widget_visits_in_progress": "gauge",
        "twilio_studio_step_gaps": "counter",
        "twilio_studio_exporter_series_overflow": "counter",
        "twilio_studio_flow_info": "gauge",
    }


def test_registering_twice_is_refused(registry: CollectorRegistry) -> None:
    StudioMetrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        StudioMetrics(registry)


@pytest.mark.parametrize(
    "buckets",
    [
        pytest.param((), id="empty"),
        pytest.param((1, 1, 2), id="repeated"),
        pytest.param((5, 1), id="decreasing"),
    ],
)
def test_bad_buckets_are_refused(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="bucket"):
        StudioMetrics(duration_buckets=buckets)


def test_collect_while_recording_sees_consistent_totals(registry: CollectorRegistry) -> None:
    metrics = StudioMetrics(registry)
    done = threading.Event()
    seen: list[float] = []

    def scrape() -> None:
        while not done.is_set():
            value = registry.get_sample_value("twilio_studio_steps_total", step_labels())
            seen.append(value or 0)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    for number in range(5000):
        metrics.record_step(FLOW, make_step(number=number))
    done.set()
    scraper.join()
    assert seen == sorted(seen)  # a counter never goes backwards mid-update
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels()) == 5000


def test_flow_info_names_each_followed_flow_and_its_revision(
    registry: CollectorRegistry, metrics: StudioMetrics
) -> None:
    metrics.set_flows([("FW1", "Survey", 3), ("FW2", "IVR", 12)], ACCOUNT)

    def info(sid: str, name: str, revision: str) -> float | None:
        labels = {"account_sid": ACCOUNT, "flow_sid": sid, "flow": name, "revision": revision}
        return registry.get_sample_value("twilio_studio_flow_info", labels)

    assert info("FW1", "Survey", "3") == 1
    # A new revision replaces the old series (dashboards annotate the change); a flow no longer
    # followed disappears.
    metrics.set_flows([("FW1", "Survey", 4)], ACCOUNT)
    assert info("FW1", "Survey", "4") == 1
    assert info("FW1", "Survey", "3") is None
    assert info("FW2", "IVR", "12") is None


def _without_account(snapshot: bytes) -> bytes:
    """The snapshot as a single-account exporter (version 1, no account label) wrote it."""
    decoded = json.loads(snapshot)
    decoded["version"] = 1
    for rows in decoded["counters"].values():
        for row in rows:
            del row[0]
    for body in decoded["histograms"].values():
        for series in body["series"]:
            del series[0][0]
    return json.dumps(decoded).encode()


def test_a_version_1_snapshot_is_restored_under_its_account(metrics: StudioMetrics) -> None:
    fill(metrics)
    legacy = _without_account(metrics.snapshot())
    restored = StudioMetrics()
    restored.restore(legacy, account_sid=ACCOUNT)
    assert restored.snapshot() == metrics.snapshot()


def _info(registry: CollectorRegistry, sid: str, name: str, status: str) -> float | None:
    labels = {"account_sid": sid, "account": name, "status": status}
    return registry.get_sample_value("twilio_studio_account_info", labels)


def test_account_metrics_merge_accounts_and_carry_their_info() -> None:
    registry = CollectorRegistry()
    group = AccountMetrics(registry)
    other_account = "AC" + "e" * 32
    first, second = StudioMetrics(max_series_per_metric=1), StudioMetrics(max_series_per_metric=1)
    group.add(ACCOUNT, first)
    group.add(other_account, second)
    group.set_info(ACCOUNT, "Main", "active")
    group.set_info(other_account, "Customer 7", "active")
    first.record_step(FLOW, make_step())
    first.record_step(FLOW, make_step(event="failed"))  # folded: the cap is per account
    second_flow = FlowLabels(FLOW.flow_sid, "Onboarding", other_account)
    second.record_step(second_flow, make_step())
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels()) == 1
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels(second_flow)) == 1
    overflow = {"metric": "twilio_studio_steps_total"}
    assert registry.get_sample_value("twilio_studio_exporter_series_overflow_total", overflow) == 1
    assert _info(registry, other_account, "Customer 7", "active") == 1
    group.remove(other_account)
    group.set_info(other_account, "Customer 7", "suspended")
    assert registry.get_sample_value("twilio_studio_steps_total", step_labels(second_flow)) is None
    assert _info(registry, other_account, "Customer 7", "suspended") == 1
    group.drop_info(other_account)
    assert _info(registry, other_account, "Customer 7", "suspended") is None
    exposition = generate_latest(registry).decode()
    assert exposition.count("# TYPE twilio_studio_steps_total counter") == 1


def test_account_metrics_without_accounts_still_describe_every_family() -> None:
    registry = CollectorRegistry()
    AccountMetrics(registry)
    exposition = generate_latest(registry).decode()
    for name in ("twilio_studio_steps_total", "twilio_studio_account_info"):
        assert f"# TYPE {name}" in exposition


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_units_sum_series_they_share_and_keep_their_own() -> None:
    registry = CollectorRegistry()
    units = UnitMetrics(StudioMetrics())
    accounts = AccountMetrics(registry)
    accounts.add(ACCOUNT, units)
    units.acquire(FLOW.flow_sid, None)
    units.acquire(OTHER_FLOW.flow_sid, None)
    # The other flow's executions ran FLOW as a subflow: both units count FLOW's series.
    for flow_sid in (FLOW.flow_sid, OTHER_FLOW.flow_sid):
        unit = units.unit(flow_sid)
        assert unit is not None
        unit.record_step(FLOW, make_step())
        unit.record_visit(FLOW, make_visit(3), TRACE)
    other = units.unit(OTHER_FLOW.flow_sid)
    assert other is not None
    other.record_step(OTHER_FLOW, make_step())
    samples = _samples(registry)
    assert samples[("twilio_studio_steps_total", _key(step_labels()))] == 2
    assert samples[("twilio_studio_steps_total", _key(step_labels(OTHER_FLOW)))] == 1
    bucket = _key(dict(duration_labels(), le="5.0"))
    assert samples[("twilio_studio_step_duration_seconds_bucket", bucket)] == 2
    assert samples[("twilio_studio_step_duration_seconds_count", _key(duration_labels()))] == 2
    assert samples[("twilio_studio_step_duration_seconds_sum", _key(duration_labels()))] == 6


def test_a_unit_moves_with_its_snapshot() -> None:
    old_owner = UnitMetrics(StudioMetrics())
    old_owner.acquire(FLOW.flow_sid, None)
    unit = old_owner.unit(FLOW.flow_sid)
    assert unit is not None
    for _ in range(3):
        unit.record_step(FLOW, make_step())
    committed = unit.snapshot()
    old_owner.release(FLOW.flow_sid)
    assert old_owner.flows() == set()
    registry = CollectorRegistry()
    new_owner = UnitMetrics(StudioMetrics())
    AccountMetrics(registry).add(ACCOUNT, new_owner)
    new_owner.acquire(FLOW.flow_sid, committed, account_sid=ACCOUNT)
    assert _samples(registry)[("twilio_studio_steps_total", _key(step_labels()))] == 3
    released_registry = CollectorRegistry()
    AccountMetrics(released_registry).add(ACCOUNT, old_owner)
    assert not any(name == "twilio_studio_steps_total" for name, _ in _samples(released_registry))
