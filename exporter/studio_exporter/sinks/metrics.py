"""Studio domain metrics: a prometheus_client Collector over in-memory, snapshot-able aggregates."""

from __future__ import annotations

import json
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar

from studio_exporter.core.domain import Step, Visit

#: The value every variable label of a folded series gets once its metric reached the cap.
OVERFLOW: Final = "__overflow__"

#: Visit durations in seconds. REST timestamps have whole seconds, so 0.5 catches "left in the
#: same second"; the tail reaches a day for send-and-wait-for-reply widgets left waiting.
DEFAULT_DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400,
)  # fmt: skip

#: Execution durations in seconds: from seconds up to Studio's 30-day limit on active executions.
DEFAULT_EXECUTION_BUCKETS: Final[tuple[float, ...]] = (
    1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800,
    2592000,
)  # fmt: skip

DEFAULT_MAX_SERIES_PER_METRIC: Final = 10_000

#: 2: every key starts with the account SID. A version 1 snapshot (one account, no account
#: label) is restored under the account it is restored for.
_SNAPSHOT_VERSION: Final = 2

# Metric keys: the short names used in the snapshot and in series_overflow_total{metric}.
STEPS: Final = "twilio_studio_steps_total"
STEP_DURATION: Final = "twilio_studio_step_duration_seconds"
EXECUTIONS_STARTED: Final = "twilio_studio_executions_started_total"
EXECUTIONS_ENDED: Final = "twilio_studio_executions_ended_total"
EXECUTION_DURATION: Final = "twilio_studio_execution_duration_seconds"
EXECUTIONS_ACTIVE: Final = "twilio_studio_executions_active"
VISITS_IN_PROGRESS: Final = "twilio_studio_widget_visits_in_progress"
STEP_GAPS: Final = "twilio_studio_step_gaps_total"
SERIES_OVERFLOW: Final = "twilio_studio_exporter_series_overflow_total"
FLOW_INFO: Final = "twilio_studio_flow_info"
ACCOUNT_INFO: Final = "twilio_studio_account_info"

_FLOW_LABELS: Final = ("account_sid", "flow_sid", "flow")


@dataclass(frozen=True, slots=True)
class FlowLabels:
    """The labels every domain metric starts with: the account that owns the flow, the flow's
    SID and its (human) name. The account's name is not a label: it is joined from
    ``twilio_studio_account_info``, so renaming an account does not split series."""

    flow_sid: str
    flow_name: str
    account_sid: str = ""


@dataclass(frozen=True, slots=True)
class _Spec:
    name: str  # the exposed name, with _total for counters
    documentation: str
    labelnames: tuple[str, ...]

    @property
    def family_name(self) -> str:
        # prometheus_client appends _total to counter families itself.
        return self.name.removesuffix("_total")


_SPECS: Final[dict[str, _Spec]] = {
    spec.name: spec
    for spec in (
        _Spec(
            STEPS,
            "Steps (transitions out of a widget) recorded by Studio.",
            (*_FLOW_LABELS, "widget", "widget_type", "event", "next_widget"),
        ),
        _Spec(
            STEP_DURATION,
            "Time an execution spent in a widget (closed visits), from the transition into it "
            "to the transition out.",
            (*_FLOW_LABELS, "widget", "widget_type"),
        ),
        _Spec(EXECUTIONS_STARTED, "Executions started.", _FLOW_LABELS),
        _Spec(
            EXECUTIONS_ENDED,
            "Executions ended, by the widget the execution ended from.",
            (*_FLOW_LABELS, "final_widget"),
        ),
        _Spec(
            EXECUTION_DURATION,
            "Time from an execution's creation to its end.",
            _FLOW_LABELS,
        ),
        _Spec(EXECUTIONS_ACTIVE, "Executions active at the last poll.", _FLOW_LABELS),
        _Spec(
            VISITS_IN_PROGRESS,
            "Active executions waiting in a widget at the last poll (open visits).",
            (*_FLOW_LABELS, "widget"),
        ),
        _Spec(STEP_GAPS, "Breaks in executions' step chains (missing steps).", _FLOW_LABELS),
    )
}

