"""OTLP protobuf straight from span records: one ExportTraceServiceRequest, no SDK spans."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags, Status
from opentelemetry.sdk.resources import Resource

from studio_exporter import __version__
from studio_exporter.sinks.spans import SpanRecord

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
    local parents, status ERROR or UNSET). The spans are written in protobuf's wire format
    directly: building a message object per span, attribute and value cost 18 us a span,
    more than anything else a span goes through. The resource and scope, once per request,
    go through the generated messages.
    """
    return encode_spans_request(
        [encode_span(record) for record in records], resource, scope_name, scope_version
    )


def encode_spans_request(
    spans: Sequence[bytes],
    resource: Resource,
    scope_name: str = DEFAULT_SCOPE_NAME,
    scope_version: str = __version__,
) -> bytes:
    """``encode_request`` of spans already encoded by :func:`encode_span` (the outbox's)."""
    scope = InstrumentationScope(name=scope_name, version=scope_version).SerializeToString()
    scope_spans = [_field(1, scope)]
    scope_spans.extend(_field(2, span) for span in spans)
    resource_spans = [
        _field(1, ProtoResource(attributes=_key_values(resource.attributes)).SerializeToString()),
        _field(2, b"".join(scope_spans)),
    ]
    if resource.schema_url:
        resource_spans.append(_field(3, resource.schema_url.encode()))
    return _field(1, b"".join(resource_spans))


# Tags (field number << 3 | wire type) of the Span fields written, and of KeyValue/AnyValue.
_TRACE_ID: Final = b"\x0a\x10"  # 1, 16 bytes
_SPAN_ID: Final = b"\x12\x08"  # 2, 8 bytes
_PARENT_SPAN_ID: Final = b"\x22\x08"  # 4, 8 bytes
_NAME: Final = 5
_KIND_INTERNAL: Final = bytes([6 << 3, _INTERNAL])
_START: Final = b"\x39"  # 7, fixed64
_END: Final = b"\x41"  # 8, fixed64
_ATTRIBUTE: Final = 9
_STATUS_ERROR: Final = bytes([15 << 3 | 2, 2, 3 << 3, _ERROR])
_STATUS_UNSET: Final = bytes([15 << 3 | 2, 0])  # present, code left at its default
_FLAGS: Final = b"\x85\x01" + struct.pack("<I", _LOCAL_FLAGS)  # 16, fixed32
_INT64: Final = range(-(2**63), 2**63)
#: Encoded attributes kept for reuse; emptied when full (unique values such as SIDs pass by).
_ATTRIBUTE_CACHE_SIZE: Final = 4096
_ATTRIBUTE_CACHE: dict[tuple[str, type, object], bytes] = {}


def encode_span(record: SpanRecord) -> bytes:
    """One serialized OTLP ``Span`` message."""
    parent = record.parent_span_id
    parts = [
        _TRACE_ID,
        record.trace_id.to_bytes(16, "big"),
        _SPAN_ID,
        record.span_id.to_bytes(8, "big"),
    ]
    if parent is not None:
        parts += [_PARENT_SPAN_ID, parent.to_bytes(8, "big")]
    parts += [
        _field(_NAME, record.name.encode()),
        _KIND_INTERNAL,
        _START,
        struct.pack("<Q", record.start_ns),
        _END,
        struct.pack("<Q", record.end_ns),
    ]
    cache = _ATTRIBUTE_CACHE
    for key, value in record.attributes.items():
        # Most attribute values repeat from span to span (flow, widget, event names): their
        # bytes are kept. The type is part of the key: True == 1 to a dict.
        cached = cache.get((key, type(value), value))
        if cached is None:
            cached = _field(_ATTRIBUTE, _key_value(key, value))
            if len(cache) >= _ATTRIBUTE_CACHE_SIZE:
                cache.clear()
            cache[(key, type(value), value)] = cached
        parts.append(cached)
    parts.append(_STATUS_ERROR if record.status_error else _STATUS_UNSET)
    parts.append(_FLAGS)
    return b"".join(parts)


def _key_value(key: str, value: object) -> bytes:
    # bool before int: True is an int to isinstance, but OTLP has a kind of its own for it.
    if isinstance(value, str):
        encoded = _field(1, value.encode())
    elif isinstance(value, bool):
        encoded = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int):
        if value not in _INT64:
            raise ValueError(f"attribute {key!r}: {value} does not fit in 64 bits")
        encoded = b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(value, float):
        encoded = b"\x21" + struct.pack("<d", value)
    else:
        raise TypeError(f"cannot encode an attribute of type {type(value).__name__}")
    return _field(1, key.encode()) + _field(2, encoded)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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
