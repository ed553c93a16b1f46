"""Tests for healthcheck: it finds the exporter where `run` listens, over http or https."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.commands.healthcheck import health_url, run_healthcheck
from studio_exporter.web.server import Readiness, WebServer
from studio_exporter.web.webconfig import load_web_config
from tests.tls import self_signed_certificate

pytestmark = pytest.mark.integration

READY = Readiness(ready=True, reasons={})
UNREADY = Readiness(ready=False, reasons={"poll": "no successful poll yet"})


def check_args(path: str = "/health/live") -> argparse.Namespace:
    return argparse.Namespace(listen_address=None, web_config_file=None, path=path, timeout=3.0)


@pytest.fixture
def web_config(tmp_path: Path) -> Path:
    cert, key = self_signed_certificate(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    return config


@pytest.fixture
def server(request: pytest.FixtureRequest, web_config: Path) -> Iterator[WebServer]:
    readiness, tls = request.param
    context = load_web_config(web_config).ssl_context() if tls else None
    web = WebServer("127.0.0.1", 0, CollectorRegistry(), lambda: readiness, tls=context)
    web.start()
    try:
        yield web
    finally:
        web.stop()


@pytest.mark.parametrize(
    ("server", "path", "code"),
    [
        pytest.param((READY, False), "/health/live", 0, id="http-live"),
        pytest.param((UNREADY, False), "/health/live", 0, id="unready-is-still-live"),
        pytest.param((UNREADY, False), "/health/ready", 1, id="unready"),
        pytest.param((READY, True), "/health/ready", 0, id="https-ready"),
    ],
    indirect=["server"],
)
def test_the_check_follows_the_configured_address_and_scheme(
    server: WebServer, web_config: Path, path: str, code: int
) -> None:
    env = {"STUDIO_EXPORTER_WEB_LISTEN_ADDRESS": f"0.0.0.0:{server.port}"}
    if server.url.startswith("https"):
        env["STUDIO_EXPORTER_WEB_CONFIG_FILE"] = str(web_config)
    assert run_healthcheck(check_args(path), env) == code


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"STUDIO_EXPORTER_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
    assert run_healthcheck(check_args(), env) == 1
    assert "ConnectError" in capsys.readouterr().err


def test_a_bad_address_is_a_configuration_mistake() -> None:
    env = {"STUDIO_EXPORTER_WEB_LISTEN_ADDRESS": "nowhere"}
    assert run_healthcheck(check_args(), env) == 2


@pytest.mark.parametrize(
    ("address", "tls", "url"),
    [
        pytest.param("0.0.0.0:9911", False, "http://127.0.0.1:9911/health/live", id="any-v4"),
        pytest.param(":9911", False, "http://127.0.0.1:9911/health/live", id="port-only"),
        pytest.param("[::]:9911", True, "https://[::1]:9911/health/live", id="any-v6-tls"),
        pytest.param("10.1.2.3:80", False, "http://10.1.2.3:80/health/live", id="one-address"),
    ],
)
def test_health_url(address: str, tls: bool, url: str) -> None:
    assert health_url(address, tls, "/health/live") == url
