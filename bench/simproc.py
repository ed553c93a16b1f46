"""The simulator in a child process, so that serving requests does not share our GIL."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from studio_exporter.simulator import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

_LAUNCH = "import sys; from studio_exporter.simulator.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class ChildSimulator:
    url: str
    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: str = DEFAULT_AUTH_TOKEN

    def truth(self) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/_simulator/truth",
            headers={"Authorization": _basic(self.account_sid, self.auth_token)},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            truth: dict[str, Any] = json.load(response)
        return truth

    def requests_by_operation(self) -> dict[str, int]:
        counts: dict[str, int] = self.truth()["requests"]["by_operation"]
        return counts


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@contextmanager
def child_simulator(*args: str) -> Iterator[ChildSimulator]:
    """``studio-exporter simulate`` with ``args`` in a child process, stopped on exit."""
    child = subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the simulator did not start: {line!r}")
        yield ChildSimulator(line.rsplit(" ", 1)[-1].strip())
    finally:
        child.terminate()
        child.wait(timeout=30)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Requests per operation between two readings of the simulator's counts."""
    return {
        op: after.get(op, 0) - before.get(op, 0) for op in after if after[op] != before.get(op, 0)
    }
