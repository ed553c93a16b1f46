"""A lean HTTP/1.1 keep-alive transport for httpx over asyncio streams, for the exporter's GETs.

Why it exists: a backfill sends thousands of small GETs, and httpx's default transport (httpcore)
spent 4 to 7 ms of CPU on each of them in the pool alone (it scans every connection and asks the
socket whether it is readable on every request). This transport keeps, per origin, a LIFO stack
of idle connections and does nothing per request that grows with the pool.

What it does: HTTP/1.1 over TCP or TLS, persistent connections, bodies framed by Content-Length,
chunked transfer-encoding or the connection's end; httpx's timeouts (connect, read, write, pool)
with httpx's exceptions. What it leaves to httpx above it: redirects, auth, cookies and
Content-Encoding (gzip is decoded by ``httpx.Response``, as with any transport).

What it does not do: HTTP/2, proxies, upgrades, streaming response bodies (every body is read
whole before the response is returned, which is what a poller of small JSON pages wants). A
client that must go through a proxy (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``) keeps
httpx's own transport: ``proxies_in_environment`` tells ``StudioApi`` when that is the case.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from collections.abc import Mapping

import httpx

DEFAULT_MAX_CONNECTIONS = 32
#: Idle connections older than this are closed rather than reused (httpx's default too): load
#: balancers drop idle connections after a while, and a write into one is a wasted round trip.
DEFAULT_KEEPALIVE_EXPIRY = 5.0
#: How long ``aclose`` waits for connections to close cleanly before dropping them.
CLOSE_GRACE_SECONDS = 1.0
#: A response head (status line and headers) and a chunk-size line may not be larger than this.
MAX_HEAD_BYTES = 64 * 1024
#: The largest response body read; a larger one is an error, not an out-of-memory. Studio's
#: largest answers (a page of 1,000 steps with contexts, a big flow definition) are far smaller.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Bytes that would end a header line early or truncate it in C code: never written.
_FORBIDDEN_IN_HEADERS = (b"\r", b"\n", b"\0")

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")

Origin = tuple[bytes, str, int]


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float, expiry: float) -> bool:
        """Still open, nothing unread, and not idle for too long."""
        if now - self.idle_since >= expiry or self.writer.is_closing() or self.reader.at_eof():
            return False
        # Bytes that arrived while the connection was idle (a 408 before the server closes, say)
        # would be read as the answer to the next request. StreamReader has no public way to ask,
        # so look at its buffer; if the attribute ever goes away, this check merely stops helping.
        pending = getattr(self.reader, "_buffer", None)
        return not pending

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _StaleConnectionError(Exception):
    """A pooled connection failed before any of the response arrived: the server had closed it."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class ResponseTooLarge(httpx.RemoteProtocolError):
    """A response body over the transport's ``max_response_bytes``; nothing more was read."""


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive for httpx: a LIFO pool of idle connections per origin, bounded."""

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        keepalive_expiry: float = DEFAULT_KEEPALIVE_EXPIRY,
        trust_env: bool = True,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.max_response_bytes = max_response_bytes
        self._verify = verify
        self._trust_env = trust_env
        self._ssl_context: ssl.SSLContext | None = None
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        # A place per request in flight; each holds at most one connection.
        self._places = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False
        #: Connections opened so far (tests and benchmarks read it to see reuse).
        self.connections_opened = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        origin = _origin(request.url, request)
        data = await _encode_request(request)
        close = "close" in request.headers.get("connection", "").lower()
        return await self._send(origin, request.method, data, close, request, timeouts)

    async def get(
        self, prepared: PreparedGet, target: str, timeouts: Mapping[str, float | None]
    ) -> httpx.Response:
        """GET ``target`` (path and query, already quoted) with the headers of ``prepared``.

        What ``handle_async_request`` does, without an ``httpx.Request``: parsing the URL and
        encoding the headers again for each of a backfill's thousands of GETs cost a tenth of
        the exporter's CPU. The response has no ``request``.
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        data = prepared.encode(target)
        return await self._send(prepared.origin, "GET", data, prepared.close, None, timeouts)

    async def _send(
        self,
        origin: Origin,
        method: str,
        data: bytes,
        close: bool,
        request: httpx.Request | None,
        timeouts: Mapping[str, float | None],
    ) -> httpx.Response:
        await self._take_place(request, timeouts.get("pool"))
        try:
            connection = self._idle_connection(origin)
            if connection is not None:
                try:
                    return await self._exchange(
                        connection, origin, method, data, close, request, timeouts, True
                    )
                except _StaleConnectionError as stale:
                    # Retried once on a fresh connection: the request never reached a live
                    # server. Only idempotent methods are retried; the exporter sends only GETs.
                    if method not in _IDEMPOTENT:
                        raise stale.error from None
            connection = await self._connect(origin, request, timeouts.get("connect"))
            return await self._exchange(
                connection, origin, method, data, close, request, timeouts, False
            )
        finally:
            self._places.release()

    async def aclose(self) -> None:
        self._closed = True
        connections = list(self._open)
        self._open.clear()
        self._idle.clear()
        for connection in connections:
            connection.close()
        # A TLS close waits for the peer's close_notify (up to 30 s in asyncio): wait briefly,
        # then drop whatever has not closed yet, so that shutting down stays quick.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                for connection in connections:
                    with contextlib.suppress(Exception):
                        await connection.writer.wait_closed()
        for connection in connections:
            connection.writer.transport.abort()

    # -- the pool ---------------------------------------------------------------------------

    async def _take_place(self, request: httpx.Request | None, timeout: float | None) -> None:
        if not self._places.locked():
            await self._places.acquire()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._places.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection available in time", request=request) from None

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self._keepalive_expiry):
                return connection
            self._discard(connection)
        return None

    def _release(self, connection: _Connection, origin: Origin) -> None:
        if self._closed:
            self._discard(connection)
            return
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        # The stack is ordered by idle time: the expired ones are at its bottom.
        while idle and now - idle[0].idle_since >= self._keepalive_expiry:
            self._discard(idle.popleft())
        idle.append(connection)

    def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.close()

    def _make_room(self) -> None:
        """Close an idle connection (of another origin) when the bound is reached."""
        if len(self._open) < self._max_connections:
            return
        for idle in self._idle.values():
            if idle:
                self._discard(idle.popleft())
                return

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # httpx's own default: certifi's bundle, or SSL_CERT_FILE / SSL_CERT_DIR.
            self._ssl_context = httpx.create_ssl_context(
                verify=self._verify, trust_env=self._trust_env
            )
        return self._ssl_context

    async def _connect(
        self, origin: Origin, request: httpx.Request | None, timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        context = self._context() if scheme == b"https" else None
        self._make_room()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                    limit=MAX_HEAD_BYTES,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"connect to {host}:{port} timed out", request=request
            ) from None
        except OSError as error:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(f"{host}:{port}: {error}", request=request) from error
        connection = _Connection(reader, writer)
        self._open.add(connection)
        self.connections_opened += 1
        return connection

    # -- one request ------------------------------------------------------------------------

    async def _exchange(
        self,
        connection: _Connection,
        origin: Origin,
        method: str,
        data: bytes,
        close: bool,
        request: httpx.Request | None,
        timeouts: Mapping[str, float | None],
        reused: bool,
    ) -> httpx.Response:
        loop = asyncio.get_running_loop()
        writing = True
        try:
            async with asyncio.timeout(_deadline(loop, timeouts.get("write"))) as deadline:
                try:
                    connection.writer.write(data)
                    await connection.writer.drain()
                except OSError as error:
                    raise _failed(httpx.WriteError(str(error), request=request), reused) from error
                writing = False
                deadline.reschedule(_deadline(loop, timeouts.get("read")))
                response, keep_alive = await _read_response(
                    connection.reader, request, reused, self.max_response_bytes, method
                )
        except TimeoutError:
            self._discard(connection)
            if writing:
                raise httpx.WriteTimeout("write timed out", request=request) from None
            raise httpx.ReadTimeout("read timed out", request=request) from None
        except BaseException:
            # Whatever went wrong, the connection's state is unknown: never pool it.
            self._discard(connection)
            raise
        if keep_alive and not close:
            self._release(connection, origin)
        else:
            self._discard(connection)
        return response


