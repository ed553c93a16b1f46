"""Tests for encode_request: the same OTLP protobuf the SDK encoder writes, built directly."""

from __future__ import annotations

from dataclasses import replace

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from studio_exporter import __version__
from studio_exporter.sinks.otlp import encode_request
from studio_exporter.sinks.spans import SpanRecord, to_readable_spans
from tests.otlp_receiver import decode_request

RESOURCE = Resource({"service.name": "studio-test", "twilio.account.sid": "AC" + "a" * 32})
TRACE = 0x0123456789ABCDEF0123456789ABCDEF


def make_record(span_id: int, parent: int | None = 0x89ABCDEF0123, **changes: object) -> SpanRecord:
    record = SpanRecord(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        name="ask_rating",
        start_ns=1_714_554_000_000_000_001,
        end_ns=1_714_554_090_500_000_000,
        attributes={"twilio.studio.widget.name": "ask_rating", "twilio.studio.event": "failed"},
    )
    return replace(record, **changes)  # type: ignore[arg-type]


RECORDS = [
    make_record(0xA1),
    make_record(0xA2, status_error=True),
    make_record(
        0xA3,
        attributes={"text": "hi", "flag": True, "off": False, "count": 7, "big": 2**62, "x": 2.5},
    ),
    make_record(0x1, parent=None, name="Onboarding", attributes={"twilio.studio.gaps": 2}),
    make_record(
        0xA4,
        name="réponse ✓",
        attributes={"neg": -3, "min": -(2**63), "zero": 0, "empty": "", "unicode": "é✓", "f": -0.0},
    ),
]


def sdk_request(records: list[SpanRecord], resource: Resource) -> ExportTraceServiceRequest:
    return encode_spans(to_readable_spans(records, resource))


@pytest.mark.parametrize(
    "records",
    [
        pytest.param(RECORDS, id="visits-error-typed-attributes-and-root"),
        pytest.param(RECORDS[-1:], id="root-only"),
        pytest.param([], id="empty"),
    ],
)
def test_the_request_is_what_the_sdk_encoder_writes(records: list[SpanRecord]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_request(records, RESOURCE))
    theirs = sdk_request(records, RESOURCE)
    if records:
        # The one intended difference: our scope carries the exporter's version.
        assert ours.resource_spans[0].scope_spans[0].scope.version == __version__
        ours.resource_spans[0].scope_spans[0].scope.version = ""
        assert list(ours.resource_spans[0].scope_spans[0].spans) == list(
            theirs.resource_spans[0].scope_spans[0].spans
        )
        assert ours.resource_spans[0].resource == theirs.resource_spans[0].resource
        assert ours == theirs
    else:
        assert list(ours.resource_spans[0].scope_spans[0].spans) == []


def test_decoded_spans_carry_the_records_fields() -> None:
    decoded = decode_request(encode_request(RECORDS, RESOURCE, scope_name="s", scope_version="9"))
    assert [
        (s.trace_id, s.span_id, s.parent_span_id, s.name, s.start_ns, s.end_ns, s.status_code)
        for s in decoded
    ] == [
        (r.trace_id, r.span_id, r.parent_span_id, r.name, r.start_ns, r.end_ns, 2 * r.status_error)
        for r in RECORDS
    ]
    assert [s.attributes for s in decoded] == [dict(r.attributes) for r in RECORDS]
    typed = decoded[2].attributes
    assert (type(typed["flag"]), type(typed["count"]), type(typed["x"])) == (bool, int, float)
    assert {s.scope for s in decoded} == {"s"}
    assert decoded[0].resource == dict(RESOURCE.attributes)


def test_ids_are_big_endian_and_full_width() -> None:
    request = ExportTraceServiceRequest.FromString(
        encode_request([make_record(0x1, parent=0x2)], RESOURCE)
    )
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("0123456789abcdef0123456789abcdef")
    assert (span.span_id, span.parent_span_id) == (bytes(7) + b"\x01", bytes(7) + b"\x02")


def test_an_attribute_it_cannot_encode_is_refused() -> None:
    record = make_record(0x1, attributes={"bad": object()})
    with pytest.raises(TypeError, match="object"):
        encode_request([record], RESOURCE)


def test_an_integer_beyond_64_bits_is_refused() -> None:
    record = make_record(0x1, attributes={"huge": 2**63})
    with pytest.raises(ValueError, match="64 bits"):
        encode_request([record], RESOURCE)
