"""Tests for logs: secrets and Authorization headers never reach a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from studio_exporter.logs import REDACTED, JsonFormatter, RedactingFilter

TOKEN = "s3cr3t-token-0123456789"


def emit(message: str, *args: object, exc: bool = False, json_lines: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([TOKEN]))
    if json_lines:
        handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        if exc:
            try:
                raise RuntimeError(f"failed with {TOKEN}")
            except RuntimeError:
                logger.exception(message, *args)
        else:
            logger.debug(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize(
    ("message", "args"),
    [
        pytest.param("token is %s", (TOKEN,), id="argument"),
        pytest.param(f"token is {TOKEN}", (), id="in-message"),
        pytest.param("headers %s", ({"Authorization": "Basic QUM6dG9r"},), id="auth-header"),
        pytest.param("Authorization: Bearer abc.def", (), id="bearer"),
    ],
)
def test_secrets_are_scrubbed(message: str, args: tuple[object, ...]) -> None:
    line = emit(message, *args)
    assert TOKEN not in line
    assert "QUM6dG9r" not in line
    assert "abc.def" not in line
    assert REDACTED in line


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://otlp-user:p4ssw0rd@collector:4318/v1/traces", id="user-and-password"),
        pytest.param("http://p4ssw0rd@collector/v1/traces", id="token-as-user"),
        pytest.param("grpcs://me:p4ssw0rd@[::1]:4317", id="ipv6-grpc"),
    ],
)
def test_user_info_in_urls_is_scrubbed(url: str) -> None:
    line = emit("sending spans to %s failed", url)
    assert "p4ssw0rd" not in line
    assert "otlp-user" not in line
    assert f"{REDACTED}@" in line


def test_exception_text_is_scrubbed() -> None:
    text = emit("boom", exc=True)
    assert TOKEN not in text
    assert "RuntimeError" in text


def test_json_lines() -> None:
    entry = json.loads(emit("hello %s", TOKEN, json_lines=True))
    assert entry["message"] == f"hello {REDACTED}"
    assert entry["level"] == "debug"