class PreparedGet:
    """GETs to one origin with the same headers: the request head encoded once, but the target.

    The headers are checked once, as ``handle_async_request`` checks them on every request;
    each target is checked to be one token of printable ASCII.
    """

    def __init__(self, base_url: httpx.URL, headers: httpx.Headers) -> None:
        self.origin = _origin(base_url, None)
        #: A base URL's own path ("https://host/prefix") comes before every target.
        self.prefix = base_url.raw_path.split(b"?", 1)[0].rstrip(b"/")
        head, chunked = _encode_head(headers.raw, base_url.netloc, None)
        if chunked:
            raise ValueError("a GET without a body is not sent chunked")
        self.close = "close" in headers.get("connection", "").lower()
        self._tail = b" HTTP/1.1\r\n" + head + b"\r\n"

    def encode(self, target: str) -> bytes:
        if not target.startswith("/") or not target.isascii() or not target.isprintable():
            raise httpx.LocalProtocolError(f"invalid request target {target[:100]!r}")
        if " " in target:
            raise httpx.LocalProtocolError(f"space in request target {target[:100]!r}")
        return b"GET " + self.prefix + target.encode("ascii") + self._tail


def proxies_in_environment(environ: Mapping[str, str]) -> bool:
    """Whether httpx would send requests through a proxy named by the environment.

    Mirrors httpx's reading of ``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` (either case),
    with ``NO_PROXY=*`` turning them all off.
    """
    lowered = {name.lower(): value for name, value in environ.items()}
    if lowered.get("no_proxy", "").strip() == "*":
        return False
    return any(lowered.get(f"{scheme}_proxy") for scheme in ("http", "https", "all"))