_COUNTERS: Final = (STEPS, EXECUTIONS_STARTED, EXECUTIONS_ENDED, STEP_GAPS)
_HISTOGRAMS: Final = (STEP_DURATION, EXECUTION_DURATION)

_Key = tuple[str, ...]
_HistogramCopy = tuple[_Key, list[int], float, list[tuple[str, float] | None]]


class _Histogram:
    """Per-bucket (not cumulative) counts, the sum, and the last exemplar of each bucket."""

    __slots__ = ("counts", "exemplars", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.total = 0.0
        # (trace_id, value) of the latest observation that carried a trace id, per bucket.
        self.exemplars: list[tuple[str, float] | None] = [None] * buckets

    def merge(self, other: _Histogram) -> None:
        for index, count in enumerate(other.counts):
            self.counts[index] += count
            if other.exemplars[index] is not None:
                self.exemplars[index] = other.exemplars[index]
        self.total += other.total


def _check_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(float(bound) for bound in buckets)
    if not bounds:
        raise ValueError("a histogram needs at least one bucket bound")
    if any(later <= earlier for earlier, later in pairwise(bounds)):
        raise ValueError(f"bucket bounds must increase strictly: {bounds}")
    if bounds[-1] == float("inf"):
        bounds = bounds[:-1]  # +Inf is always there
    return bounds


def _le(bound: float) -> str:
    # Same spelling as prometheus_client's own histograms: 1.0, 0.5, +Inf.
    return "+Inf" if bound == float("inf") else repr(float(bound))


class StudioMetrics(Collector):
    """The domain metrics, aggregated in memory and exposed as a prometheus_client Collector.

    The poller records what it exports (``record_*``) and refreshes the two gauges each cycle;
    Prometheus' scrape thread calls :meth:`collect`. One lock guards the aggregates; ``collect``
    copies them under the lock and builds the families outside it.

    Cardinality: each metric holds at most ``max_series_per_metric`` series. A new series beyond
    that is folded into its flow's overflow series, whose variable labels (widget, widget_type,
    event, next_widget, final_widget) are all ``__overflow__``; for the metrics whose only labels
    are account_sid, flow_sid and flow, those get ``__overflow__``. So a metric holds at most the
    cap plus one overflow series per flow. One StudioMetrics holds one account's series (see
    :class:`AccountMetrics`), so the cap is per account: a busy account cannot fold another's.
    Every folded observation counts in ``twilio_studio_exporter_series_overflow_total{metric}``,
    which this collector exposes itself (it owns the cap) and snapshots with the counters.

    A sample of the exposition (text format 0.0.4; the OpenMetrics format adds the exemplars)::

        # HELP twilio_studio_steps_total Steps (transitions out of a widget) recorded by Studio.
        # TYPE twilio_studio_steps_total counter
        twilio_studio_steps_total{account_sid="AC51...",event="sent",flow="Onboarding",\
flow_sid="FW0f...",next_widget="wait_reply",widget="send_welcome",widget_type="send-message"} 41.0
        # HELP twilio_studio_step_duration_seconds Time an execution spent in a widget ...
        # TYPE twilio_studio_step_duration_seconds histogram
        twilio_studio_step_duration_seconds_bucket{account_sid="AC51...",flow="Onboarding",\
flow_sid="FW0f...",le="0.5",widget="send_welcome",widget_type="send-message"} 39.0
        ...
        twilio_studio_step_duration_seconds_bucket{...,le="+Inf",...} 41.0
        twilio_studio_step_duration_seconds_count{...} 41.0
        twilio_studio_step_duration_seconds_sum{...} 3.0
        # TYPE twilio_studio_executions_active gauge
        twilio_studio_executions_active{account_sid="AC51...",flow="Onboarding",\
flow_sid="FW0f..."} 7.0
        # TYPE twilio_studio_exporter_series_overflow_total counter
        twilio_studio_exporter_series_overflow_total{metric="twilio_studio_steps_total"} 0.0

    With ``Accept: application/openmetrics-text`` a bucket line carries its latest exemplar::

        twilio_studio_step_duration_seconds_bucket{...,le="1.0",...} 40 # {trace_id="4f1c..."} 1.0
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_series_per_metric: int = DEFAULT_MAX_SERIES_PER_METRIC,
        duration_buckets: Sequence[float] = DEFAULT_DURATION_BUCKETS,
        execution_buckets: Sequence[float] = DEFAULT_EXECUTION_BUCKETS,
    ) -> None:
        if max_series_per_metric < 1:
            raise ValueError(f"max_series_per_metric must be at least 1: {max_series_per_metric}")
        self._cap = max_series_per_metric
        self._bounds: dict[str, tuple[float, ...]] = {
            STEP_DURATION: _check_buckets(duration_buckets),
            EXECUTION_DURATION: _check_buckets(execution_buckets),
        }
        self._lock = threading.Lock()
        self._counters: dict[str, dict[_Key, int]] = {name: {} for name in _COUNTERS}
        self._histograms: dict[str, dict[_Key, _Histogram]] = {name: {} for name in _HISTOGRAMS}
        self._gauges: dict[str, dict[_Key, int]] = {EXECUTIONS_ACTIVE: {}, VISITS_IN_PROGRESS: {}}
        self._overflow: dict[str, int] = dict.fromkeys(_SPECS, 0)
        self._flow_info: frozenset[tuple[str, str, str, str]] = frozenset()
        # Direct references for the hot path: one attribute load instead of two dict lookups.
        self._steps = self._counters[STEPS]
        self._step_durations = self._histograms[STEP_DURATION]
        self._step_bounds = self._bounds[STEP_DURATION]
        if registry is not None:
            registry.register(self)

    @property
    def max_series_per_metric(self) -> int:
        return self._cap

    # -- recording (the poller's thread) -----------------------------------------------------

    def set_flows(self, flows: Iterable[tuple[str, str, int]], account_sid: str = "") -> None:
        """The account's flows followed now as (sid, name, revision): ``twilio_studio_flow_info``.

        The revision is a label, so a new revision is a new series: dashboards annotate it,
        and ``group_left`` joins it onto any other metric by ``flow_sid``. Not snapshotted: the
        next flow refresh sets it again.
        """
        info = frozenset((account_sid, sid, name, str(revision)) for sid, name, revision in flows)
        with self._lock:
            self._flow_info = info

    def record_step(self, flow: FlowLabels, step: Step) -> None:
        """Count one step: the transition out of ``step.transitioned_from``."""
        key: _Key = (
            flow.account_sid,
            flow.flow_sid,
            flow.flow_name,
            step.transitioned_from,
            step.widget_type,
            step.event,
            step.transitioned_to,
        )
        steps = self._steps
        with self._lock:
            if key in steps:
                steps[key] += 1
            else:
                if len(steps) >= self._cap:
                    key = self._fold(STEPS, key)
                steps[key] = steps.get(key, 0) + 1

    def record_visit(self, flow: FlowLabels, visit: Visit, trace_id_hex: str | None) -> None:
        """Observe a closed visit's duration; open visits are not observed (see the gauge).

        A negative duration (skewed timestamps) raises ValueError: the poller counts those as
        anomalies and leaves them out, so no histogram hides them in its lowest bucket.
        """
        duration = visit.duration_seconds
        if duration is None:
            return
        key = (flow.account_sid, flow.flow_sid, flow.flow_name, visit.widget, visit.widget_type)
        with self._lock:
            self._observe(STEP_DURATION, key, duration, trace_id_hex)

    def record_execution_started(self, flow: FlowLabels) -> None:
        self._add(EXECUTIONS_STARTED, (flow.account_sid, flow.flow_sid, flow.flow_name))

    def record_execution_ended(
        self,
        flow: FlowLabels,
        final_widget: str | None,
        duration_seconds: float | None,
        trace_id_hex: str | None,
    ) -> None:
        """Count an ended execution; ``final_widget`` None (end step unknown) is the empty label."""
        key = (flow.account_sid, flow.flow_sid, flow.flow_name)
        if duration_seconds is not None:
            _check_duration(EXECUTION_DURATION, duration_seconds)
        with self._lock:
            self._add_locked(EXECUTIONS_ENDED, (*key, final_widget or ""), 1)
            if duration_seconds is not None:
                self._observe(EXECUTION_DURATION, key, duration_seconds, trace_id_hex)

    def record_gap(self, flow: FlowLabels, count: int = 1) -> None:
        self._add(STEP_GAPS, (flow.account_sid, flow.flow_sid, flow.flow_name), count)

    def set_active(self, counts: Mapping[FlowLabels, int]) -> None:
        """Replace every ``executions_active`` series: flows absent from ``counts`` disappear."""
        self._set_gauge(
            EXECUTIONS_ACTIVE,
            [((flow.account_sid, flow.flow_sid, flow.flow_name), n) for flow, n in counts.items()],
        )

    def set_in_progress(self, counts: Mapping[tuple[FlowLabels, str], int]) -> None:
        """Replace every ``widget_visits_in_progress`` series, keyed by (flow, widget)."""
        self._set_gauge(
            VISITS_IN_PROGRESS,
            [
                ((flow.account_sid, flow.flow_sid, flow.flow_name, widget), n)
                for (flow, widget), n in counts.items()
            ],
        )

    def _add(self, metric: str, key: _Key, amount: int = 1) -> None:
        with self._lock:
            self._add_locked(metric, key, amount)

    def _add_locked(self, metric: str, key: _Key, amount: int) -> None:
        series = self._counters[metric]
        if key not in series and len(series) >= self._cap:
            key = self._fold(metric, key)
        series[key] = series.get(key, 0) + amount

    def _observe(self, metric: str, key: _Key, value: float, trace_id_hex: str | None) -> None:
        _check_duration(metric, value)
        series = self._step_durations if metric == STEP_DURATION else self._histograms[metric]
        bounds = self._step_bounds if metric == STEP_DURATION else self._bounds[metric]
        histogram = series.get(key)
        if histogram is None:
            if len(series) >= self._cap:
                key = self._fold(metric, key)
                histogram = series.get(key)
            if histogram is None:
                histogram = series[key] = _Histogram(len(bounds) + 1)
        index = bisect_left(bounds, value)
        histogram.counts[index] += 1
        histogram.total += value
        if trace_id_hex is not None:
            histogram.exemplars[index] = (trace_id_hex, value)

    def _set_gauge(self, metric: str, values: Iterable[tuple[_Key, int]]) -> None:
        with self._lock:
            series: dict[_Key, int] = {}
            for key, value in values:
                target = key
                if key not in series and len(series) >= self._cap:
                    target = self._fold(metric, key)
                series[target] = series.get(target, 0) + value
            self._gauges[metric] = series

    def _fold(self, metric: str, key: _Key) -> _Key:
        """The overflow series a new series of a full metric is counted in (lock held)."""
        self._overflow[metric] += 1
        if len(key) > len(_FLOW_LABELS):
            return key[: len(_FLOW_LABELS)] + (OVERFLOW,) * (len(key) - len(_FLOW_LABELS))
        return (OVERFLOW,) * len(key)

    # -- exposition (the scrape thread) ------------------------------------------------------

    def describe(self) -> Iterable[Metric]:
        # Lets the registry reject a second collector exposing the same names.
        return list(self._families({}, {}, {}, {}))

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            counters = {name: list(series.items()) for name, series in self._counters.items()}
            histograms = {
                name: [(k, list(h.counts), h.total, list(h.exemplars)) for k, h in series.items()]
                for name, series in self._histograms.items()
            }
            gauges = {name: list(series.items()) for name, series in self._gauges.items()}
            overflow = dict(self._overflow)
            flow_info = sorted(self._flow_info)
        return list(self._families(counters, histograms, gauges, overflow, flow_info))

    def _families(
        self,
        counters: Mapping[str, list[tuple[_Key, int]]],
        histograms: Mapping[str, list[_HistogramCopy]],
        gauges: Mapping[str, list[tuple[_Key, int]]],
        overflow: Mapping[str, int],
        flow_info: Iterable[tuple[str, str, str, str]] = (),
    ) -> Iterator[Metric]:
        for name in _SPECS:
            spec = _SPECS[name]
            if name in _COUNTERS:
                counter = CounterMetricFamily(
                    spec.family_name, spec.documentation, labels=spec.labelnames
                )
                for key, value in counters.get(name, ()):
                    counter.add_metric(key, value)
                yield counter
            elif name in _HISTOGRAMS:
                yield self._histogram_family(spec, histograms.get(name, ()))
            else:
                gauge = GaugeMetricFamily(spec.name, spec.documentation, labels=spec.labelnames)
                for key, value in gauges.get(name, ()):
                    gauge.add_metric(key, value)
                yield gauge
        overflow_family = CounterMetricFamily(
            SERIES_OVERFLOW.removesuffix("_total"),
            "Observations folded into an __overflow__ series because their metric reached the "
            "series cap.",
            labels=("metric",),
        )
        for name, value in overflow.items() if overflow else ():
            overflow_family.add_metric((name,), value)
        yield overflow_family
        info = GaugeMetricFamily(
            FLOW_INFO,
            "Always 1 for each followed flow; the labels give its name and current revision.",
            labels=(*_FLOW_LABELS, "revision"),
        )
        for labels in flow_info:
            info.add_metric(labels, 1)
        yield info

    def _histogram_family(
        self,
        spec: _Spec,
        series: Iterable[_HistogramCopy],
    ) -> HistogramMetricFamily:
        family = HistogramMetricFamily(spec.name, spec.documentation, labels=spec.labelnames)
        les = [*(_le(bound) for bound in self._bounds[spec.name]), "+Inf"]
        for key, counts, total, exemplars in series:
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            cumulative = 0
            for le, count, exemplar in zip(les, counts, exemplars, strict=True):
                cumulative += count
                if exemplar is None:
                    buckets.append((le, cumulative))
                else:
                    trace_id, value = exemplar
                    buckets.append((le, cumulative, Exemplar({"trace_id": trace_id}, value)))
            family.add_metric(key, buckets, total)
        return family

    # -- persistence --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The counters and histograms (not the gauges) as compact JSON, for the state store."""
        with self._lock:
            data: dict[str, Any] = {
                "version": _SNAPSHOT_VERSION,
                "counters": {
                    name: [[*key, value] for key, value in series.items()]
                    for name, series in self._counters.items()
                },
                "histograms": {
                    name: {
                        "bounds": list(self._bounds[name]),
                        "series": [
                            [
                                list(key),
                                h.counts,
                                h.total,
                                {str(i): list(e) for i, e in enumerate(h.exemplars) if e},
                            ]
                            for key, h in series.items()
                        ],
                    }
                    for name, series in self._histograms.items()
                },
                "overflow": {name: value for name, value in self._overflow.items() if value},
            }
            return json.dumps(data, separators=(",", ":")).encode()

    def restore(self, data: bytes, *, account_sid: str = "") -> None:
        """Replace the counters and histograms with a :meth:`snapshot`; gauges are left alone.

        A snapshot taken with other bucket bounds is re-binned: each old bucket's count moves
        to the first new bucket whose bound is at least as large, so counts and sums stay exact
        and only resolution is lost. Series beyond the current cap are folded as usual. A
        snapshot written before series carried the account (version 1) gets ``account_sid``.
        """
        try:
            decoded = json.loads(data)
            version = decoded.get("version")
            if version not in (1, _SNAPSHOT_VERSION):
                raise ValueError(f"unsupported snapshot version {version!r}")
            prefix: _Key = (account_sid,) if version == 1 else ()
            counters = self._decode_counters(decoded["counters"], prefix)
            histograms = self._decode_histograms(decoded["histograms"], prefix)
            overflow = {str(k): int(v) for k, v in decoded.get("overflow", {}).items()}
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as error:
            raise ValueError(f"not a metrics snapshot: {error!r}") from error
        with self._lock:
            self._overflow = dict.fromkeys(_SPECS, 0)
            for name, value in overflow.items():
                if name in self._overflow:
                    self._overflow[name] = value
            for name in _COUNTERS:
                series: dict[_Key, int] = {}
                for key, value in counters.get(name, ()):
                    target = key
                    if key not in series and len(series) >= self._cap:
                        target = self._fold(name, key)
                    series[target] = series.get(target, 0) + value
                self._counters[name] = series
            for name in _HISTOGRAMS:
                hseries: dict[_Key, _Histogram] = {}
                for key, histogram in histograms.get(name, ()):
                    target = key
                    if key not in hseries and len(hseries) >= self._cap:
                        target = self._fold(name, key)
                    if target in hseries:
                        hseries[target].merge(histogram)
                    else:
                        hseries[target] = histogram
                self._histograms[name] = hseries
            self._steps = self._counters[STEPS]
            self._step_durations = self._histograms[STEP_DURATION]

    @staticmethod
    def _decode_counters(
        raw: Mapping[str, Any], prefix: _Key = ()
    ) -> dict[str, list[tuple[_Key, int]]]:
        decoded: dict[str, list[tuple[_Key, int]]] = {}
        for name, rows in raw.items():
            if name not in _COUNTERS:
                raise ValueError(f"unknown counter {name!r} in snapshot")
            width = len(_SPECS[name].labelnames) - len(prefix)
            entries = []
            for row in rows:
                if len(row) != width + 1 or not all(isinstance(v, str) for v in row[:width]):
                    raise ValueError(f"malformed {name} series {row!r}")
                entries.append(((*prefix, *row[:width]), int(row[width])))
            decoded[name] = entries
        return decoded

    def _decode_histograms(
        self, raw: Mapping[str, Any], prefix: _Key = ()
    ) -> dict[str, list[tuple[_Key, _Histogram]]]:
        decoded: dict[str, list[tuple[_Key, _Histogram]]] = {}
        for name, body in raw.items():
            if name not in _HISTOGRAMS:
                raise ValueError(f"unknown histogram {name!r} in snapshot")
            old_bounds = [float(b) for b in body["bounds"]]
            new_bounds = self._bounds[name]
            # Old bucket i (bound old_bounds[i], or +Inf) -> first new bucket with bound >= it.
            mapping = [bisect_left(new_bounds, bound) for bound in old_bounds]
            mapping.append(len(new_bounds))
            width = len(_SPECS[name].labelnames) - len(prefix)
            entries = []
            for labels, counts, total, exemplars in body["series"]:
                if len(labels) != width or len(counts) != len(mapping):
                    raise ValueError(f"malformed {name} series {labels!r}")
                histogram = _Histogram(len(new_bounds) + 1)
                for old_index, count in enumerate(counts):
                    histogram.counts[mapping[old_index]] += int(count)
                for old_index, (trace_id, value) in exemplars.items():
                    histogram.exemplars[mapping[int(old_index)]] = (str(trace_id), float(value))
                histogram.total = float(total)
                entries.append(((*prefix, *(str(label) for label in labels)), histogram))
            decoded[name] = entries
        return decoded


def _check_duration(metric: str, value: float) -> None:
    if value < 0:
        # Skewed input: the caller counts it as an anomaly rather than hide it in a bucket.
        raise ValueError(f"negative duration {value} for {metric}")


class UnitMetrics(Collector):
    """One account's domain series split by work unit (flow), where replicas lease flows.

    A unit's counters and histograms live in their own :class:`StudioMetrics`, snapshotted
    with that unit's commits (``save_unit_snapshot``), so that when the unit moves to another
    replica its series move with it: the new owner restores them and goes on counting, and the
    old one stops exposing them. ``account`` holds what is not a unit's (``flow_info``).

    Two units may hold series with the same labels: a subflow's steps are counted by the unit
    of the execution that ran it, and by the subflow's own unit for its own executions. This
    collector sums such series, as Prometheus' ``sum`` does across replicas.
    """

    def __init__(
        self, account: StudioMetrics, factory: Callable[[], StudioMetrics] | None = None
    ) -> None:
        self.account = account
        self._factory = factory or (
            lambda: StudioMetrics(max_series_per_metric=account.max_series_per_metric)
        )
        self._lock = threading.Lock()
        self._units: dict[str, StudioMetrics] = {}

    def unit(self, flow_sid: str) -> StudioMetrics | None:
        with self._lock:
            return self._units.get(flow_sid)

    def flows(self) -> set[str]:
        with self._lock:
            return set(self._units)

    def acquire(self, flow_sid: str, snapshot: bytes | None, account_sid: str = "") -> None:
        """Start exposing the unit, from its last committed snapshot (none: from zero)."""
        metrics = self._factory()
        if snapshot is not None:
            metrics.restore(snapshot, account_sid=account_sid)
        with self._lock:
            self._units[flow_sid] = metrics

    def release(self, flow_sid: str) -> None:
        """Stop exposing the unit: its new owner exposes it from the committed snapshot."""
        with self._lock:
            self._units.pop(flow_sid, None)

    def describe(self) -> Iterable[Metric]:
        return self.account.describe()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            members = [self.account, *self._units.values()]
        return sum_families(member.collect() for member in members)


def sum_families(sources: Iterable[Iterable[Metric]]) -> list[Metric]:
    """The families of ``sources`` merged by name, samples with the same name and labels summed
    (a histogram's buckets, count and sum alike); the first exemplar seen is kept."""
    merged: dict[str, tuple[Metric, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]]] = {}
    for families in sources:
        for family in families:
            entry = merged.get(family.name)
            if entry is None:
                entry = (Metric(family.name, family.documentation, family.type), {})
                merged[family.name] = entry
            samples = entry[1]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                found = samples.get(key)
                if found is None:
                    samples[key] = [sample.labels, sample.value, sample.exemplar]
                else:
                    found[1] += sample.value
                    if found[2] is None:
                        found[2] = sample.exemplar
    result = []
    for family, samples in merged.values():
        for (name, _), (labels, value, exemplar) in samples.items():
            family.add_sample(name, labels, value, exemplar=exemplar)
        result.append(family)
    return result


