"""Tests for the OTLP/HTTP test receiver itself, fed with hand-made protobuf requests."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from tests.otlp_receiver import OtlpReceiver, ReceivedSpan, running_receiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as receiver:
        yield receiver


def request_body() -> bytes:
    span = Span(
        trace_id=(7).to_bytes(16, "big"),
        span_id=(9).to_bytes(8, "big"),
        parent_span_id=(3).to_bytes(8, "big"),
        name="ask",
        start_time_unix_nano=10,
        end_time_unix_nano=20,
        attributes=[
            KeyValue(key="s", value=AnyValue(string_value="x")),
            KeyValue(key="i", value=AnyValue(int_value=4)),
            KeyValue(key="b", value=AnyValue(bool_value=True)),
            KeyValue(key="d", value=AnyValue(double_value=1.5)),
        ],
        status=Status(code=Status.STATUS_CODE_ERROR),
    )
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    resource_spans.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value="svc"))
    )
    body: bytes = ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()
    return body


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get("Retry-After", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After", "")


EXPECTED = ReceivedSpan(
    trace_id=7,
    span_id=9,
    parent_span_id=3,
    name="ask",
    start_ns=10,
    end_ns=20,
    attributes={"s": "x", "i": 4, "b": True, "d": 1.5},
    status_code=2,
    resource={"service.name": "svc"},
    scope="",
)


@pytest.mark.parametrize(
    ("encode", "headers"),
    [
        pytest.param(lambda body: body, {}, id="plain"),
        pytest.param(gzip.compress, {"Content-Encoding": "gzip"}, id="gzip"),
    ],
)
def test_decodes_what_it_receives(
    receiver: OtlpReceiver, encode: Callable[[bytes], bytes], headers: dict[str, str]
) -> None:
    body = encode(request_body())
    assert post(receiver.endpoint, body, headers)[0] == 200
    assert receiver.wait_for_spans(1) == [EXPECTED]


def test_refuses_while_down_then_accepts(receiver: OtlpReceiver) -> None:
    receiver.go_down()
    assert post(receiver.endpoint, request_body()) == (503, "0")
    assert post(receiver.endpoint, request_body()) == (503, "0")
    receiver.come_up()
    assert post(receiver.endpoint, request_body())[0] == 200
    assert (receiver.requests, receiver.refused, len(receiver.spans)) == (3, 2, 1)


def test_down_for_a_number_of_requests(receiver: OtlpReceiver) -> None:
    receiver.go_down(requests=1)
    statuses = [post(receiver.endpoint, request_body())[0] for _ in range(2)]
    assert statuses == [503, 200]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        pytest.param("/v1/metrics", b"", 404, id="other-path"),
        pytest.param("/v1/traces", b"\xff\xff not protobuf", 400, id="garbage"),
    ],
)
def test_refuses_what_is_not_a_trace_request(
    receiver: OtlpReceiver, path: str, body: bytes, status: int
) -> None:
    assert post(receiver.base_url + path, body)[0] == status
    assert receiver.spans == []


def test_waiting_for_spans_that_never_come_fails(receiver: OtlpReceiver) -> None:
    with pytest.raises(AssertionError, match="received 0 spans"):
        receiver.wait_for_spans(1, timeout=0.1)
