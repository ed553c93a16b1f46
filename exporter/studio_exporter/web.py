"""The exporter's HTTP endpoints: /metrics, /health/live, /health/ready, and POST hooks."""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from studio_exporter.webconfig import BasicAuthChecker

log = logging.getLogger(__name__)

#: Probes must work without credentials (a kubelet has none); everything else is protected.
OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
#: The largest request body a POST hook accepts; Event Streams batches are far smaller.
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the exporter is doing its job, and if not, why (shown on /health/ready)."""

    ready: bool
    reasons: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class HookResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"


#: A POST hook gets the full request URL as the client sent it, the headers and the raw body.
PostHook = Callable[[str, Mapping[str, str], bytes], HookResponse]


class ExporterHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        post_hooks: Mapping[str, PostHook] | None = None,
        auth: BasicAuthChecker | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.readiness = readiness
        self.post_hooks = dict(post_hooks or {})
        self.auth = auth

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        shown = "127.0.0.1" if host_text in ("0.0.0.0", "") else host_text  # noqa: S104
        if ":" in shown:
            shown = f"[{shown}]"
        return f"{scheme}://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: ExporterHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        auth = self.server.auth
        if (
            auth is not None
            and path not in OPEN_PATHS
            and not auth.check(self.headers.get("Authorization"))
        ):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="studio-exporter"')
            self.send_header("Content-Type", "application/json")
            body = b'{"error":"unauthorized"}\n'
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.server.registry), content_type)
        elif path == "/health/live":
            self._send(200, b'{"status":"live"}\n', "application/json")
        elif path == "/health/ready":
            readiness = self.server.readiness()
            body = json.dumps(
                {"status": "ready" if readiness.ready else "degraded", **readiness.reasons},
                sort_keys=True,
            ).encode()
            self._send(200 if readiness.ready else 503, body + b"\n", "application/json")
        elif path == "/":
            page = (
                "<html><head><title>Twilio Studio exporter</title></head><body>"
                "<h1>Twilio Studio exporter</h1><ul>"
                '<li><a href="/metrics">/metrics</a></li>'
                '<li><a href="/health/live">/health/live</a></li>'
                '<li><a href="/health/ready">/health/ready</a></li></ul></body></html>'
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b'{"error":"not found"}\n', "application/json")

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        hook = self.server.post_hooks.get(split.path)
        if hook is None:
            self._send(404, b'{"error":"not found"}\n', "application/json")
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._send(411, b'{"error":"Content-Length required"}\n', "application/json")
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413, b'{"error":"body too large"}\n', "application/json")
            return
        body = self.rfile.read(length)
        host = self.headers.get("Host", "")
        scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
        url = f"{scheme}://{host}{self.path}"
        headers = dict(self.headers.items())
        try:
            response = hook(url, headers, body)
        except Exception:
            log.exception("POST %s failed", split.path)
            response = HookResponse(500, b'{"error":"internal error"}\n')
        self._send(response.status, response.body, response.content_type)


class WebServer:
    """Runs an ExporterHTTPServer on a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        post_hooks: Mapping[str, PostHook] | None = None,
        tls: ssl.SSLContext | None = None,
        auth: BasicAuthChecker | None = None,
    ) -> None:
        self.httpd = ExporterHTTPServer((host, port), registry, readiness, post_hooks, auth)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="studio-exporter-web", daemon=True
        )

    @property
    def url(self) -> str:
        return self.httpd.url

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
