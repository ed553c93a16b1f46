"""`studio-exporter run` as a child process, and its /metrics scraped back into a registry."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

_SERVING = re.compile(r"serving /metrics on (https?://(?:[0-9.]+|\[[0-9a-fA-F:]+\]):\d+)/metrics")


def exporter_command(*args: str) -> list[str]:
    """The command line of the installed CLI, run by this interpreter (same venv)."""
    return [sys.executable, "-m", "studio_exporter.cli", *args]


class ExporterProcess:
    """One run of ``studio-exporter run``; stdout and stderr go to ``log_path`` (appended)."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self) -> ExporterProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            exporter_command("run", *self.args),
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def own_log(self) -> str:
        """What this run (not the earlier ones sharing the file) has written so far."""
        with self.log_path.open("rb") as handle:
            handle.seek(self._log_offset)
            return handle.read().decode(errors="replace")

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = compiled.search(self.own_log())
            if found:
                return found
            if not self.running():
                break
            time.sleep(0.05)
        raise AssertionError(f"no {compiled.pattern!r} in the log:\n{self.own_log()[-3000:]}")

    def web_url(self, timeout: float = 30.0) -> str:
        """The base URL of /metrics, read from the start-up log line."""
        return self.wait_for_log(_SERVING, timeout).group(1)

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or committed."""
        if self._process is not None and self.running():
            os.kill(self._process.pid, signal.SIGKILL)
        self._reap()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful stop. Returns the exit status."""
        assert self._process is not None
        if self.running():
            self._process.send_signal(signal.SIGTERM)
        try:
            code = self._process.wait(timeout=timeout)
        finally:
            self._reap()
        return code

    def _reap(self) -> None:
        if self._process is not None:
            if self.running():
                self._process.kill()
            self._process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None


class _Scraped(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def scrape(base_url: str) -> tuple[str, CollectorRegistry]:
    """GET /metrics, and the same samples in a registry (so truthcheck can read them)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    registry = CollectorRegistry()
    registry.register(_Scraped(text_string_to_metric_families(text)))
    return text, registry
