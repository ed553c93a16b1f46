"""Tests for web: /metrics content negotiation, health endpoints and POST hooks over HTTP."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from studio_exporter.web import HookResponse, Readiness, WebServer

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
