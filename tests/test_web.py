"""Tests for web: /metrics content negotiation, health endpoints and POST hooks over HTTP."""

from __future__ import annotations

import contextlib
import gzip
import socket
import time
from collections.abc import Iterator, Mapping

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from studio_exporter.web.server import HookResponse, Readiness, WebServer

READY = Readiness(ready=True, reasons={})


@pytest.fixture
def state() -> dict[str, Readiness]:
    return {"readiness": READY}


@pytest.fixture
def server(state: dict[str, Readiness]) -> Iterator[WebServer]:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc(3)
    received: list[tuple[str, bytes]] = []

    def hook(url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        received.append((url, body))
        if body == b"boom":
            raise RuntimeError("hook failed")
        return HookResponse(200, b'{"ok":true}')

    web = WebServer("127.0.0.1", 0, registry, lambda: state["readiness"], {"/hook": hook})
    web.start()
    web.received = received  # type: ignore[attr-defined]
    try:
        yield web
    finally:
        web.stop()


def test_metrics_text_and_openmetrics(server: WebServer) -> None:
    text = httpx.get(f"{server.url}/metrics")
    assert text.status_code == 200
    assert text.headers["content-type"].startswith("text/plain")
    assert "demo_things_total 3.0" in text.text
    open_metrics = httpx.get(
        f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"}
    )
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")


def test_health(server: WebServer, state: dict[str, Readiness]) -> None:
    assert httpx.get(f"{server.url}/health/live").status_code == 200
    assert httpx.get(f"{server.url}/health/ready").json() == {"status": "ready"}
    state["readiness"] = Readiness(False, {"poll": "last successful poll 400s ago"})
    degraded = httpx.get(f"{server.url}/health/ready")
    assert degraded.status_code == 503
    assert degraded.json() == {"status": "degraded", "poll": "last successful poll 400s ago"}


def test_post_hook_gets_the_full_url_and_body(server: WebServer) -> None:
    response = httpx.post(f"{server.url}/hook?x=1", content=b"[]")
    assert response.status_code == 200
    url, body = server.received[-1]  # type: ignore[attr-defined]
    assert url == f"{server.url}/hook?x=1"
    assert body == b"[]"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        pytest.param("/nowhere", b"[]", 404, id="unknown-path"),
        pytest.param("/hook", b"boom", 500, id="hook-raises"),
    ],
)
def test_post_errors(server: WebServer, path: str, body: bytes, status: int) -> None:
    assert httpx.post(f"{server.url}{path}", content=body).status_code == status


def test_unknown_get_is_404(server: WebServer) -> None:
    assert httpx.get(f"{server.url}/secret").status_code == 404


def raw_exchange(server: WebServer, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    host, port = server.addresses[0]
    with socket.create_connection((host, port), timeout=read_timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def test_metrics_gzip_when_asked(server: WebServer) -> None:
    plain = httpx.get(f"{server.url}/metrics", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    raw = raw_exchange(
        server,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Encoding: gzip" in head
    assert b"demo_things_total 3.0" in gzip.decompress(body)


def test_metrics_name_filter(server: WebServer) -> None:
    registry = server.registry
    Counter("other_things", "Other things.", registry=registry).inc()
    only = httpx.get(f"{server.url}/metrics", params={"name[]": "other_things_total"}).text
    assert "other_things_total 1.0" in only
    assert "demo_things" not in only


def test_landing_page_links_metrics_and_health(server: WebServer) -> None:
    page = httpx.get(f"{server.url}/")
    assert page.headers["content-type"].startswith("text/html")
    for path in ("/metrics", "/health/live", "/health/ready"):
        assert f'href="{path}"' in page.text


def test_telemetry_path() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc()
    web = WebServer("127.0.0.1", 0, registry, lambda: READY, telemetry_path="/prometheus")
    web.start()
    try:
        assert "demo_things_total" in httpx.get(f"{web.url}/prometheus").text
        assert httpx.get(f"{web.url}/metrics").status_code == 404
        assert 'href="/prometheus"' in httpx.get(f"{web.url}/").text
    finally:
        web.stop()


def test_head_answers_without_a_body(server: WebServer) -> None:
    response = httpx.head(f"{server.url}/metrics")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) > 0
    assert response.content == b""


def test_keep_alive_serves_several_requests_on_one_connection(server: WebServer) -> None:
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(f"{server.url}/health/live").status_code == 200
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    answer = raw_exchange(
        server, request * 2 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    )
    assert answer.count(b"HTTP/1.1 200 OK") == 3


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="no-request-line"),
        pytest.param(b"GET /metrics HTTP/2.0\r\n\r\n", 505, id="http-2"),
        pytest.param(b"DELETE /metrics HTTP/1.1\r\n\r\n", 405, id="method"),
        pytest.param(b"GET metrics HTTP/1.1\r\n\r\n", 400, id="relative-target"),
        pytest.param(b"GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n", 400, id="header-without-colon"),
        pytest.param(b"GET /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400, id="nul-in-header"),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", 431, id="too-many-headers"
        ),
        pytest.param(
            b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431, id="huge-header"
        ),
        pytest.param(b"POST /hook HTTP/1.1\r\n\r\n", 411, id="post-without-length"),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, id="negative-length"
        ),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[]",
            400,
            id="repeated-length",
        ),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n[]",
            400,
            id="length-and-chunked",
        ),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501, id="unknown-coding"
        ),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            400,
            id="bad-chunk-size",
        ),
        pytest.param(
            b"POST /hook HTTP/1.1\r\nContent-Length: 10\r\n\r\n[]", 400, id="body-cut-short"
        ),
    ],
)
def test_malformed_requests_get_a_4xx_or_5xx_with_a_reason(
    server: WebServer, data: bytes, status: int
) -> None:
    answer = raw_exchange(server, data)
    assert status_of(answer) == status, answer[:200]
    assert b'"error"' in answer


