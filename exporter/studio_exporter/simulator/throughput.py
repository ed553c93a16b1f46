"""Measure how many steps-page requests per second the simulator serves (``python -m``).

The simulator runs in a child process (as ``studio-exporter simulate`` would) and a light
raw-socket asyncio client keeps ``connections`` keep-alive connections busy, so that the
figure is the simulator's and not an HTTP client library's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

from .service import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

_AUTH = "Basic " + base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode()).decode()


def _get_json(url: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": _AUTH})  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        payload: dict[str, object] = json.load(response)
        return payload


def _step_paths(base: str, limit: int) -> list[str]:
    flows = _get_json(f"{base}/v2/Flows")["flows"]
    assert isinstance(flows, list)
    paths: list[str] = []
    for flow in flows:
        page = _get_json(f"{base}/v2/Flows/{flow['sid']}/Executions?PageSize=1000")
        executions = page["executions"]
        assert isinstance(executions, list)
        paths.extend(urlsplit(e["links"]["steps"]).path + "?PageSize=1000" for e in executions)
    return paths[:limit]


async def _worker(host: str, port: int, paths: list[str], deadline: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < deadline:
            path = paths[done % len(paths)]
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {_AUTH}\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            done += 1
    finally:
        writer.close()
    return done


async def _blast(host: str, port: int, paths: list[str], seconds: float, connections: int) -> int:
    deadline = time.perf_counter() + seconds
    counts = await asyncio.gather(
        *(_worker(host, port, paths[i::connections] or paths, deadline) for i in range(connections))
    )
    return sum(counts)


def measure(seconds: float = 5.0, connections: int = 16, executions: int = 2000) -> float:
    """Steps-page requests per second served by a simulator in a child process."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from studio_exporter.simulator.cli import main; "
            "sys.exit(main(sys.argv[1:]))",
            "--port",
            "0",
            "--rate",
            "0",
            "--history-executions",
            str(executions),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        base = line.rsplit(" ", 1)[-1].strip()
        parts = urlsplit(base)
        if parts.hostname is None or parts.port is None:
            raise RuntimeError(f"the simulator did not print its URL: {line!r}")
        paths = _step_paths(base, executions)
        started = time.perf_counter()
        served = asyncio.run(_blast(parts.hostname, parts.port, paths, seconds, connections))
        return served / (time.perf_counter() - started)
    finally:
        child.terminate()
        child.wait(timeout=10)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(list(argv))
    rate = measure(args.seconds, args.connections)
    print(f"simulator steps pages: {rate:.0f} requests/s ({args.connections} connections)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
