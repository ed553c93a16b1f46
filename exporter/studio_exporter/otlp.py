"""OTLP protobuf straight from span records: one ExportTraceServiceRequest, no SDK spans."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    SpanFlags,
    Status,
)
from opentelemetry.sdk.resources import Resource

from studio_exporter import __version__
from studio_exporter.spans import SpanRecord

DEFAULT_SCOPE_NAME: Final = "twilio-studio-exporter"

_INTERNAL: Final = Span.SpanKind.SPAN_KIND_INTERNAL
# What the SDK encoder writes for a span whose parent is local (or absent): "is_remote is known".
_LOCAL_FLAGS: Final = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_ERROR: Final = Status.StatusCode.STATUS_CODE_ERROR
_UNSET: Final = Status.StatusCode.STATUS_CODE_UNSET


def encode_request(
    records: Sequence[SpanRecord],
    resource: Resource,
    scope_name: str = DEFAULT_SCOPE_NAME,
    scope_version: str = __version__,
) -> bytes:
    """The serialized ExportTraceServiceRequest of ``records``: one resource, one scope.

    Field for field what the SDK's ``encode_spans`` writes for the same spans (kind INTERNAL,
    local parents, status ERROR or UNSET), at about twice its speed: no ReadableSpan, no
    grouping by resource and scope, since every record shares both.
    """
    scope_spans = ScopeSpans(scope=InstrumentationScope(name=scope_name, version=scope_version))
    spans = scope_spans.spans
    for record in records:
        parent = record.parent_span_id
        span = spans.add(
            trace_id=record.trace_id.to_bytes(16, "big"),
            span_id=record.span_id.to_bytes(8, "big"),
            parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
            name=record.name,
            kind=_INTERNAL,
            start_time_unix_nano=record.start_ns,
            end_time_unix_nano=record.end_ns,
            flags=_LOCAL_FLAGS,
        )
        span.status.code = _ERROR if record.status_error else _UNSET
        span.attributes.extend(_key_values(record.attributes))
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=ProtoResource(attributes=_key_values(resource.attributes)),
                scope_spans=[scope_spans],
                schema_url=resource.schema_url,
            )
        ]
    )
    payload: bytes = request.SerializeToString()
    return payload


def _key_values(attributes: Mapping[str, object]) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in attributes.items()]


def _any_value(value: object) -> AnyValue:
    # bool before int: True is an int to isinstance, but OTLP has a kind of its own for it.
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, Iterable):
        # Resource attributes may be sequences (the SDK allows them); span records never are.
        return AnyValue(array_value=ArrayValue(values=[_any_value(v) for v in value]))
    raise TypeError(f"cannot encode an attribute of type {type(value).__name__}")
