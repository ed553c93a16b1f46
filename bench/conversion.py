"""Row 3: steps per second from Studio steps to OTLP protobuf bytes, against bare SDK spans."""

from __future__ import annotations

import time
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from prometheus_client import CollectorRegistry

from studio_exporter.core.domain import Execution, Flow, Step
from studio_exporter.core.pipeline import plan_update
from studio_exporter.sinks.metrics import FlowLabels, StudioMetrics
from studio_exporter.sinks.otlp import encode_request
from studio_exporter.sinks.spans import SpanRecord, execution_span, trace_id_hex, visit_span

from .workload import Workload

BATCH = 512  # spans per OTLP request, as the shipper sends them


@dataclass(frozen=True)
class ConversionResult:
    steps: int
    spans: int
    ours_seconds: float
    floor_seconds: float

    @property
    def ours_rate(self) -> float:
        return self.steps / self.ours_seconds

    @property
    def floor_rate(self) -> float:
        return self.steps / self.floor_seconds


def measure(executions: int = 10_000) -> ConversionResult:
    """Time our conversion of ``executions`` generated executions, then the floor's."""
    workload = Workload(seed=3)
    data = list(workload.executions(0, executions))
    names = {flow.sid: flow.name for flow in workload.flows}
    resource = Resource.create({"service.name": "bench"})
    metrics = StudioMetrics(CollectorRegistry())
    records: list[SpanRecord] = []
    steps = 0
    started = time.process_time()
    for flow, execution, execution_steps in data:
        update = plan_update(execution, execution_steps, flow, exported=set(), first_seen=True)
        labels = FlowLabels(flow.sid, flow.name)
        trace_hex = trace_id_hex(execution.sid)
        metrics.record_execution_started(labels)
        for step in update.new_steps:
            metrics.record_step(FlowLabels(step.flow_sid, names[step.flow_sid]), step)
        for visit in update.closed_visits:
            metrics.record_visit(
                FlowLabels(visit.flow_sid, names[visit.flow_sid]), visit, trace_hex
            )
        for visit in update.span_visits:
            records.append(visit_span(update.path, flow, visit, flow_names=names))
        if update.ended:
            metrics.record_execution_ended(
                labels, update.final_widget, update.duration_seconds, trace_hex
            )
            records.append(execution_span(update.path, flow))
        steps += len(update.new_steps)
        if len(records) >= BATCH:
            encode_request(records, resource)  # what the shipper sends
            records.clear()
    if records:
        encode_request(records, resource)
    ours = time.process_time() - started
    spans = _count_spans(data, names)
    floor = _floor(spans, resource)
    return ConversionResult(steps, len(spans), ours, floor)


def _count_spans(
    data: list[tuple[Flow, Execution, list[Step]]], names: dict[str, str]
) -> list[tuple[str, dict[str, str]]]:
    """The name and attributes of every span ours built (outside the timed part)."""
    out: list[tuple[str, dict[str, str]]] = []
    for flow, execution, execution_steps in data:
        update = plan_update(execution, execution_steps, flow, exported=set(), first_seen=True)
        built = [visit_span(update.path, flow, v, flow_names=names) for v in update.span_visits]
        built.append(execution_span(update.path, flow))
        out.extend((r.name, {k: str(v) for k, v in r.attributes.items()}) for r in built)
    return out


def _floor(spans: list[tuple[str, dict[str, str]]], resource: Resource) -> float:
    """Bare SDK spans with the same names and attributes: started, ended, encoded."""
    provider = TracerProvider(resource=resource)
    tracer = provider.get_tracer("bench")
    started = time.process_time()
    batch: list[ReadableSpan] = []
    for name, attributes in spans:
        span = tracer.start_span(name, attributes=attributes)
        span.end()
        batch.append(span)  # type: ignore[arg-type]
        if len(batch) >= BATCH:
            encode_spans(batch).SerializeToString()
            batch.clear()
    if batch:
        encode_spans(batch).SerializeToString()
    floor = time.process_time() - started
    provider.shutdown()
    return floor