def _deadline(loop: asyncio.AbstractEventLoop, timeout: float | None) -> float | None:
    return None if timeout is None else loop.time() + timeout


def _failed(error: httpx.TransportError, reused: bool) -> Exception:
    return _StaleConnectionError(error) if reused else error


def _origin(url: httpx.URL, request: httpx.Request | None) -> Origin:
    scheme = url.raw_scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(
            f"{scheme.decode('ascii', 'replace')!r} is not http or https", request=request
        )
    return (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])


def _encode_head(
    headers: list[tuple[bytes, bytes]], netloc: bytes, request: httpx.Request | None
) -> tuple[bytes, bool]:
    """The header lines (Host first if not among them), and whether the body goes chunked."""
    parts: list[bytes] = []
    if not any(name.lower() == b"host" for name, _ in headers):
        parts += [b"Host: ", netloc, b"\r\n"]
    chunked = False
    for name, value in headers:
        if any(byte in name or byte in value for byte in _FORBIDDEN_IN_HEADERS) or not name:
            # Written as is, a CR or LF would start a header (or a request) of someone else's.
            raise httpx.LocalProtocolError(
                f"header {name[:40]!r}: CR, LF and NUL are not allowed in header names or values",
                request=request,
            )
        if name.lower() == b"transfer-encoding" and value.lower() == b"chunked":
            chunked = True
        parts += [name, b": ", value, b"\r\n"]
    return b"".join(parts), chunked


async def _encode_request(request: httpx.Request) -> bytes:
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = await request.aread()
    head, chunked = _encode_head(request.headers.raw, request.url.netloc, request)
    parts = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    parts += [head, b"\r\n"]
    if chunked:
        if body:
            parts += [f"{len(body):x}\r\n".encode("ascii"), body, b"\r\n"]
        parts.append(b"0\r\n\r\n")
    else:
        parts.append(body)
    return b"".join(parts)


