"""Where spans go: OTLP (http/protobuf or gRPC) per the OTEL_* variables, or an OTLP-JSON file.

Every sender takes one request already encoded by :func:`studio_exporter.sinks.otlp.encode_request`.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import math
import os
import re
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import unquote, urlparse

import httpx
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.util.re import parse_env_headers

from studio_exporter import __version__
from studio_exporter.core.backoff import Backoff, parse_retry_after

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "twilio-studio-exporter"
PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
DEFAULT_PROTOCOL: Final = PROTOCOL_HTTP
ACCOUNT_SID_ATTRIBUTE: Final = "twilio.account.sid"
#: Seconds a send may take, retries included, when OTEL_EXPORTER_OTLP_TIMEOUT is unset (the SDK's).
DEFAULT_TIMEOUT: Final = 10.0
#: Attempts per send at most: a receiver answering ``Retry-After: 0`` is not hammered for the
#: whole timeout. The shipper keeps the spans and tries again later anyway.
MAX_ATTEMPTS: Final = 6

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_TRACES_PATH: Final = "v1/traces"
_GRPC_EXPORT: Final = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRY_HTTP_STATUSES: Final = frozenset({429, 502, 503, 504})
# The keys the OTLP/JSON mapping writes as hex where proto3 JSON would write base64.
_ID_KEYS: Final = ("traceId", "spanId", "parentSpanId")


class SpanSender(Protocol):
    """Delivers encoded ExportTraceServiceRequests; never raises for a failed delivery."""

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        """Deliver one request of ``count`` spans; True once the receiver accepted it.

        ``timeout`` caps the seconds the delivery may take, retries included, below the
        sender's own (a stopping exporter has a few seconds left, not the configured ten).
        """
        ...

    def shutdown(self) -> None:
        """Release connections and files; later sends fail."""
        ...


def _get(env: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set to a non-empty value (the spec treats empty as unset)."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def otlp_configured(env: Mapping[str, str]) -> bool:
    """True when an OTLP endpoint is set, so spans go to a collector rather than the file."""
    return (
        _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") is not None
    )


def make_span_sender(env: Mapping[str, str], *, default_file: Path) -> SpanSender:
    """The span sender the environment asks for.

    With ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, an OTLP
    sender speaking ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``
    (``http/protobuf``, the default, or ``grpc``); its endpoint, headers, timeout (seconds, as
    the Python SDK reads it), compression and certificates are read from ``env``. Otherwise a
    :class:`JsonLinesSender` writing ``default_file``.
    Raises ValueError, naming the variable, for a value it cannot use.
    """
    if not otlp_configured(env):
        return JsonLinesSender(default_file)
    protocol = _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or DEFAULT_PROTOCOL
    if protocol == PROTOCOL_HTTP:
        return _http_sender(env)
    if protocol == PROTOCOL_GRPC:
        return _grpc_sender(env)
    raise ValueError(
        f"OTLP protocol {protocol!r} is not supported: use {PROTOCOL_HTTP!r} or {PROTOCOL_GRPC!r}"
    )


def _headers(env: Mapping[str, str]) -> dict[str, str]:
    raw = _get(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or ""
    return dict(parse_env_headers(raw, liberal=True))


def otlp_secrets(env: Mapping[str, str]) -> list[str]:
    """What the OTLP settings hold that logs must never show: every header value (they are
    often API keys) and the user info of the endpoints (``https://user:token@host``)."""
    secrets: list[str] = []
    for name in ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"):
        raw = env.get(name)
        for value in parse_env_headers(raw or "", liberal=True).values():
            secrets += [value, unquote(value)]
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        parsed = urlparse(env.get(name) or "")
        for part in (parsed.username, parsed.password):
            if part:
                secrets += [part, unquote(part)]
    return [secret for secret in dict.fromkeys(secrets) if secret]


def _timeout(env: Mapping[str, str]) -> float | None:
    names = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    raw = _get(env, *names)
    if raw is None:
        return None
    try:
        timeout = float(raw)
    except ValueError:
        timeout = -1.0
    if timeout <= 0:
        raise ValueError(f"{'/'.join(names)} must be a positive number of seconds, not {raw!r}")
    return timeout


def _compression(env: Mapping[str, str]) -> str:
    names = ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
    value = (_get(env, *names) or "none").lower()
    if value not in {"none", "gzip", "deflate"}:
        raise ValueError(f"{'/'.join(names)} must be none, gzip or deflate, not {value!r}")
    return value


def _tls_files(env: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """The CA certificate, client key and client certificate files, traces-specific first."""
    return (
        _get(env, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        _get(env, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        _get(
            env,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
    )


def _http_sender(env: Mapping[str, str]) -> OtlpHttpSender:
    endpoint = _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint is None:
        base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or ""
        endpoint = f"{base.removesuffix('/')}/{_TRACES_PATH}"
    certificate, client_key, client_certificate = _tls_files(env)
    return OtlpHttpSender(
        endpoint,
        _headers(env),
        _timeout(env) or DEFAULT_TIMEOUT,
        _compression(env),
        certificate=certificate,
        client_key=client_key,
        client_certificate=client_certificate,
    )


def _grpc_sender(env: Mapping[str, str]) -> OtlpGrpcSender:
    endpoint = _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    assert endpoint is not None  # make_span_sender only comes here with one
    insecure_raw = _get(env, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
    certificate, client_key, client_certificate = _tls_files(env)
    return OtlpGrpcSender(
        endpoint,
        _headers(env),
        _timeout(env) or DEFAULT_TIMEOUT,
        _compression(env),
        insecure=None if insecure_raw is None else insecure_raw.lower() == "true",
        certificate=certificate,
        client_key=client_key,
        client_certificate=client_certificate,
    )


class _Retrier:
    """Attempts within a deadline: exponential backoff with jitter, or the server's delay."""

    def __init__(self, timeout: float, backoff: Backoff, stopped: threading.Event) -> None:
        self.deadline = time.monotonic() + timeout
        self.backoff = backoff
        self.attempts = 0
        # Only waits chosen by the backoff grow it: a Retry-After wait does not.
        self._backoffs = 0
        self._stopped = stopped

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def wait(self, delay: float | None = None) -> bool:
        """Sleep before the next attempt; False when none fits in the deadline or attempts."""
        self.attempts += 1
        if delay is None:
            delay = self.backoff.delay(self._backoffs)
            self._backoffs += 1
        if self.attempts >= MAX_ATTEMPTS or delay >= self.remaining():
            return False
        return not self._stopped.wait(delay)


def otlp_backoff(initial: float) -> Backoff:
    """The OpenTelemetry SDK's retry waits: ``initial``, twice that, ... each within +-20 %
    (a policy's jitter only shortens: its ceiling is the +20 %, less up to a third of it)."""
    return Backoff(base=1.2 * initial, jitter=1 / 3)


def _within(configured: float, cap: float | None) -> float:
    return configured if cap is None else min(configured, cap)


def _ssl_context(
    certificate: str | None, client_key: str | None, client_certificate: str | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certificate)
    if client_certificate is not None:
        context.load_cert_chain(client_certificate, keyfile=client_key)
    return context


class OtlpHttpSender:
    """OTLP/HTTP: POSTs each request as ``application/x-protobuf`` to the traces endpoint.

    Retries 429, 502, 503, 504 and connection errors with exponential backoff, or after the
    ``Retry-After`` the receiver asked for, while the attempt fits in ``timeout`` seconds.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT,
        compression: str = "none",
        *,
        certificate: str | None = None,
        client_key: str | None = None,
        client_certificate: str | None = None,
        initial_backoff: float = 1.0,
    ) -> None:
        if compression not in {"none", "gzip", "deflate"}:
            raise ValueError(f"compression must be none, gzip or deflate, not {compression!r}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.compression = compression
        self.initial_backoff = initial_backoff
        request_headers = {"Content-Type": "application/x-protobuf", **headers}
        if compression != "none":
            request_headers["Content-Encoding"] = compression
        verify: ssl.SSLContext | bool = True
        if certificate is not None or client_certificate is not None:
            verify = _ssl_context(certificate, client_key, client_certificate)
        self._client = httpx.Client(headers=request_headers, verify=verify)
        self._stopped = threading.Event()

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        if self._stopped.is_set():
            log.warning("OTLP sender is shut down; %d spans not sent", count)
            return False
        if self.compression == "gzip":
            payload = gzip.compress(payload, compresslevel=6)
        elif self.compression == "deflate":
            payload = zlib.compress(payload)
        retrier = _Retrier(
            _within(self.timeout, timeout), otlp_backoff(self.initial_backoff), self._stopped
        )
        while True:
            delay: float | None = None
            try:
                response = self._client.post(
                    self.endpoint, content=payload, timeout=max(retrier.remaining(), 0.001)
                )
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            except Exception:  # the shipper must never see one
                log.exception("sending %d spans to %s failed", count, self.endpoint)
                return False
            else:
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
                if response.status_code not in _RETRY_HTTP_STATUSES:
                    log.error("%s refused %d spans: %s", self.endpoint, count, problem)
                    return False
                delay = parse_retry_after(response.headers.get("Retry-After"))
            if not retrier.wait(delay):
                log.warning("could not send %d spans to %s: %s", count, self.endpoint, problem)
                return False

    def shutdown(self) -> None:
        self._stopped.set()
        self._client.close()


class OtlpGrpcSender:
    """OTLP/gRPC: calls TraceService/Export with the encoded request as it is.

    Retries UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED with exponential backoff
    while the attempt fits in ``timeout`` seconds. The endpoint is ``host:port`` or a URL whose
    scheme decides TLS (``https``) or plaintext (``http``) unless ``insecure`` says otherwise.
    """

    def __init__(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        timeout: float = DEFAULT_TIMEOUT,
        compression: str = "none",
        *,
        insecure: bool | None = None,
        certificate: str | None = None,
        client_key: str | None = None,
        client_certificate: str | None = None,
        initial_backoff: float = 1.0,
    ) -> None:
        import grpc

        parsed = urlparse(endpoint)
        if parsed.scheme == "https":
            insecure = False
        elif insecure is None:
            insecure = parsed.scheme == "http"
        self.target = parsed.netloc or endpoint
        self.timeout = timeout
        self.initial_backoff = initial_backoff
        self._metadata = tuple((key.lower(), value) for key, value in headers.items())
        self._compression = {
            "none": grpc.Compression.NoCompression,
            "gzip": grpc.Compression.Gzip,
            "deflate": grpc.Compression.Deflate,
        }[compression]
        self._retry_codes = frozenset(
            {
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            }
        )
        if insecure:
            self._channel = grpc.insecure_channel(self.target)
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(certificate).read_bytes() if certificate else None,
                private_key=Path(client_key).read_bytes() if client_key else None,
                certificate_chain=(
                    Path(client_certificate).read_bytes() if client_certificate else None
                ),
            )
            self._channel = grpc.secure_channel(self.target, credentials)
        # No request serializer: the payload is already the serialized request.
        self._export: Callable[..., Any] = self._channel.unary_unary(
            _GRPC_EXPORT, response_deserializer=ExportTraceServiceResponse.FromString
        )
        self._stopped = threading.Event()

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        import grpc

        if self._stopped.is_set():
            log.warning("OTLP sender is shut down; %d spans not sent", count)
            return False
        retrier = _Retrier(
            _within(self.timeout, timeout), otlp_backoff(self.initial_backoff), self._stopped
        )
        while True:
            try:
                self._export(
                    payload,
                    timeout=max(retrier.remaining(), 0.001),
                    metadata=self._metadata,
                    compression=self._compression,
                )
            except grpc.RpcError as error:
                code = _status_code(error)
                if code not in self._retry_codes:
                    log.error("%s refused %d spans: %s", self.target, count, code)
                    return False
                problem = str(code)
            except Exception:  # the shipper must never see one
                log.exception("sending %d spans to %s failed", count, self.target)
                return False
            else:
                return True
            if not retrier.wait():
                log.warning("could not send %d spans to %s: %s", count, self.target, problem)
                return False

    def shutdown(self) -> None:
        self._stopped.set()
        self._channel.close()


def _status_code(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def resource_from_env(env: Mapping[str, str], account_sid: str) -> Resource:
    """The resource of every span: ``OTEL_RESOURCE_ATTRIBUTES``, then ``OTEL_SERVICE_NAME``
    (default ``twilio-studio-exporter``), then ``twilio.account.sid``, later ones winning."""
    if not _ACCOUNT_SID.fullmatch(account_sid):
        raise ValueError(f"not an account SID: {account_sid!r}")
    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.name": DEFAULT_SERVICE_NAME,
        "service.version": __version__,
    }
    raw = _get(env, "OTEL_RESOURCE_ATTRIBUTES") or ""
    for pair in raw.split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_RESOURCE_ATTRIBUTES: {pair!r} is not key=value")
        attributes[key.strip()] = unquote(value.strip())
    service_name = _get(env, "OTEL_SERVICE_NAME")
    if service_name is not None:
        attributes["service.name"] = service_name
    attributes[ACCOUNT_SID_ATTRIBUTE] = account_sid
    return Resource(attributes)


def otlp_json_line(payload: bytes) -> str:
    """One serialized ExportTraceServiceRequest in the OTLP/JSON encoding, on one line.

    That is the protobuf JSON mapping (lowerCamelCase keys, 64-bit integers as strings) with
    OTLP's two exceptions: trace and span ids in hex, enums as integers.

    The fields ``encode_request`` writes are written by hand, with each attribute's text kept
    for reuse: protobuf's generic ``MessageToDict`` took a third of a backfill's CPU when spans
    go to the file (the default). A request with anything else (events, links, trace state,
    non-finite numbers, ...) goes through it.
    """
    request = ExportTraceServiceRequest.FromString(payload)
    try:
        return _request_json(request)
    except _NotMappedError:
        converted = json_format.MessageToDict(request, use_integers_for_enums=True)
        _convert_ids(converted, _base64_to_hex)
        return json.dumps(converted, separators=(",", ":"))


class _NotMappedError(Exception):
    """A field the hand mapping does not cover: use protobuf's own."""


_COMPACT = json.JSONEncoder(separators=(",", ":"))
_dumps = _COMPACT.encode


def _request_json(request: Any) -> str:
    # As MessageToDict: fields at their default are left out; set submessages and oneof
    # members are kept even when empty or zero.
    resource_spans = []
    for rs in request.resource_spans:
        fields = []
        if rs.HasField("resource"):
            if rs.resource.dropped_attributes_count:
                raise _NotMappedError
            fields.append('"resource":{' + _attributes_json(rs.resource.attributes) + "}")
        scope_spans = []
        for ss in rs.scope_spans:
            scope_fields = []
            if ss.HasField("scope"):
                scope = ss.scope
                if scope.attributes or scope.dropped_attributes_count:
                    raise _NotMappedError
                named = {"name": scope.name, "version": scope.version}
                scope_fields.append('"scope":' + _dumps({k: v for k, v in named.items() if v}))
            if ss.spans:
                scope_fields.append('"spans":[' + ",".join(map(_span_json, ss.spans)) + "]")
            if ss.schema_url:
                scope_fields.append('"schemaUrl":' + _dumps(ss.schema_url))
            scope_spans.append("{" + ",".join(scope_fields) + "}")
        if scope_spans:
            fields.append('"scopeSpans":[' + ",".join(scope_spans) + "]")
        if rs.schema_url:
            fields.append('"schemaUrl":' + _dumps(rs.schema_url))
        resource_spans.append("{" + ",".join(fields) + "}")
    return '{"resourceSpans":[' + ",".join(resource_spans) + "]}" if resource_spans else "{}"


def _span_json(span: Any) -> str:
    if (
        span.trace_state
        or span.events
        or span.links
        or span.dropped_attributes_count
        or span.dropped_events_count
        or span.dropped_links_count
    ):
        raise _NotMappedError
    fields = []
    if span.trace_id:
        fields.append(f'"traceId":"{span.trace_id.hex()}"')
    if span.span_id:
        fields.append(f'"spanId":"{span.span_id.hex()}"')
    if span.parent_span_id:
        fields.append(f'"parentSpanId":"{span.parent_span_id.hex()}"')
    if span.flags:
        fields.append(f'"flags":{span.flags}')
    if span.name:
        fields.append('"name":' + _dumps(span.name))
    if span.kind:
        fields.append(f'"kind":{span.kind}')
    if span.start_time_unix_nano:
        fields.append(f'"startTimeUnixNano":"{span.start_time_unix_nano}"')
    if span.end_time_unix_nano:
        fields.append(f'"endTimeUnixNano":"{span.end_time_unix_nano}"')
    if span.attributes:
        fields.append(_attributes_json(span.attributes))
    if span.HasField("status"):
        status = span.status
        if status.message:
            both = {"message": status.message, "code": status.code}
            fields.append('"status":' + _dumps({k: v for k, v in both.items() if v}))
        else:
            fields.append(f'"status":{{"code":{status.code}}}' if status.code else '"status":{}')
    return "{" + ",".join(fields) + "}"


#: Attributes' JSON kept for reuse; emptied when full (unique values such as SIDs pass by).
_ATTRIBUTE_JSON_CACHE_SIZE: Final = 4096
_attribute_json_cache: dict[tuple[str, str | None, object], str] = {}


def _attributes_json(attributes: Any) -> str:
    if not attributes:
        return ""
    cache = _attribute_json_cache
    texts = []
    for attribute in attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            texts.append(_dumps(_key_value_dict(attribute)))
            continue
        plain = None if kind is None else getattr(value, kind)
        text = cache.get((attribute.key, kind, plain))
        if text is None:
            text = _dumps(_key_value_dict(attribute))
            if len(cache) >= _ATTRIBUTE_JSON_CACHE_SIZE:
                cache.clear()
            cache[(attribute.key, kind, plain)] = text
        texts.append(text)
    return '"attributes":[' + ",".join(texts) + "]"


def _key_value_dict(attribute: Any) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if attribute.key:
        item["key"] = attribute.key
    if attribute.HasField("value"):
        item["value"] = _value_json(attribute.value)
    return item


def _value_json(value: Any) -> dict[str, Any]:
    kind = value.WhichOneof("value")
    if kind is None:
        return {}
    if kind == "string_value":
        return {"stringValue": value.string_value}
    if kind == "bool_value":
        return {"boolValue": value.bool_value}
    if kind == "int_value":
        return {"intValue": str(value.int_value)}
    if kind == "double_value":
        number = value.double_value
        if not math.isfinite(number):
            raise _NotMappedError  # NaN and infinities are strings in the JSON mapping
        return {"doubleValue": number}
    if kind == "array_value":
        values = [_value_json(item) for item in value.array_value.values]
        return {"arrayValue": {"values": values} if values else {}}
    raise _NotMappedError


def decode_otlp_json(line: str) -> Any:
    """An ExportTraceServiceRequest message from one line :func:`otlp_json_line` wrote."""
    request = json.loads(line)
    _convert_ids(request, _hex_to_base64)
    return json_format.ParseDict(request, ExportTraceServiceRequest())


def read_otlp_json_lines(path: Path) -> list[Any]:
    """Every ExportTraceServiceRequest in a file a :class:`JsonLinesSender` wrote."""
    with path.open(encoding="utf-8") as lines:
        return [decode_otlp_json(line) for line in lines if line.strip()]


def _base64_to_hex(value: str) -> str:
    return base64.b64decode(value).hex()


def _hex_to_base64(value: str) -> str:
    return base64.b64encode(bytes.fromhex(value)).decode()


def _convert_ids(request: dict[str, Any], convert: Any) -> None:
    for resource_spans in request.get("resourceSpans", ()):
        for scope_spans in resource_spans.get("scopeSpans", ()):
            for span in scope_spans.get("spans", ()):
                for holder in (span, *span.get("links", ())):
                    for key in _ID_KEYS:
                        if holder.get(key):
                            holder[key] = convert(holder[key])


class JsonLinesSender:
    """Appends each batch as one OTLP/JSON ExportTraceServiceRequest line to a file.

    The default sink when no OTLP endpoint is configured: readable with ``jq``, and loadable
    into a collector's ``otlpjsonfile`` receiver.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._shutdown = False

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        if not count:
            return True
        line = otlp_json_line(payload) + "\n"
        with self._lock:
            if self._shutdown:
                log.warning("span file %s is closed; %d spans not written", self.path, count)
                return False
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    # Spans name flows and executions: readable by the owner only, from creation.
                    descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                    os.fchmod(descriptor, 0o600)
                    self._file = os.fdopen(descriptor, "a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError as error:
                log.error("cannot write spans to %s: %s", self.path, error)
                self._close()
                return False
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._shutdown = True
            self._close()

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as error:
                log.error("cannot close %s: %s", self.path, error)
            self._file = None
