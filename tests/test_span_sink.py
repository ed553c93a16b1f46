"""Tests for the span sinks: real OTLP/HTTP to a receiver, and the OTLP-JSON lines file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from studio_exporter.domain import ENDED, Execution, ExecutionPath, Flow, Step, Visit
from studio_exporter.span_sink import (
    DEFAULT_SERVICE_NAME,
    JsonLinesSpanExporter,
    make_span_exporter,
    read_otlp_json_lines,
    resource_from_env,
)
from studio_exporter.spans import SpanRecord, path_spans, to_readable_spans
from tests.otlp_receiver import OtlpReceiver, running_receiver

ACCOUNT = "AC" + "a" * 32
FLOW = Flow("FW" + "b" * 32, ACCOUNT, "Onboarding", "published", 1)
EXECUTION_SID = "FN" + "0123456789abcdef" * 2
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def make_records() -> list[SpanRecord]:
    """Trigger -> ask (fails after 90.5 s) -> Ended: two visit spans and the root."""

    def step(number: int, widget: str, next_widget: str, seconds: float, event: str) -> Step:
        return Step(
            f"FT{number:032x}", FLOW.sid, EXECUTION_SID, event, widget, next_widget,
            "send-message", T0 + timedelta(seconds=seconds),
        )  # fmt: skip

    first = step(0xA1, "Trigger", "ask", 1, "incomingMessage")
    last = step(0xA2, "ask", ENDED, 90.5, "failed")
    visits = (
        Visit("Trigger", "trigger", FLOW.sid, T0, None, first),
        Visit("ask", "send-message", FLOW.sid, first.date_created, first, last),
    )
    execution = Execution(EXECUTION_SID, FLOW.sid, ACCOUNT, "ended", T0)
    return path_spans(ExecutionPath(execution, (first, last), visits), FLOW)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as receiver:
        yield receiver


def send(env: dict[str, str], records: list[SpanRecord]) -> SpanExportResult:
    exporter = make_span_exporter(env, default_file=Path("/nonexistent/unused.jsonl"))
    try:
        return exporter.export(to_readable_spans(records, resource_from_env(env, ACCOUNT)))
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    "env_of",
    [
        pytest.param(lambda r: {"OTEL_EXPORTER_OTLP_ENDPOINT": r.base_url}, id="base-endpoint"),
        pytest.param(
            lambda r: {"OTEL_EXPORTER_OTLP_ENDPOINT": r.base_url + "/"}, id="trailing-slash"
        ),
        pytest.param(
            lambda r: {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": r.endpoint,
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/elsewhere",
            },
            id="traces-endpoint-wins",
        ),
    ],
)
def test_spans_arrive_over_otlp_http_exactly_as_built(
    receiver: OtlpReceiver, env_of: Callable[[OtlpReceiver], dict[str, str]]
) -> None:
    env = env_of(receiver)
    env["OTEL_SERVICE_NAME"] = "studio-test"
    records = make_records()
    assert send(env, records) is SpanExportResult.SUCCESS
    received = {span.span_id: span for span in receiver.wait_for_spans(len(records))}
    assert len(received) == len(records) == 3
    for record in records:
        span = received[record.span_id]
        assert (span.trace_id, span.parent_span_id, span.name) == (
            record.trace_id,
            record.parent_span_id,
            record.name,
        )
        assert (span.start_ns, span.end_ns) == (record.start_ns, record.end_ns)
        assert span.attributes == dict(record.attributes)
        assert span.status_code == (2 if record.status_error else 0)
        assert span.resource["service.name"] == "studio-test"
        assert span.resource["twilio.account.sid"] == ACCOUNT
        assert span.scope == "twilio-studio-exporter"
    assert received[0xA2].end_ns - received[0xA2].start_ns == 89_500_000_000


def test_headers_and_gzip_come_from_the_env_mapping(receiver: OtlpReceiver) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=studio,authorization=Bearer%20t0k",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    assert send(env, make_records()) is SpanExportResult.SUCCESS
    assert receiver.content_encodings == ["gzip"]
    assert receiver.headers[-1]["x-tenant"] == "studio"
    assert receiver.headers[-1]["authorization"] == "Bearer t0k"


def test_a_receiver_down_for_a_while_gets_the_spans_on_retry(receiver: OtlpReceiver) -> None:
    receiver.go_down(requests=2)
    assert send({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url}, make_records()) is (
        SpanExportResult.SUCCESS
    )
    assert receiver.refused == 2
    assert len(receiver.wait_for_spans(3)) == 3  # once each, not once per attempt


def test_a_receiver_that_stays_down_is_a_failure_not_an_exception(
    receiver: OtlpReceiver,
) -> None:
    receiver.go_down()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
    assert send(env, make_records()) is SpanExportResult.FAILURE
    assert receiver.spans == []


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        pytest.param({}, JsonLinesSpanExporter, id="nothing-set-file"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, JsonLinesSpanExporter, id="empty-file"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, HttpSpanExporter, id="http"
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            GrpcSpanExporter,
            id="grpc",
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            HttpSpanExporter,
            id="traces-protocol-wins",
        ),
    ],
)
def test_the_exporter_follows_the_environment(
    tmp_path: Path, env: dict[str, str], kind: type
) -> None:
    exporter = make_span_exporter(env, default_file=tmp_path / "spans.jsonl")
    try:
        assert isinstance(exporter, kind)
    finally:
        exporter.shutdown()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "http/json", id="protocol"),
        pytest.param({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "TIMEOUT", id="timeout"),
        pytest.param({"OTEL_EXPORTER_OTLP_TIMEOUT": "-1"}, "TIMEOUT", id="negative-timeout"),
        pytest.param({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "COMPRESSION", id="compression"),
    ],
)
def test_values_it_cannot_use_are_refused(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", **env}
    with pytest.raises(ValueError, match=message):
        make_span_exporter(env, default_file=tmp_path / "spans.jsonl")


def test_the_json_lines_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spans.jsonl"
    exporter = make_span_exporter({}, default_file=path)
    records = make_records()
    resource = resource_from_env({}, ACCOUNT)
    assert exporter.export(to_readable_spans(records[:2], resource)) is SpanExportResult.SUCCESS
    assert exporter.export(to_readable_spans(records[2:], resource)) is SpanExportResult.SUCCESS
    exporter.shutdown()

    lines = path.read_text().splitlines()
    assert len(lines) == 2  # one ExportTraceServiceRequest per export call
    first = json.loads(lines[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert first["traceId"] == EXECUTION_SID[2:]  # hex, as OTLP/JSON writes ids
    assert first["spanId"] == f"{records[0].span_id:016x}"

    decoded = [
        span
        for request in read_otlp_json_lines(path)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert [
        (
            int.from_bytes(s.trace_id, "big"),
            int.from_bytes(s.span_id, "big"),
            s.name,
            s.start_time_unix_nano,
            s.end_time_unix_nano,
        )
        for s in decoded
    ] == [(r.trace_id, r.span_id, r.name, r.start_ns, r.end_ns) for r in records]
    assert exporter.export(to_readable_spans(records, resource)) is SpanExportResult.FAILURE


def test_an_unwritable_file_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    exporter = JsonLinesSpanExporter(blocker / "spans.jsonl")
    spans = to_readable_spans(make_records(), resource_from_env({}, ACCOUNT))
    assert exporter.export(spans) is SpanExportResult.FAILURE


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, {"service.name": DEFAULT_SERVICE_NAME}, id="default"),
        pytest.param(
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs,deployment.environment=prod"},
            {"service.name": "from-attrs", "deployment.environment": "prod"},
            id="resource-attributes",
        ),
        pytest.param(
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=a", "OTEL_SERVICE_NAME": "b"},
            {"service.name": "b"},
            id="service-name-wins",
        ),
        pytest.param(
            {"OTEL_RESOURCE_ATTRIBUTES": "team=a%2Cb%20c, ,twilio.account.sid=spoofed"},
            {"team": "a,b c", "twilio.account.sid": ACCOUNT},
            id="percent-decoded-and-account-wins",
        ),
    ],
)
def test_resource_from_env(env: dict[str, str], expected: dict[str, str]) -> None:
    attributes = dict(resource_from_env(env, ACCOUNT).attributes)
    assert attributes["twilio.account.sid"] == ACCOUNT
    assert attributes["telemetry.sdk.language"] == "python"
    for key, value in expected.items():
        assert attributes[key] == value


@pytest.mark.parametrize(
    ("env", "account"),
    [
        pytest.param({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, ACCOUNT, id="not-key-value"),
        pytest.param({}, "AC123", id="bad-account-sid"),
    ],
)
def test_resource_from_env_refuses_bad_input(env: dict[str, str], account: str) -> None:
    with pytest.raises(ValueError, match=r"OTEL_RESOURCE_ATTRIBUTES|account SID"):
        resource_from_env(env, account)
