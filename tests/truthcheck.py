"""Compare the exporter's metrics with the simulator's ground truth (``/_simulator/truth``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector


def samples(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` in the registry, with its labels."""
    found = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


class _Together(Collector):
    def __init__(self, registries: Sequence[CollectorRegistry]) -> None:
        self._registries = registries

    def collect(self) -> Iterable[Metric]:
        for registry in self._registries:
            yield from registry.collect()


def together(*registries: CollectorRegistry) -> CollectorRegistry:
    """The samples of several replicas in one registry: ``samples`` and ``metric_mismatches``
    add up equal series, so the truth is compared with the replicas' sum."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Together(registries))
    return registry


def metric_mismatches(
    registry: CollectorRegistry,
    truth: Mapping[str, Any],
    unknowable: Mapping[tuple[str, str], tuple[int, int]] | None = None,
) -> list[str]:
    """Every difference between the exported metrics and the truth (empty when they agree).

    ``unknowable`` maps (flow sid, widget) to the visits (count, duration sum) the exporter
    exported for executions whose visits the truth leaves out (``executions_order_ambiguous``):
    they are taken off before comparing.
    """
    problems: list[str] = []

    def compare(what: str, got: Mapping[Any, float], want: Mapping[Any, float]) -> None:
        for key in sorted(set(got) | set(want), key=repr):
            if got.get(key, 0) != want.get(key, 0):
                problems.append(
                    f"{what} {key}: exported {got.get(key, 0)}, truth {want.get(key, 0)}"
                )

    transitions: Counter[tuple[str, str, str, str]] = Counter()
    for labels, value in samples(registry, "twilio_studio_steps_total"):
        transitions[
            (labels["flow_sid"], labels["widget"], labels["event"], labels["next_widget"])
        ] += int(value)
    want_transitions = {
        (t["flow_sid"], t["from"], t["event"], t["to"]): t["count"] for t in truth["transitions"]
    }
    compare("transition", transitions, want_transitions)

    visits: Counter[tuple[str, str]] = Counter()
    for labels, value in samples(registry, "twilio_studio_step_duration_seconds_count"):
        visits[(labels["flow_sid"], labels["widget"])] += int(value)
    durations: Counter[tuple[str, str]] = Counter()
    for labels, value in samples(registry, "twilio_studio_step_duration_seconds_sum"):
        durations[(labels["flow_sid"], labels["widget"])] += round(value)
    for key, (count, seconds) in (unknowable or {}).items():
        visits[key] -= count
        durations[key] -= seconds
    want_visits: dict[tuple[str, str], int] = {}
    want_durations: dict[tuple[str, str], int] = {}
    for flow_sid, flow in truth["flows"].items():
        for widget, stats in flow["widgets"].items():
            if stats["visits"]:
                want_visits[(flow_sid, widget)] = stats["visits"]
                want_durations[(flow_sid, widget)] = stats["duration_seconds_sum"]
    compare("visits", visits, want_visits)
    compare("visit duration sum", durations, want_durations)

    def per_flow(name: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for labels, value in samples(registry, name):
            counts[labels["flow_sid"]] += round(value)
        return counts

    flows = truth["flows"]
    compare(
        "executions started",
        per_flow("twilio_studio_executions_started_total"),
        {sid: f["executions_started"] for sid, f in flows.items() if f["executions_started"]},
    )
    compare(
        "executions ended",
        per_flow("twilio_studio_executions_ended_total"),
        {sid: f["executions_ended"] for sid, f in flows.items() if f["executions_ended"]},
    )
    compare(
        "execution duration sum",
        per_flow("twilio_studio_execution_duration_seconds_sum"),
        {
            sid: f["execution_duration_seconds_sum"]
            for sid, f in flows.items()
            if f["execution_duration_seconds_sum"]
        },
    )
    finals: Counter[tuple[str, str]] = Counter()
    for labels, value in samples(registry, "twilio_studio_executions_ended_total"):
        finals[(labels["flow_sid"], labels["final_widget"])] += int(value)
    compare(
        "final widget",
        finals,
        {
            (sid, widget): count
            for sid, f in flows.items()
            for widget, count in f["final_widgets"].items()
        },
    )
    return problems


def widget_type_mismatches(registry: CollectorRegistry, truth: Mapping[str, Any]) -> list[str]:
    """Steps exported with another widget type than the simulated flow's definition has."""
    problems = []
    for labels, value in samples(registry, "twilio_studio_steps_total"):
        widgets = truth["flows"].get(labels["flow_sid"], {}).get("widgets", {})
        want = widgets.get(labels["widget"], {}).get("type")
        if value and labels["widget_type"] != want:
            problems.append(
                f"{labels['flow_sid']} {labels['widget']}: exported type "
                f"{labels['widget_type']!r}, definition {want!r}"
            )
    return problems


def expected_span_count(truth: Mapping[str, Any]) -> int:
    """One span per closed visit plus one root span per ended execution."""
    visits = sum(
        int(stats["visits"])
        for flow in truth["flows"].values()
        for stats in flow["widgets"].values()
    )
    ended = sum(int(flow["executions_ended"]) for flow in truth["flows"].values())
    return visits + ended
