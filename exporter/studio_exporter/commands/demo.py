"""`studio-exporter demo` (`make run`): the simulator in-process, the exporter following it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import (
    DEMO_LISTEN_ADDRESS,
    ENV_VARS,
    ConfigError,
    config_from_mapping,
    parse_duration,
)
from studio_exporter.logs import configure_logging
from studio_exporter.signals import stop_on_signals
from studio_exporter.simulator import Simulator, SimulatorConfig

SUMMARY_EVERY_SECONDS = 5.0


def run_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The demo; ``--web.listen-address`` comes from the flag, the environment, or loopback."""
    from_env = (env[var] for var in ENV_VARS["listen_address"] if env.get(var))
    listen_address = args.listen_address or next(from_env, DEMO_LISTEN_ADDRESS)
    state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="studio-exporter-demo-"))
    simulator = Simulator(
        SimulatorConfig(
            seed=args.seed,
            history_executions=args.history_executions,
            history_days=1,
            rate=args.rate,
            speed=args.speed,
        )
    )
    simulator.start()
    flags = {
        "twilio_base_url": simulator.url,
        "state_dir": str(state_dir),
        "listen_address": listen_address,
        "poll_interval": args.poll_interval,
        "lookback": "2d",
        "log_level": args.log_level,
    }
    credentials = {
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
    }
    try:
        config = config_from_mapping(flags, credentials)
        duration = parse_duration(args.duration) if args.duration else None
    except (ConfigError, ValueError) as error:
        simulator.stop()
        print(f"studio-exporter demo: {error}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, "text", [simulator.auth_token])
    try:
        exporter = build_exporter(config, env=env)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        # The default port is taken (another demo?): any free loopback port will do.
        flags["listen_address"] = "127.0.0.1:0"
        config = config_from_mapping(flags, credentials)
        exporter = build_exporter(config, env=env)
    try:
        exporter.start()
        _print_banner(sys.stdout, simulator, exporter)
        asyncio.run(_follow(exporter, None if duration is None else duration.total_seconds()))
    finally:
        exporter.close()
        simulator.stop()
    print(f"\nstopped. State and spans are kept in {state_dir}")
    return 0


def _print_banner(out: TextIO, simulator: Simulator, exporter: Exporter) -> None:
    assert exporter.web is not None
    flows = ", ".join(simulator.flow_sids)
    out.write(
        "Twilio Studio exporter — demo on the built-in Studio simulator\n"
        f"  simulator (Studio API):  {simulator.url}  "
        f"(basic auth {simulator.account_sid} / {simulator.auth_token})\n"
        f"  metrics:                 {exporter.web.url}/metrics\n"
        f"  health:                  {exporter.web.url}/health/ready\n"
        f"  traces (OTLP JSON lines): {exporter.spans_file or 'sent to OTEL_EXPORTER_OTLP_*'}\n"
        f"  flows:                   {flows}\n"
        "  an execution as a waterfall:\n"
        f"    TWILIO_ACCOUNT_SID={simulator.account_sid} TWILIO_AUTH_TOKEN={simulator.auth_token} "
        f"studio-exporter trace --twilio-base-url {simulator.url} FLOW_SID EXECUTION_SID\n"
        "Ctrl-C to stop.\n\n"
    )
    out.flush()


async def _follow(exporter: Exporter, duration: float | None) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    started = time.monotonic()

    async def summaries() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=SUMMARY_EVERY_SECONDS)
            print(summary(exporter.registry, time.monotonic() - started), flush=True)
            if duration is not None and time.monotonic() - started >= duration:
                stop.set()

    try:
        await asyncio.gather(exporter.serve(stop), summaries())
    finally:
        await exporter.api.aclose()


def _values(registry: CollectorRegistry, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(sample.labels), sample.value)
        for family in registry.collect()
        for sample in family.samples
        if sample.name == name
    ]


def summary(registry: CollectorRegistry, elapsed: float) -> str:
    """A few lines on what the exporter has seen, read back from its own metrics."""
    started = sum(v for _, v in _values(registry, "twilio_studio_executions_started_total"))
    ended = sum(v for _, v in _values(registry, "twilio_studio_executions_ended_total"))
    active = sum(v for _, v in _values(registry, "twilio_studio_executions_active"))
    steps = sum(v for _, v in _values(registry, "twilio_studio_steps_total"))
    busiest: Counter[str] = Counter()
    for labels, value in _values(registry, "twilio_studio_steps_total"):
        busiest[f"{labels['flow']} / {labels['widget']}"] += int(value)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for labels, value in _values(registry, "twilio_studio_step_duration_seconds_sum"):
        sums[f"{labels['flow']} / {labels['widget']}"] = value
    for labels, value in _values(registry, "twilio_studio_step_duration_seconds_count"):
        counts[f"{labels['flow']} / {labels['widget']}"] = value
    slowest = sorted(
        ((sums[key] / counts[key], key) for key in sums if counts.get(key)), reverse=True
    )[:3]
    lines = [
        f"[{elapsed:6.0f}s] executions: {started:.0f} started, {ended:.0f} ended, "
        f"{active:.0f} active; steps exported: {steps:.0f}",
        "  busiest widgets: "
        + ", ".join(f"{key} ({count})" for key, count in busiest.most_common(3)),
        "  slowest widgets (mean): " + ", ".join(f"{key} ({mean:.0f}s)" for mean, key in slowest),
    ]
    return "\n".join(lines)
