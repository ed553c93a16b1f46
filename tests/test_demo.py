"""`make run` is `studio-exporter demo`: it must start, serve every metric with data, and stop."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

METRICS_WITH_DATA = (
    "twilio_studio_steps_total",
    "twilio_studio_step_duration_seconds_bucket",
    "twilio_studio_executions_started_total",
    "twilio_studio_executions_ended_total",
    "twilio_studio_execution_duration_seconds_bucket",
    "twilio_studio_executions_active",
    "twilio_studio_widget_visits_in_progress",
    "twilio_studio_step_gaps_total",
    "twilio_studio_exporter_api_requests_total",
    "twilio_studio_exporter_poll_cycles_total",
    "twilio_studio_exporter_last_successful_poll_timestamp_seconds",
    "twilio_studio_exporter_export_lag_seconds_bucket",
    "twilio_studio_exporter_spans_exported_total",
)


def test_demo_serves_every_metric_then_stops(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-c",
        "import sys; from studio_exporter.cli import main; sys.exit(main(sys.argv[1:]))",
        "demo",
        "--web.listen-address",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path),
        "--history-executions",
        "300",
        "--poll-interval",
        "1s",
        "--duration",
        "12s",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        banner = "".join(process.stdout.readline() for _ in range(3))
        match = re.search(r"metrics:\s+(http://\S+)/metrics", banner)
        assert match, banner
        url = match.group(1)
        text = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = httpx.get(f"{url}/metrics", timeout=5).text
            if all(_has_sample(text, name) for name in METRICS_WITH_DATA):
                break
            time.sleep(0.5)
        missing = [name for name in METRICS_WITH_DATA if not _has_sample(text, name)]
        assert missing == []
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "executions:" in rest, "no live summary printed"
    assert "stopped." in rest
    assert (tmp_path / "spans.otlp.jsonl").stat().st_size > 0


def _has_sample(text: str, name: str) -> bool:
    return any(line.startswith((f"{name}{{", f"{name} ")) for line in text.splitlines())


def test_demo_listens_where_the_environment_says(tmp_path: Path) -> None:
    # A container sets STUDIO_EXPORTER_WEB_LISTEN_ADDRESS=0.0.0.0:9911 so a published port
    # reaches the demo; 127.0.0.2 shows the variable was followed without opening a public port.
    command = [
        sys.executable,
        "-c",
        "import sys; from studio_exporter.cli import main; sys.exit(main(sys.argv[1:]))",
        "demo",
        "--state-dir",
        str(tmp_path),
        "--history-executions",
        "20",
        "--duration",
        "1s",
    ]
    env = {**os.environ, "STUDIO_EXPORTER_WEB_LISTEN_ADDRESS": "127.0.0.2:0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert re.search(r"metrics:\s+http://127\.0\.0\.2:\d+/metrics", done.stdout), done.stdout
