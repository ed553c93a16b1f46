"""The exporter's HTTP endpoints: /metrics, /health/live, /health/ready, and POST hooks.

The port may face the internet (Event Streams must reach the webhook), so every connection is
treated as hostile. One event loop on its own thread holds the connections: an idle or slow
client costs a socket and a small buffer, never a thread. Per connection, in order: the TLS
handshake within ``HANDSHAKE_TIMEOUT``, each request head within ``HEADER_TIMEOUT`` (and at most
``MAX_HEAD_BYTES``), a body within ``BODY_TIMEOUT`` and at most ``max_body_bytes`` (a larger
declared ``Content-Length`` gets 413 before any of it is read; a chunked body is counted while
read), the answer written within ``WRITE_TIMEOUT``. Work that takes CPU or locks (building
/metrics, bcrypt, readiness, a hook's SQLite commit) runs on small thread pools, one for scrapes
and one for hooks, so a burst of deliveries cannot delay a scrape.

At most ``max_connections`` connections are served; ``RESERVE_CONNECTIONS`` more are accepted
with a one-second deadline to answer ``/health/live`` (a kubelet's probe must not fail because
of a flood) and a fast 503 to everything else; beyond that a connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import resource
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from studio_exporter.web.webconfig import BasicAuthChecker, WebSecurity

log = logging.getLogger(__name__)

#: Probes must work without credentials (a kubelet has none); everything else is protected.
OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
LIVE_PATH = "/health/live"
DEFAULT_TELEMETRY_PATH = "/metrics"
#: Connections served at once; the file-descriptor limit is raised to fit them (as Go does).
DEFAULT_MAX_CONNECTIONS = 1024
#: Accepted past the cap only to answer /health/live or a fast 503.
RESERVE_CONNECTIONS = 64
#: The largest request body a POST hook accepts; Event Streams batches are far smaller.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: Request bodies held in memory at once (each up to max_body_bytes); past it 503 + Retry-After.
MAX_BODIES_IN_FLIGHT = 16
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
HANDSHAKE_TIMEOUT = 5.0
HEADER_TIMEOUT = 10.0
#: How long a kept-alive connection may wait for its next request (Prometheus reuses them).
IDLE_TIMEOUT = 120.0
BODY_TIMEOUT = 30.0
WRITE_TIMEOUT = 10.0
#: Deadline for everything on a connection accepted past the cap.
RESERVE_TIMEOUT = 1.0
SCRAPE_WORKERS = 4
HOOK_WORKERS = 4

_METHODS = frozenset({"GET", "HEAD", "POST"})
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


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


@runtime_checkable
class HeadCheck(Protocol):
    """A POST hook that can refuse a request from its URL and headers, before the body is read
    (``WebhookReceiver`` refuses a missing or wrong signature this way)."""

    def check_head(self, url: str, headers: Mapping[str, str]) -> HookResponse | None: ...


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class _HttpError(Exception):
    """A request that gets an error answer, after which the connection is closed."""

    def __init__(
        self, status: int, message: str, *headers: tuple[str, str], reason: str | None = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)
        self.body: bytes | None = None  # the hook's own answer, when a hook refused
        #: For twilio_studio_exporter_http_refused_total; None: not the port's refusal.
        self.reason = reason if reason != "" else _REFUSAL_BY_STATUS.get(status, "malformed")


_REFUSAL_BY_STATUS = {408: "timeout", 413: "too_large", 431: "too_large", 503: "busy"}


def _error(status: int, message: str, *, close: bool = False) -> _Response:
    body = json.dumps({"error": message}).encode() + b"\n"
    return _Response(status, body, close=close)


class WebServer:
    """Serves the exporter's endpoints from a background thread.

    ``security`` gives the TLS context, basic auth and extra headers to apply to each new
    connection (``WebConfigWatcher.current``, so renewed certificates are picked up); ``tls`` and
    ``auth`` are the fixed alternative. ``host`` may be an IPv4 or IPv6 address, a name (every
    address it resolves to is bound) or ``""``/``::`` (every interface, IPv4 and IPv6).
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
        post_hooks: Mapping[str, PostHook] | None = None,
        tls: ssl.SSLContext | None = None,
        auth: BasicAuthChecker | None = None,
        *,
        security: Callable[[], WebSecurity] | None = None,
        telemetry_path: str = DEFAULT_TELEMETRY_PATH,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        fixed = WebSecurity(tls=tls, auth=auth)
        #: Called with a reason (``selfmetrics.HTTP_REFUSAL_REASONS``) for each refusal.
        self.on_refused = on_refused or (lambda reason: None)
        self._security = security or (lambda: fixed)
        self.registry = registry
        self.readiness = readiness
        self.post_hooks = dict(post_hooks or {})
        self.telemetry_path = telemetry_path
        self.max_connections = _fit_descriptor_limit(max_connections)
        self.max_body_bytes = max_body_bytes
        self._tls_at_start = self._security().tls is not None
        self._sockets = bind_sockets(host, port)
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()
        self._open = 0
        self._bodies = 0
        self._scrapes = ThreadPoolExecutor(SCRAPE_WORKERS, thread_name_prefix="web-scrape")
        self._hooks = ThreadPoolExecutor(HOOK_WORKERS, thread_name_prefix="web-hook")
        self._thread = threading.Thread(target=self._serve, name="studio-exporter-web", daemon=True)
        self._started = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._sockets[0].getsockname()[:2]
        scheme = "https" if self._tls_at_start else "http"
        if host in ("0.0.0.0", "::"):  # noqa: S104 - shown as the loopback that reaches it
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"  # noqa: S104
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"

    @property
    def port(self) -> int:
        return int(self._sockets[0].getsockname()[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every (host, port) listened on."""
        return [(str(sock.getsockname()[0]), int(sock.getsockname()[1])) for sock in self._sockets]

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()
        self._scrapes.shutdown(wait=False, cancel_futures=True)
        self._hooks.shutdown(wait=False, cancel_futures=True)

    # -- the loop ------------------------------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
            self._started.set()
            self._loop.run_forever()
        finally:
            self._started.set()
            tasks = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self._loop.close()

    async def _listen(self) -> None:
        for sock in self._sockets:
            server = await asyncio.start_server(
                self._accepted, sock=sock, limit=MAX_HEAD_BYTES, backlog=1024
            )
            self._servers.append(server)

    def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        self._loop.stop()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open += 1
        self._connections.add(task)
        try:
            if self._open > self.max_connections + RESERVE_CONNECTIONS:
                self.on_refused("over_capacity")
                return
            reserve = self._open > self.max_connections
            if reserve:
                async with asyncio.timeout(RESERVE_TIMEOUT):
                    await self._connection(reader, writer, reserve=True)
            else:
                await self._connection(reader, writer, reserve=False)
        except TimeoutError:
            self.on_refused("timeout")
        except ssl.SSLError as error:
            self.on_refused("tls")
            log.debug("TLS connection ended: %s", error)
        except (ConnectionError, OSError) as error:
            log.debug("connection ended: %s", error or type(error).__name__)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("web connection failed")
        finally:
            self._open -= 1
            self._connections.discard(task)
            await _close(writer)

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, reserve: bool
    ) -> None:
        security = self._security()
        if security.tls is not None:
            await writer.start_tls(security.tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            if not security.config.peer_allowed(writer.get_extra_info("peercert")):
                log.info("client certificate not in client_allowed_sans: connection closed")
                self.on_refused("tls")
                return
        first = True
        while True:
            try:
                request = await self._read_request(reader, writer, first=first, reserve=reserve)
            except _HttpError as error:
                if error.reason is not None:
                    self.on_refused(error.reason)
                response = _error(error.status, str(error), close=True)
                if error.body is not None:
                    response.body = error.body
                response.headers.extend(error.headers)
                await self._write(writer, response, security, head_only=False)
                await _linger(reader, writer)
                return
            if request is None:
                return
            first = False
            response = await self._respond(request, security, reserve=reserve)
            keep = (
                not response.close
                and not reserve
                and request.version == "HTTP/1.1"
                and request.headers.get("connection", "").lower() != "close"
            )
            response.close = not keep
            await self._write(writer, response, security, head_only=request.method == "HEAD")
            if not keep:
                return

    # -- reading -------------------------------------------------------------------------

    async def _read_request(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        first: bool,
        reserve: bool,
    ) -> _Request | None:
        if not first:
            # A kept-alive connection may wait long for its next request, but once the first
            # byte arrives the whole head must follow within HEADER_TIMEOUT.
            try:
                start = await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
            except TimeoutError:
                return None
            if not start:
                return None
        else:
            start = b""
        try:
            async with asyncio.timeout(HEADER_TIMEOUT):
                head = start + await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial.strip() or start:
                raise _HttpError(400, "incomplete request head") from None
            return None
        except asyncio.LimitOverrunError:
            raise _HttpError(431, f"request head larger than {MAX_HEAD_BYTES} bytes") from None
        except TimeoutError:
            raise _HttpError(408, "request head not received in time") from None
        request = _parse_head(head)
        if request.method == "POST":
            request.body = await self._read_body(request, reader, writer, reserve=reserve)
        return request

    async def _read_body(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        reserve: bool,
    ) -> bytes:
        if request.path not in self.post_hooks:
            raise _HttpError(404, "not found", reason=None)
        if reserve:
            raise _HttpError(
                503, "too many connections", ("Retry-After", "1"), reason="over_capacity"
            )
        length_text = request.headers.get("content-length")
        coding = request.headers.get("transfer-encoding")
        if length_text is not None and coding is not None:
            raise _HttpError(400, "both Content-Length and Transfer-Encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            raise _HttpError(501, f"Transfer-Encoding {coding[:40]!r} not supported")
        length: int | None = None
        if length_text is not None:
            if not length_text.isdigit() or len(length_text) > 18:
                raise _HttpError(400, "malformed Content-Length")
            length = int(length_text)
            if length > self.max_body_bytes:
                raise _HttpError(413, f"body larger than {self.max_body_bytes} bytes")
        elif coding is None:
            raise _HttpError(411, "Content-Length required")
        if self._bodies >= MAX_BODIES_IN_FLIGHT:
            raise _HttpError(503, "busy, retry later", ("Retry-After", "1"))
        hook = self.post_hooks[request.path]
        if isinstance(hook, HeadCheck):
            refused = hook.check_head(self._url(request), _display_headers(request))
            if refused is not None:
                error = _HttpError(refused.status, "refused before the body was read", reason=None)
                error.body = refused.body
                raise error
        if request.headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._bodies += 1
        try:
            async with asyncio.timeout(BODY_TIMEOUT):
                if length is not None:
                    return await reader.readexactly(length)
                return await self._read_chunked(reader)
        except TimeoutError:
            raise _HttpError(408, "body not received in time") from None
        except asyncio.IncompleteReadError:
            raise _HttpError(400, "body shorter than announced") from None
        except asyncio.LimitOverrunError:
            raise _HttpError(400, "chunk-size line too long") from None
        finally:
            self._bodies -= 1

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
                raise _HttpError(400, "malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                trailers = 0
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    trailers += 1
                    if trailers > MAX_HEADERS:
                        raise _HttpError(431, "too many trailer fields")
                return b"".join(parts)
            total += size
            if total > self.max_body_bytes:
                raise _HttpError(413, f"body larger than {self.max_body_bytes} bytes")
            parts.append(await reader.readexactly(size))
            if await reader.readexactly(2) != b"\r\n":
                raise _HttpError(400, "chunk not followed by CRLF")

    # -- answering -----------------------------------------------------------------------

    async def _respond(
        self, request: _Request, security: WebSecurity, *, reserve: bool
    ) -> _Response:
        path = request.path
        if request.method in ("GET", "HEAD") and path == LIVE_PATH:
            return _Response(200, b'{"status":"live"}\n')
        if reserve:
            self.on_refused("over_capacity")
            return _Response(
                503,
                b'{"error":"too many connections"}\n',
                headers=[("Retry-After", "1")],
                close=True,
            )
        loop = asyncio.get_running_loop()
        if request.method == "POST":
            hook = self.post_hooks[path]
            return await loop.run_in_executor(self._hooks, self._call_hook, hook, request)
        return await loop.run_in_executor(self._scrapes, self._get, request, security)

    def _url(self, request: _Request) -> str:
        host = request.headers.get("host", "")
        scheme = "https" if self._tls_at_start else "http"
        return f"{scheme}://{host}{request.target}"

    def _call_hook(self, hook: PostHook, request: _Request) -> _Response:
        try:
            answer = hook(self._url(request), _display_headers(request), request.body)
        except Exception:
            log.exception("POST %s failed", request.path)
            return _error(500, "internal error")
        return _Response(answer.status, answer.body, answer.content_type)

    def _get(self, request: _Request, security: WebSecurity) -> _Response:
        path = request.path
        auth = security.auth
        if (
            auth is not None
            and path not in OPEN_PATHS
            and not auth.check(request.headers.get("authorization"))
        ):
            response = _error(401, "unauthorized")
            response.headers.append(("WWW-Authenticate", 'Basic realm="studio-exporter"'))
            return response
        if path == self.telemetry_path:
            return self._metrics(request)
        if path == "/health/ready":
            readiness = self.readiness()
            body = json.dumps(
                {"status": "ready" if readiness.ready else "degraded", **readiness.reasons},
                sort_keys=True,
            ).encode()
            return _Response(200 if readiness.ready else 503, body + b"\n")
        if path == "/":
            return _Response(200, _landing_page(self.telemetry_path), "text/html; charset=utf-8")
        return _error(404, "not found")

    def _metrics(self, request: _Request) -> _Response:
        # prometheus_client's own exposition pieces: the encoder the Accept header asks for
        # (OpenMetrics or text), name[] filtering, gzip when the scraper accepts it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        registry: CollectorRegistry = self.registry
        names = parse_qs(urlsplit(request.target).query).get("name[]")
        if names:
            registry = registry.restricted_registry(names)  # type: ignore[assignment]
        body = encoder(registry)
        response = _Response(200, body, content_type)
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            response.body = gzip.compress(body)
            response.headers.append(("Content-Encoding", "gzip"))
        response.headers.append(("Vary", "Accept, Accept-Encoding"))
        return response

    async def _write(
        self,
        writer: asyncio.StreamWriter,
        response: _Response,
        security: WebSecurity,
        *,
        head_only: bool,
    ) -> None:
        reason = _REASONS.get(response.status, "Unknown")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in response.headers]
        lines += [f"{name}: {value}" for name, value in security.headers.items()]
        if response.close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        writer.write(head if head_only else head + response.body)
        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)


#: After an error answer, what is still read (and dropped) so that the client sees the answer
#: rather than a reset: a close with unread data makes the kernel send RST.
LINGER_BYTES = 256 * 1024
LINGER_SECONDS = 1.0


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if writer.can_write_eof():
        writer.write_eof()
    dropped = 0
    with contextlib.suppress(TimeoutError, ConnectionError, OSError):
        async with asyncio.timeout(LINGER_SECONDS):
            while dropped < LINGER_BYTES:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                dropped += len(chunk)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close after the answer has left (a TLS close_notify included), else drop the connection."""
    writer.close()
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError, OSError, ssl.SSLError, asyncio.CancelledError):
        writer.transport.abort()


def _parse_head(head: bytes) -> _Request:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _HttpError(400, "malformed request line")
    method_bytes, target_bytes, version_bytes = parts
    if not method_bytes or not _TOKEN.issuperset(method_bytes):
        raise _HttpError(400, "malformed method")
    if version_bytes not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version_bytes.startswith(b"HTTP/"):
            raise _HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
        raise _HttpError(400, "malformed request line")
    if not target_bytes.startswith(b"/") or any(byte <= 32 or byte >= 127 for byte in target_bytes):
        raise _HttpError(400, "malformed request target")
    method = method_bytes.decode("ascii")
    if method not in _METHODS:
        raise _HttpError(405, f"method {method[:20]} not allowed", ("Allow", "GET, HEAD, POST"))
    if len(lines) - 1 > MAX_HEADERS:
        raise _HttpError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TOKEN.issuperset(name):
            raise _HttpError(400, "malformed header field")
        if any((byte < 32 and byte != 9) or byte == 127 for byte in value):
            raise _HttpError(400, "control character in a header value")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        if key in headers:
            if key in ("content-length", "transfer-encoding", "host", "authorization"):
                raise _HttpError(400, f"repeated {key} header")
            headers[key] = f"{headers[key]}, {text}"
        else:
            headers[key] = text
    return _Request(method, target_bytes.decode("ascii"), version_bytes.decode("ascii"), headers)


def _display_headers(request: _Request) -> dict[str, str]:
    return {
        "-".join(part.capitalize() for part in name.split("-")): value
        for name, value in request.headers.items()
    }


def _landing_page(telemetry_path: str) -> bytes:
    links = "".join(
        f'<li><a href="{path}">{path}</a></li>'
        for path in (telemetry_path, "/health/live", "/health/ready")
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        "<title>Twilio Studio exporter</title></head><body>"
        f"<h1>Twilio Studio exporter</h1><ul>{links}</ul></body></html>\n"
    ).encode()


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for ``host:port``: one dual-stack socket for every interface, else one
    per address the name resolves to (``localhost`` gives 127.0.0.1 and ::1)."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        return [socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True,
                                     reuse_port=False, backlog=1024)]  # fmt: skip
    if host == "":
        host = "0.0.0.0"  # noqa: S104 - ':port' means every interface, as in Prometheus
    infos = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, _, _, _, address in infos:
            key = (family, str(address[0]))
            if key in seen:
                continue
            seen.add(key)
            # Port 0 asks for any free port: the other addresses of the name then take the same.
            chosen = port or (sockets[0].getsockname()[1] if sockets else 0)
            sock = socket.create_server(
                (str(address[0]), chosen), family=family, backlog=1024, reuse_port=False
            )
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    if not sockets:
        raise OSError(f"{host!r} resolves to no address")
    return sockets


def _fit_descriptor_limit(max_connections: int) -> int:
    """Raise the soft open-files limit to fit the connections (Go does the same at start)."""
    needed = max_connections + RESERVE_CONNECTIONS + 256  # the state store, the sinks, logs
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < needed:
            target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        if soft != resource.RLIM_INFINITY and soft < needed:
            fitted = max(16, soft - RESERVE_CONNECTIONS - 256)
            log.warning(
                "open-files limit %d: serving at most %d connections, not %d",
                soft,
                fitted,
                max_connections,
            )
            return fitted
    return max_connections
