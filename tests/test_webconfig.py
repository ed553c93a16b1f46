"""Tests for webconfig: exporter-toolkit style TLS and basic auth in front of /metrics."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.web.server import Readiness, WebServer
from studio_exporter.web.webconfig import (
    BasicAuthChecker,
    WebConfigError,
    WebConfigWatcher,
    load_web_config,
    web_config_from_mapping,
)
from tests.tls import Pki, private_ca, self_signed_certificate

READY = Readiness(True, {})

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
    load_web_config(config_file)  # the same check --web.config.file gets at start-up
    watcher = WebConfigWatcher(config_file)
    web = WebServer("127.0.0.1", 0, CollectorRegistry(), lambda: READY, security=watcher.current)
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
        response = httpx.get(
            f"{web.url}/metrics", verify=ssl.create_default_context(cafile=str(cert))
        )
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
        pytest.param({"rate_limit": {"interval": "1s"}}, "rate_limit: not supported", id="rate"),
        pytest.param(
            {"tls_server_config": {"client_auth_type": "RequireAnyClientCert"}},
            "RequireAnyClientCert is not supported",
            id="require-any-client-cert",
        ),
        pytest.param(
            {"tls_server_config": {"client_auth_type": "RequestClientCert"}},
            "RequestClientCert is not supported",
            id="request-client-cert",
        ),
        pytest.param(
            {"tls_server_config": {"client_auth_type": "Sometimes"}},
            "client_auth_type must be one of",
            id="unknown-client-auth",
        ),
        pytest.param(
            {"tls_server_config": {"client_allowed_sans": ["a"]}},
            "needs client_auth_type: RequireAndVerifyClientCert",
            id="sans-without-client-auth",
        ),
        pytest.param(
            {"tls_server_config": {"min_version": "SSL3"}}, "min_version must be", id="version"
        ),
        pytest.param(
            {"tls_server_config": {"min_version": "TLS13", "max_version": "TLS12"}},
            "min_version is above max_version",
            id="versions-crossed",
        ),
        pytest.param(
            {"tls_server_config": {"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}},
            "not one of Go's secure suites",
            id="insecure-cipher",
        ),
        pytest.param(
            {"tls_server_config": {"curve_preferences": ["X25519", "CurveP256"]}},
            "one curve",
            id="several-curves",
        ),
        pytest.param(
            {"tls_server_config": {"curve_preferences": ["P-256"]}}, "unknown curve", id="curve"
        ),
        pytest.param({"http_server_config": {"http2": True}}, "HTTP/2 is not served", id="http2"),
        pytest.param(
            {"http_server_config": {"headers": {"Server": "x"}}}, "cannot be set", id="header"
        ),
        pytest.param(
            {"http_server_config": {"headers": {"X-Frame-Options": "deny\r\nX: y"}}},
            "one-line string",
            id="header-injection",
        ),
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


def test_client_ca_alone_is_refused_as_in_the_toolkit(tmp_path: Path, pki: Pki) -> None:
    """In the toolkit a CA without client_auth_type is an error, not mutual TLS."""
    with pytest.raises(WebConfigError, match="client_auth_type is NoClientCert"):
        web_config_from_mapping(
            {
                "tls_server_config": {
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                    "client_ca_file": str(pki.ca),
                }
            },
            base=tmp_path,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return private_ca(tmp_path_factory.mktemp("pki"))


def client_context(pki: Pki, client: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(*client)
    return context


def test_a_toolkit_mtls_config_loads_and_is_enforced(tmp_path: Path, pki: Pki) -> None:
    """The exporter-toolkit's mutual-TLS example, with every TLS key Python's ssl honours."""
    text = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {pki.ca}
  client_allowed_sans: [prometheus.example]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: true
  curve_preferences: [X25519]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
"""
    allowed = pki.client("prometheus", "DNS:prometheus.example")
    other = pki.client("intruder", "DNS:intruder.example")
    for web in serve(tmp_path, text):
        url = f"{web.url}/metrics"
        response = httpx.get(url, verify=client_context(pki, allowed))
        assert response.status_code == 200
        assert response.headers["x-frame-options"] == "deny"
        assert response.headers["x-content-type-options"] == "nosniff"
        for refused in (None, other):  # no certificate; a certificate with another SAN
            with pytest.raises(httpx.HTTPError):
                httpx.get(url, verify=client_context(pki, refused), timeout=3)
        assert httpx.get(f"{web.url}/health/live", verify=client_context(pki, allowed)).is_success


def test_verify_client_cert_if_given_lets_clients_without_one_in(tmp_path: Path, pki: Pki) -> None:
    text = f"""
tls_server_config:
  cert_file: {pki.server_cert}
  key_file: {pki.server_key}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {pki.ca}
"""
    for web in serve(tmp_path, text):
        assert httpx.get(f"{web.url}/metrics", verify=client_context(pki, None)).is_success
        signed = pki.client("given", "DNS:given.example")
        assert httpx.get(f"{web.url}/metrics", verify=client_context(pki, signed)).is_success


def test_inline_certificate_and_key(tmp_path: Path, pki: Pki) -> None:
    cert = textwrap.indent(pki.server_cert.read_text(), "    ")
    key = textwrap.indent(pki.server_key.read_text(), "    ")
    text = f"tls_server_config:\n  cert: |\n{cert}\n  key: |\n{key}\n"
    for web in serve(tmp_path, text):
        assert httpx.get(f"{web.url}/metrics", verify=client_context(pki, None)).is_success


def test_certificates_are_reloaded_when_the_files_change(tmp_path: Path, pki: Pki) -> None:
    first, second = private_ca(make_dir(tmp_path / "first")), pki
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(first.server_cert, cert)
    shutil.copy(first.server_key, key)
    config_file = tmp_path / "web.yml"
    config_file.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    watcher = WebConfigWatcher(config_file, check_every=0.0)
    web = WebServer("127.0.0.1", 0, CollectorRegistry(), lambda: READY, security=watcher.current)
    web.start()
    try:
        assert httpx.get(f"{web.url}/metrics", verify=client_context(first, None)).is_success
        # Renewed on disk (as cert-manager or certbot do): the next connection gets the new one.
        shutil.copy(second.server_cert, cert)
        shutil.copy(second.server_key, key)
        os.utime(cert, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        assert httpx.get(f"{web.url}/metrics", verify=client_context(second, None)).is_success
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{web.url}/metrics", verify=client_context(first, None), timeout=3)
        # A broken file is not taken: the last good certificate keeps serving.
        key.write_text("not a key")
        assert not watcher.reload()
        assert httpx.get(f"{web.url}/metrics", verify=client_context(second, None)).is_success
    finally:
        web.stop()


def make_dir(path: Path) -> Path:
    path.mkdir()
    return path


def test_an_idle_tls_client_does_not_block_others(tmp_path: Path, pki: Pki) -> None:
    text = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    for web in serve(tmp_path, text):
        host, port = web.addresses[0]
        with socket.create_connection((host, port)):  # connects, never says hello
            started = time.monotonic()
            live = httpx.get(f"{web.url}/health/live", verify=client_context(pki, None), timeout=2)
            assert live.status_code == 200
            assert time.monotonic() - started < 1
