"""Where spans go: OTLP (http/protobuf or gRPC) per the OTEL_* variables, or an OTLP-JSON file."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import unquote

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.util.re import parse_env_headers

from studio_exporter import __version__

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME: Final = "twilio-studio-exporter"
PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
DEFAULT_PROTOCOL: Final = PROTOCOL_HTTP
ACCOUNT_SID_ATTRIBUTE: Final = "twilio.account.sid"

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_TRACES_PATH: Final = "v1/traces"
# The keys the OTLP/JSON mapping writes as hex where proto3 JSON would write base64.
_ID_KEYS: Final = ("traceId", "spanId", "parentSpanId")


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


def make_span_exporter(env: Mapping[str, str], *, default_file: Path) -> SpanExporter:
    """The span exporter the environment asks for.

    With ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, an OTLP
    exporter speaking ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``
    (``http/protobuf``, the default, or ``grpc``); its endpoint, headers, timeout (seconds, as
    the Python SDK reads it), compression and certificates are read from ``env`` and passed
    explicitly. Otherwise a :class:`JsonLinesSpanExporter` writing ``default_file``.
    Raises ValueError, naming the variable, for a value it cannot use.
    """
    if not otlp_configured(env):
        return JsonLinesSpanExporter(default_file)
    protocol = _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = protocol or DEFAULT_PROTOCOL
    if protocol == PROTOCOL_HTTP:
        return _http_exporter(env)
    if protocol == PROTOCOL_GRPC:
        return _grpc_exporter(env)
    raise ValueError(
        f"OTLP protocol {protocol!r} is not supported: use {PROTOCOL_HTTP!r} or {PROTOCOL_GRPC!r}"
    )


def _headers(env: Mapping[str, str]) -> dict[str, str]:
    raw = _get(env, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or ""
    return dict(parse_env_headers(raw, liberal=True))


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


def _http_exporter(env: Mapping[str, str]) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    endpoint = _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if endpoint is None:
        base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or ""
        endpoint = f"{base.removesuffix('/')}/{_TRACES_PATH}"
    return OTLPSpanExporter(
        endpoint=endpoint,
        certificate_file=_get(
            env, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"
        ),
        client_key_file=_get(
            env, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ),
        client_certificate_file=_get(
            env,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        ),
        headers=_headers(env),
        timeout=_timeout(env),
        compression=Compression(_compression(env)),
    )


def _grpc_exporter(env: Mapping[str, str]) -> SpanExporter:
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    insecure_raw = _get(env, "OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE")
    certificate = _get(
        env, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"
    )
    credentials = None
    if certificate is not None:
        key = _get(env, "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
        chain = _get(
            env,
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(certificate).read_bytes(),
            private_key=Path(key).read_bytes() if key else None,
            certificate_chain=Path(chain).read_bytes() if chain else None,
        )
    compression = {
        "none": grpc.Compression.NoCompression,
        "gzip": grpc.Compression.Gzip,
        "deflate": grpc.Compression.Deflate,
    }[_compression(env)]
    return OTLPSpanExporter(
        endpoint=endpoint,
        insecure=None if insecure_raw is None else insecure_raw.lower() == "true",
        credentials=credentials,
        headers=_headers(env),
        timeout=_timeout(env),
        compression=compression,
    )


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


def encode_otlp_json(spans: Sequence[ReadableSpan]) -> str:
    """One ExportTraceServiceRequest in the OTLP/JSON encoding, on one line.

    That is the protobuf JSON mapping (lowerCamelCase keys, 64-bit integers as strings) with
    OTLP's two exceptions: trace and span ids in hex, enums as integers.
    """
    request = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    _convert_ids(request, _base64_to_hex)
    return json.dumps(request, separators=(",", ":"))


def decode_otlp_json(line: str) -> Any:
    """An ExportTraceServiceRequest message from one line :func:`encode_otlp_json` wrote."""
    request = json.loads(line)
    _convert_ids(request, _hex_to_base64)
    return json_format.ParseDict(request, ExportTraceServiceRequest())


def read_otlp_json_lines(path: Path) -> list[Any]:
    """Every ExportTraceServiceRequest in a file a :class:`JsonLinesSpanExporter` wrote."""
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


class JsonLinesSpanExporter(SpanExporter):
    """Appends each batch as one OTLP/JSON ExportTraceServiceRequest line to a file.

    The default sink when no OTLP endpoint is configured: readable with ``jq``, and loadable
    into a collector's ``otlpjsonfile`` receiver.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = encode_otlp_json(spans) + "\n"
        with self._lock:
            if self._shutdown:
                log.warning("span file %s is closed; %d spans not written", self.path, len(spans))
                return SpanExportResult.FAILURE
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError as error:
                log.error("cannot write spans to %s: %s", self.path, error)
                self._close()
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # every export already flushed its line

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
