"""Tests for the span senders: real OTLP/HTTP and gRPC receivers, and the OTLP-JSON lines file."""

from __future__ import annotations

import base64
import json
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.sdk.resources import Resource

from studio_exporter.core.domain import ENDED, Execution, ExecutionPath, Flow, Step, Visit
from studio_exporter.sinks.otlp import encode_request
from studio_exporter.sinks.span_sink import (
    DEFAULT_SERVICE_NAME,
    JsonLinesSender,
    OtlpGrpcSender,
    OtlpHttpSender,
    make_span_sender,
    otlp_backoff,
    otlp_json_line,
    otlp_secrets,
    read_otlp_json_lines,
    resource_from_env,
)
from studio_exporter.sinks.spans import SpanRecord, path_spans
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, decode_request, running_receiver

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


def payload_of(records: list[SpanRecord], env: dict[str, str] | None = None) -> bytes:
    return encode_request(records, resource_from_env(env or {}, ACCOUNT))


def send(env: dict[str, str], records: list[SpanRecord]) -> bool:
    sender = make_span_sender(env, default_file=Path("/nonexistent/unused.jsonl"))
    try:
        return sender.send(payload_of(records, env), len(records))
    finally:
        sender.shutdown()


def assert_arrived_as_built(received_spans: list[ReceivedSpan], records: list[SpanRecord]) -> None:
    received = {span.span_id: span for span in received_spans}
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
        assert span.resource["twilio.account.sid"] == ACCOUNT
        assert span.scope == "twilio-studio-exporter"


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
    assert send(env, records) is True
    received = receiver.wait_for_spans(len(records))
    assert_arrived_as_built(received, records)
    assert {span.resource["service.name"] for span in received} == {"studio-test"}
    assert receiver.headers[-1]["content-type"] == "application/x-protobuf"
    by_id = {span.span_id: span for span in received}
    assert by_id[0xA2].end_ns - by_id[0xA2].start_ns == 89_500_000_000


def test_headers_and_gzip_come_from_the_env_mapping(receiver: OtlpReceiver) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url,
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-tenant=studio,authorization=Bearer%20t0k",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    assert send(env, make_records()) is True
    assert receiver.content_encodings == ["gzip"]
    assert len(receiver.wait_for_spans(3)) == 3  # the receiver could gunzip and decode it
    assert receiver.headers[-1]["x-tenant"] == "studio"
    assert receiver.headers[-1]["authorization"] == "Bearer t0k"


def test_a_receiver_down_for_a_while_gets_the_spans_on_retry(receiver: OtlpReceiver) -> None:
    receiver.go_down(requests=2)
    assert send({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url}, make_records()) is True
    assert receiver.refused == 2
    assert len(receiver.wait_for_spans(3)) == 3  # once each, not once per attempt


def test_a_receiver_that_stays_down_is_a_failure_not_an_exception(
    receiver: OtlpReceiver,
) -> None:
    receiver.go_down()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base_url, "OTEL_EXPORTER_OTLP_TIMEOUT": "5"}
    assert send(env, make_records()) is False
    assert receiver.spans == []
    assert 1 < receiver.refused <= 6  # retried, but a bounded number of times


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        pytest.param({}, JsonLinesSender, id="nothing-set-file"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, JsonLinesSender, id="empty-file"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, OtlpHttpSender, id="http"
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            OtlpGrpcSender,
            id="grpc",
        ),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            OtlpHttpSender,
            id="traces-protocol-wins",
        ),
    ],
)
def test_the_sender_follows_the_environment(
    tmp_path: Path, env: dict[str, str], kind: type
) -> None:
    sender = make_span_sender(env, default_file=tmp_path / "spans.jsonl")
    try:
        assert isinstance(sender, kind)
    finally:
        sender.shutdown()


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
        make_span_sender(env, default_file=tmp_path / "spans.jsonl")


def test_the_json_lines_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "spans.jsonl"
    sender = make_span_sender({}, default_file=path)
    records = make_records()
    assert sender.send(payload_of(records[:2]), 2) is True
    assert sender.send(payload_of(records[2:]), 1) is True
    sender.shutdown()

    lines = path.read_text().splitlines()
    assert len(lines) == 2  # one ExportTraceServiceRequest per send
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
    # The decoded requests are the very requests that were sent.
    assert [request.SerializeToString() for request in read_otlp_json_lines(path)] == [
        payload_of(records[:2]),
        payload_of(records[2:]),
    ]
    assert sender.send(payload_of(records), 3) is False  # shut down


def test_otlp_secrets_are_header_values_and_endpoint_user_info() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=k3y%2Fvalue,x-tenant=acme",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otlp-user:t0ken@collector:4318/v1/traces",
    }
    secrets = set(otlp_secrets(env))
    assert {"k3y/value", "acme", "otlp-user", "t0ken"} <= secrets
    assert otlp_secrets({}) == []


