"""Tests for app: what makes the exporter unready, and a stop that does not wait on the network."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.sinks.span_sink import JsonLinesSender
from studio_exporter.sources.poller import utc_now

ACCOUNT_SID = "AC" + "1" * 32


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An http URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def make_exporter(
    tmp_path: Path, base_url: str, mode: str = "poll", request_timeout: str = "10s"
) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": base_url,
            "state_dir": str(tmp_path / "state"),
            "mode": mode,
            "request_timeout": request_timeout,
        },
        {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "token"},
    )
    return build_exporter(
        config,
        env={},
        span_sender=JsonLinesSender(tmp_path / "spans.jsonl"),
        serve_web=False,
    )


def polled(exporter: Exporter) -> None:
    exporter.poller.last_success = exporter.poller.clock()


def polled_long_ago(exporter: Exporter) -> None:
    exporter.poller.last_success = utc_now() - timedelta(hours=1)


def poll_failing(exporter: Exporter) -> None:
    polled(exporter)
    exporter.poller.consecutive_failures = 3


def spans_failing(exporter: Exporter) -> None:
    polled(exporter)
    exporter.shipper.failing_since = time.monotonic() - 60


def push_failing(exporter: Exporter) -> None:
    polled(exporter)
    assert exporter.push is not None
    exporter.push.consecutive_failures = 2


@pytest.mark.parametrize(
    ("mode", "condition", "ready", "reason"),
    [
        pytest.param("poll", polled, True, None, id="poll-fresh"),
        pytest.param("poll", lambda exporter: None, False, "poll", id="poll-starting"),
        pytest.param("poll", polled_long_ago, False, "poll", id="poll-stale"),
        pytest.param("poll", poll_failing, False, "poll_failures", id="poll-failing"),
        pytest.param("poll", spans_failing, True, "spans", id="poll-tracing-backend-down"),
        pytest.param("push", lambda exporter: None, True, None, id="push-starting"),
        pytest.param("push", push_failing, True, "push", id="push-rest-failing"),
        pytest.param("push", spans_failing, True, "spans", id="push-tracing-backend-down"),
        pytest.param("hybrid", lambda exporter: None, True, "poll", id="hybrid-starting"),
        pytest.param("hybrid", poll_failing, True, "poll_failures", id="hybrid-poll-failing"),
    ],
)
def test_readiness_follows_what_the_exporter_can_still_do(
    tmp_path: Path,
    mode: str,
    condition: Callable[[Exporter], None],
    ready: bool,
    reason: str | None,
) -> None:
    exporter = make_exporter(tmp_path, "http://127.0.0.1:9", mode)
    try:
        condition(exporter)
        readiness = exporter.readiness()
    finally:
        exporter.close()
    assert readiness.ready is ready
    if reason is None:
        assert dict(readiness.reasons) == {}
    else:
        assert reason in readiness.reasons


def test_serve_cancels_a_cycle_stuck_on_the_network_after_the_grace(
    tmp_path: Path, black_hole: str
) -> None:
    exporter = make_exporter(tmp_path, black_hole, request_timeout="60s")

    async def scenario() -> float:
        stop = asyncio.Event()
        serving = asyncio.ensure_future(exporter.serve(stop, grace=0.5))
        await asyncio.sleep(0.5)  # the first cycle is waiting on the black hole
        assert not serving.done()
        stop.set()
        started = time.monotonic()
        await serving
        took = time.monotonic() - started
        await exporter.api.aclose()
        return took

    try:
        took = asyncio.run(scenario())
    finally:
        exporter.close()
    assert took < 5.0, f"serve took {took:.1f}s to stop"
    assert exporter.poller.last_success is None
