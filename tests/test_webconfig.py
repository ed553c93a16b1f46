"""Tests for webconfig: exporter-toolkit style TLS and basic auth in front of /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.web import Readiness, WebServer
from studio_exporter.webconfig import (
    BasicAuthChecker,
    WebConfigError,
    load_web_config,
    web_config_from_mapping,
)
from tests.tls import self_signed_certificate

PASSWORD = "scrape-me-please"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def serve(tmp_path: Path, text: str) -> Iterator[WebServer]:
    config_file = tmp_path / "web.yml"
    config_file.write_text(text)
    config = load_web_config(config_file)
    web = WebServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: Readiness(True, {}),
        tls=config.ssl_context(),
        auth=BasicAuthChecker(config.basic_auth_users),
    )
    web.start()
    try:
        yield web
    finally:
        web.stop()


def test_basic_auth_protects_metrics_but_not_probes(tmp_path: Path, password_hash: str) -> None:
    for web in serve(tmp_path, f"basic_auth_users:\n  prometheus: '{password_hash}'\n"):
        assert httpx.get(f"{web.url}/metrics").status_code == 401
        assert httpx.get(f"{web.url}/metrics", auth=("prometheus", "wrong")).status_code == 401
        assert httpx.get(f"{web.url}/metrics", auth=("nobody", PASSWORD)).status_code == 401
        assert httpx.get(f"{web.url}/metrics", auth=("prometheus", PASSWORD)).status_code == 200
        assert httpx.get(f"{web.url}/health/ready").status_code == 200


def test_tls(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    text = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    for web in serve(tmp_path, text):
        assert web.url.startswith("https://")
        response = httpx.get(f"{web.url}/metrics", verify=str(cert))
        assert response.status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(web.url.replace("https://", "http://") + "/metrics", timeout=2)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"basic_auth": {}}, "unknown key", id="typo-top-level"),
        pytest.param({"tls_server_config": {"certfile": "x"}}, "unknown key", id="typo-tls"),
        pytest.param(
            {"tls_server_config": {"cert_file": "/nonexistent.crt", "key_file": "/x"}},
            "does not exist",
            id="missing-file",
        ),
        pytest.param({"basic_auth_users": {"a": "plain"}}, "not a bcrypt hash", id="plain"),
        pytest.param([], "must be a mapping", id="not-a-mapping"),
    ],
)
def test_mistakes_are_refused(raw: object, message: str) -> None:
    with pytest.raises(WebConfigError, match=message):
        web_config_from_mapping(raw, base=Path("/"))


def test_a_verified_header_is_remembered(password_hash: str) -> None:
    checker = BasicAuthChecker({"prometheus": password_hash.encode()})
    header = "Basic " + __import__("base64").b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    assert checker.check(header)
    assert checker.check(header)
    assert not checker.check("Basic !!!")
    assert not checker.check(None)