class AccountMetrics(Collector):
    """The domain metrics of every followed account, exposed as one set of families, and
    ``twilio_studio_account_info{account_sid, account, status}`` = 1 for each account.

    Each account has its own :class:`StudioMetrics` (snapshotted with that account's state and
    dropped with it); this collector merges their families at scrape time, summing the
    overflow counters by metric. The info metric is Prometheus' info pattern: join on
    ``account_sid`` to show the account's name, which is not a label of the other series, so a
    renamed account keeps its series. A sample::

        # TYPE twilio_studio_account_info gauge
        twilio_studio_account_info{account="Customer 7",account_sid="AC3f...",status="active"} 1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, StudioMetrics | UnitMetrics] = {}
        self._info: dict[str, tuple[str, str]] = {}
        if registry is not None:
            registry.register(self)

    def add(self, account_sid: str, metrics: StudioMetrics | UnitMetrics) -> None:
        with self._lock:
            self._members[account_sid] = metrics

    def remove(self, account_sid: str) -> None:
        """Stop exposing the account's domain series (its info series stays until dropped)."""
        with self._lock:
            self._members.pop(account_sid, None)

    def set_info(self, account_sid: str, name: str, status: str) -> None:
        with self._lock:
            self._info[account_sid] = (name, status)

    def drop_info(self, account_sid: str) -> None:
        with self._lock:
            self._info.pop(account_sid, None)

    def describe(self) -> Iterable[Metric]:
        return [*StudioMetrics().describe(), self._info_family({})]

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            members = list(self._members.values())
            info = dict(self._info)
        merged: dict[str, Metric] = {}
        overflow: dict[str, float] = {}
        for member in members:
            for family in member.collect():
                if family.name == SERIES_OVERFLOW.removesuffix("_total"):
                    for sample in family.samples:
                        if sample.name.endswith("_total"):
                            metric = sample.labels["metric"]
                            overflow[metric] = overflow.get(metric, 0.0) + sample.value
                    continue
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        if not members:
            overflow_name = SERIES_OVERFLOW.removesuffix("_total")
            merged = {f.name: f for f in StudioMetrics().collect() if f.name != overflow_name}
        families = list(merged.values())
        overflow_family = CounterMetricFamily(
            SERIES_OVERFLOW.removesuffix("_total"),
            "Observations folded into an __overflow__ series because their metric reached the "
            "series cap.",
            labels=("metric",),
        )
        for name in _SPECS:
            overflow_family.add_metric((name,), overflow.get(name, 0.0))
        return [*families, overflow_family, self._info_family(info)]

    @staticmethod
    def _info_family(info: Mapping[str, tuple[str, str]]) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            ACCOUNT_INFO,
            "The Twilio accounts the exporter follows: 1 per account, with its name and status.",
            labels=("account_sid", "account", "status"),
        )
        for account_sid, (name, status) in sorted(info.items()):
            family.add_metric((account_sid, name, status), 1)
        return family