async def _read_response(
    reader: asyncio.StreamReader,
    request: httpx.Request | None,
    reused: bool,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    method: str | None = None,
) -> tuple[httpx.Response, bool]:
    """One response, its body read whole; and whether the connection may carry another.

    ``method`` is the request's (``request.method`` if not given; a request must be given then).
    """
    if method is None:
        if request is None:
            raise ValueError("the method or the request is needed")
        method = request.method
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            closed = httpx.RemoteProtocolError(
                "server disconnected without sending a complete response head", request=request
            )
            raise (_failed(closed, reused) if not error.partial else closed) from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(
                f"response head larger than {MAX_HEAD_BYTES} bytes", request=request
            ) from None
        except OSError as error:
            raise _failed(httpx.ReadError(str(error), request=request), reused) from error
        version, status, reason, headers = _parse_head(head, request)
        # 1xx answers (100 Continue, 103 Early Hints) precede the real one; 101 we never ask for.
        if not 100 <= status < 200 or status == 101:
            break
    length: bytes | None = None
    transfer_encoding: bytes | None = None
    keep_alive = version == b"HTTP/1.1"
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if length is not None and length != value:
                raise httpx.RemoteProtocolError("conflicting Content-Length", request=request)
            length = value
        elif lowered == b"transfer-encoding":
            transfer_encoding = value.strip().lower()
        elif lowered == b"connection" and b"close" in value.lower():
            keep_alive = False
    try:
        if method == "HEAD" or status in {101, 204, 304}:
            body = b""
        elif transfer_encoding is not None:
            if transfer_encoding != b"chunked":
                raise httpx.RemoteProtocolError(
                    f"unsupported Transfer-Encoding {transfer_encoding!r}", request=request
                )
            body = await _read_chunked(reader, request, max_bytes)
        elif length is not None:
            size = _content_length(length, request)
            _check_size(size, max_bytes, request)
            body = await reader.readexactly(size)
        else:
            parts: list[bytes] = []
            total = 0
            while chunk := await reader.read(65536):
                total += len(chunk)
                _check_size(total, max_bytes, request)
                parts.append(chunk)
            body = b"".join(parts)
            keep_alive = False
    except asyncio.IncompleteReadError:
        raise httpx.RemoteProtocolError(
            "server disconnected in the middle of the body", request=request
        ) from None
    except asyncio.LimitOverrunError:
        raise httpx.RemoteProtocolError("chunk-size line too long", request=request) from None
    except OSError as error:
        raise httpx.ReadError(str(error), request=request) from error
    response = httpx.Response(
        status,
        headers=headers,
        stream=httpx.ByteStream(body),
        extensions={"http_version": version, "reason_phrase": reason},
        request=request,
    )
    return response, keep_alive


def _parse_head(
    head: bytes, request: httpx.Request | None
) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]]]:
    lines = head[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in {b"HTTP/1.1", b"HTTP/1.0"} or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(
            f"malformed status line {lines[0][:100]!r}", request=request
        )
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # No colon, an empty name, or whitespace in it (which includes obsolete line folding).
        if not colon or not name or b" " in name or b"\t" in name:
            raise httpx.RemoteProtocolError(
                f"malformed header line {line[:100]!r}", request=request
            )
        headers.append((name, value.strip(b" \t")))
    return version, int(code), reason, headers


def _check_size(size: int, max_bytes: int, request: httpx.Request | None) -> None:
    if size > max_bytes:
        what = "" if request is None else f" ({request.method} {request.url.path})"
        raise ResponseTooLarge(
            f"response body larger than {max_bytes} bytes{what}", request=request
        )


def _content_length(value: bytes, request: httpx.Request | None) -> int:
    if not value.isdigit():
        raise httpx.RemoteProtocolError(f"malformed Content-Length {value[:40]!r}", request=request)
    return int(value)


async def _read_chunked(
    reader: asyncio.StreamReader, request: httpx.Request | None, max_bytes: int
) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or not _HEX_DIGITS.issuperset(size_text):
            raise httpx.RemoteProtocolError(
                f"malformed chunk size {size_text[:40]!r}", request=request
            )
        size = int(size_text, 16)
        if size == 0:
            # Trailer fields, if any, end with an empty line; they carry nothing we use.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        _check_size(total, max_bytes, request)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=request)