def test_the_span_file_is_private_from_creation(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        sender = JsonLinesSender(tmp_path / "spans.jsonl")
        assert sender.send(payload_of(make_records()), 3)
        sender.shutdown()
    finally:
        os.umask(previous)
    assert (tmp_path / "spans.jsonl").stat().st_mode & 0o777 == 0o600


def test_an_unwritable_file_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    sender = JsonLinesSender(blocker / "spans.jsonl")
    assert sender.send(payload_of(make_records()), 3) is False


class Collector(TraceServiceServicer):
    """A gRPC trace receiver: answers the first ``refuse`` calls UNAVAILABLE, keeps the rest."""

    def __init__(self, refuse: int = 0) -> None:
        self.refuse = refuse
        self.calls = 0
        self.requests: list[bytes] = []
        self.metadata: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def Export(  # noqa: N802 (the generated servicer's name)
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        with self._lock:
            self.calls += 1
            self.metadata.append(dict(context.invocation_metadata()))
            if self.calls <= self.refuse:
                context.abort(grpc.StatusCode.UNAVAILABLE, "collector restarting")
            self.requests.append(request.SerializeToString())
        return ExportTraceServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    servicer = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("compression", [pytest.param("none", id="plain"), "gzip"])
def test_spans_arrive_over_otlp_grpc_exactly_as_built(
    collector: tuple[Collector, str], compression: str
) -> None:
    servicer, endpoint = collector
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=studio",
        "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
    }
    records = make_records()
    assert send(env, records) is True
    assert servicer.requests == [payload_of(records)]
    assert_arrived_as_built(decode_request(servicer.requests[0]), records)
    assert servicer.metadata[-1]["x-tenant"] == "studio"


def test_a_grpc_receiver_unavailable_once_gets_the_spans_on_retry(
    collector: tuple[Collector, str],
) -> None:
    servicer, endpoint = collector
    servicer.refuse = 1
    sender = OtlpGrpcSender(endpoint, {}, timeout=5, initial_backoff=0.01)
    try:
        assert sender.send(payload_of(make_records()), 3) is True
    finally:
        sender.shutdown()
    assert servicer.calls == 2
    assert len(servicer.requests) == 1


def test_a_grpc_receiver_that_stays_down_is_a_failure_not_an_exception(
    collector: tuple[Collector, str],
) -> None:
    servicer, endpoint = collector
    servicer.refuse = 100
    sender = OtlpGrpcSender(endpoint, {}, timeout=5, initial_backoff=0.01)
    try:
        assert sender.send(payload_of(make_records()), 3) is False
    finally:
        sender.shutdown()
    assert 1 < servicer.calls <= 6
    assert servicer.requests == []


def test_an_http_receiver_down_once_gets_the_spans_after_backoff(receiver: OtlpReceiver) -> None:
    receiver.go_down(1)
    sender = OtlpHttpSender(receiver.endpoint, {}, timeout=5, compression="gzip")
    try:
        assert sender.send(payload_of(make_records()), 3) is True
    finally:
        sender.shutdown()
    assert (receiver.refused, receiver.requests) == (1, 2)
    assert_arrived_as_built(receiver.wait_for_spans(3), make_records())


def test_an_http_retry_after_date_is_waited_for(receiver: OtlpReceiver) -> None:
    receiver.go_down(1)
    receiver.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=1), usegmt=True)
    sender = OtlpHttpSender(receiver.endpoint, {}, timeout=5, initial_backoff=30)
    try:
        assert sender.send(payload_of(make_records()), 3) is True  # 30 s backoff: not used
    finally:
        sender.shutdown()
    assert (receiver.refused, receiver.requests) == (1, 2)


def test_an_http_retry_after_beyond_the_timeout_gives_up_at_once(receiver: OtlpReceiver) -> None:
    receiver.go_down(1)
    receiver.retry_after = "86400"
    sender = OtlpHttpSender(receiver.endpoint, {}, timeout=5, initial_backoff=0.01)
    try:
        assert sender.send(payload_of(make_records()), 3) is False
    finally:
        sender.shutdown()
    assert receiver.requests == 1  # the shipper keeps the spans and tries again later


@pytest.mark.parametrize("initial", [pytest.param(1.0, id="sdk"), pytest.param(0.01, id="fast")])
def test_otlp_backoff_doubles_within_twenty_percent(initial: float) -> None:
    policy = otlp_backoff(initial)
    rng = random.Random(5)
    for attempt in range(5):
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        expected = initial * 2**attempt
        assert all(0.8 * expected <= wait <= 1.2 * expected for wait in waits)
        assert min(waits) < 0.85 * expected
        assert max(waits) > 1.15 * expected


def test_an_http_refusal_that_retrying_cannot_fix_fails_at_once(receiver: OtlpReceiver) -> None:
    sender = OtlpHttpSender(receiver.base_url + "/wrong/path", {}, timeout=5)
    try:
        assert sender.send(payload_of(make_records()), 3) is False
    finally:
        sender.shutdown()
    assert receiver.requests == 0  # the 404 came before the receiver counted a request


def test_nothing_listening_is_a_failure_not_an_exception() -> None:
    sender = OtlpHttpSender("http://127.0.0.1:9/v1/traces", {}, timeout=0.5, initial_backoff=0.01)
    try:
        assert sender.send(payload_of(make_records()), 3) is False
    finally:
        sender.shutdown()


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


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param({"text": "hi", "empty": "", "yes": True, "no": False}, id="str-bool"),
        pytest.param({"n": 7, "zero": 0, "neg": -(2**63), "x": 2.5, "mz": -0.0}, id="numbers"),
        pytest.param({"nan": float("nan"), "inf": float("inf")}, id="non-finite-falls-back"),
    ],
)
def test_the_json_line_is_protobufs_json_mapping(
    attributes: dict[str, str | bool | int | float],
) -> None:
    records = [
        replace(record, attributes=attributes, status_error=index == 0)
        for index, record in enumerate(make_records())
    ]
    resource = Resource({"service.name": "s", "list": ("a", "b"), "none": ()})
    payload = encode_request(records, resource)
    expected = json_format.MessageToDict(
        ExportTraceServiceRequest.FromString(payload), use_integers_for_enums=True
    )
    for span in expected["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                span[key] = base64.b64decode(span[key]).hex()
    assert json.loads(otlp_json_line(payload)) == expected
