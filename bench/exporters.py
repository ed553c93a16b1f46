"""Our exporter assembled for a benchmark: no web server unless asked; spans encoded, dropped."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.sources.poller import utc_now


class CountingSpanSender:
    """A SpanSender without the network: counts the spans and the protobuf bytes it is given
    (the shipper has already encoded them, as it does for a real OTLP receiver)."""

    def __init__(self) -> None:
        self.spans = 0
        self.bytes = 0

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        self.bytes += len(payload)
        self.spans += count
        return True

    def shutdown(self) -> None:
        return None


def our_exporter(
    url: str,
    account_sid: str,
    auth_token: str,
    state_dir: Path,
    *,
    concurrency: int = 32,
    lookback: str = "3d",
    poll_interval: str = "30s",
    serve_web: bool = False,
    clock: Callable[[], datetime] = utc_now,
    mode: str = "poll",
) -> tuple[Exporter, CountingSpanSender]:
    """A started exporter against ``url`` and the span exporter it ships to."""
    config = config_from_mapping(
        {
            "twilio_base_url": url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "lookback": lookback,
            "poll_interval": poll_interval,
            "concurrency": str(concurrency),
            "mode": mode,
        },
        {"TWILIO_ACCOUNT_SID": account_sid, "TWILIO_AUTH_TOKEN": auth_token},
    )
    sink = CountingSpanSender()
    exporter = build_exporter(config, env={}, span_sender=sink, serve_web=serve_web, clock=clock)
    exporter.start()
    return exporter, sink