def test_a_declared_body_over_the_cap_is_refused_unread() -> None:
    received: list[bytes] = []

    def hook(url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        received.append(body)
        return HookResponse(200)

    web = WebServer(
        "127.0.0.1", 0, CollectorRegistry(), lambda: READY, {"/hook": hook}, max_body_bytes=1000
    )
    web.start()
    try:
        host, port = web.addresses[0]
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
            answer = sock.recv(4096)  # before a byte of the body was sent
        assert status_of(answer) == 413
        chunked = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        answer = raw_exchange(
            web, b"POST /hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked
        )
        assert status_of(answer) == 413
        ok = httpx.post(f"{web.url}/hook", content=b"x" * 1000)
        assert ok.status_code == 200
        assert received == [b"x" * 1000]
    finally:
        web.stop()


def test_past_the_connection_cap_live_answers_and_the_rest_get_a_fast_503() -> None:
    web = WebServer("127.0.0.1", 0, CollectorRegistry(), lambda: READY, max_connections=2)
    web.start()
    host, port = web.addresses[0]
    idle = [socket.create_connection((host, port), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.2)  # the server has accepted both
        live = httpx.get(f"{web.url}/health/live", timeout=2)
        assert live.status_code == 200
        started = time.monotonic()
        busy = httpx.get(f"{web.url}/metrics", timeout=2)
        assert busy.status_code == 503
        assert busy.headers["retry-after"] == "1"
        assert time.monotonic() - started < 1
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{web.url}/metrics", timeout=2).status_code == 200
    web.stop()


def loopback_v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not loopback_v6(), reason="this machine has no IPv6 loopback")
@pytest.mark.parametrize(
    ("host", "reachable"),
    [
        pytest.param("::1", ("::1",), id="ipv6-loopback"),
        pytest.param("::", ("::1", "127.0.0.1"), id="ipv6-any-dual-stack"),
        pytest.param("", ("::1", "127.0.0.1"), id="empty-dual-stack"),
        pytest.param("localhost", None, id="name-every-address"),
        pytest.param("0.0.0.0", ("127.0.0.1",), id="ipv4-any"),
    ],
)
def test_listen_addresses(host: str, reachable: tuple[str, ...] | None) -> None:
    if reachable is None:  # every address the name resolves to (127.0.0.1, and ::1 if listed)
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
        reachable = tuple({str(info[4][0]) for info in infos})
    web = WebServer(host, 0, CollectorRegistry(), lambda: READY)
    web.start()
    try:
        for address in reachable:
            shown = f"[{address}]" if ":" in address else address
            assert httpx.get(f"http://{shown}:{web.port}/health/live").status_code == 200
    finally:
        web.stop()


def test_refusals_are_reported_with_their_reason() -> None:
    reasons: list[str] = []

    def hook(url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        return HookResponse(200)

    web = WebServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: READY,
        {"/hook": hook},
        max_body_bytes=1000,
        max_connections=1,
        on_refused=reasons.append,
    )
    web.start()
    try:
        raw_exchange(web, b"GARBAGE\r\n\r\n")
        raw_exchange(web, b"POST /hook HTTP/1.1\r\nContent-Length: 5000\r\n\r\n")
        raw_exchange(web, b"POST /nowhere HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]")  # not one
        host, port = web.addresses[0]
        with socket.create_connection((host, port)):
            time.sleep(0.2)  # the one slot is taken
            assert httpx.get(f"{web.url}/metrics", timeout=2).status_code == 503
    finally:
        web.stop()
    assert sorted(reasons) == ["malformed", "over_capacity", "too_large"]
