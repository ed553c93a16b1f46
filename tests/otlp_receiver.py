"""A real OTLP/HTTP trace receiver for tests: decodes the protobuf requests and keeps the spans."""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

AttributeValue: TypeAlias = str | bool | int | float | tuple[Any, ...] | None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, decoded back into plain Python values."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, AttributeValue]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, AttributeValue] = field(default_factory=dict)
    scope: str = ""


def _value(any_value: Any) -> AttributeValue:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    if kind == "kvlist_value":
        return tuple((kv.key, _value(kv.value)) for kv in any_value.kvlist_value.values)
    value: AttributeValue = getattr(any_value, kind)
    return value


def _attributes(key_values: Any) -> dict[str, AttributeValue]:
    return {kv.key: _value(kv.value) for kv in key_values}


def decode_request(body: bytes) -> list[ReceivedSpan]:
    """The spans of one serialized ExportTraceServiceRequest."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=int.from_bytes(span.trace_id, "big"),
                        span_id=int.from_bytes(span.span_id, "big"),
                        parent_span_id=int.from_bytes(span.parent_span_id, "big")
                        if span.parent_span_id
                        else None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        status_code=span.status.code,
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


class OtlpReceiver:
    """OTLP/HTTP on 127.0.0.1 at a free port: POST /v1/traces, protobuf, optionally gzipped.

    ``go_down()`` makes it answer 503 (with ``Retry-After: 0`` so the SDK retries at once) to
    every request, or to the next ``requests`` ones; ``come_up()`` ends that. ``retry_after``
    is the header's value (either form RFC 9110 allows).
    """

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0  # every POST, refused ones included
        self.refused = 0
        self.retry_after = "0"
        self.content_encodings: list[str] = []
        self.headers: list[dict[str, str]] = []  # of every request, names in lower case
        self._down_for: int | None = 0  # None: down until come_up()
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/v1/traces"

    def start(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def go_down(self, requests: int | None = None) -> None:
        with self._changed:
            self._down_for = requests

    def come_up(self) -> None:
        with self._changed:
            self._down_for = 0

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """The spans received once there are at least ``count`` (or AssertionError)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.spans) >= count, timeout=timeout):
                raise AssertionError(f"received {len(self.spans)} spans, expected {count}")
            return list(self.spans)

    def _accept(self, body: bytes, encoding: str) -> int:
        with self._changed:
            self.requests += 1
            self.content_encodings.append(encoding)
            if self._down_for is None or self._down_for > 0:
                if self._down_for is not None:
                    self._down_for -= 1
                self.refused += 1
                return 503
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        try:
            spans = decode_request(body)
        except Exception:
            return 400
        with self._changed:
            self.spans.extend(spans)
            self._changed.notify_all()
        return 200

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if self.path != "/v1/traces":
                    self._reply(404, b"")
                    return
                with receiver._changed:
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                status = receiver._accept(body, self.headers.get("Content-Encoding", ""))
                payload = ExportTraceServiceResponse().SerializeToString() if status == 200 else b""
                self._reply(status, payload)

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                if status == 503:
                    self.send_header("Retry-After", receiver.retry_after)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


@contextmanager
def running_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
