"""Rows 1, 2, 5 and 6: backfill, steady state, freshness and the simulator's own throughput."""

from __future__ import annotations

import asyncio
import bisect
import functools
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from studio_exporter.config import DEFAULT_BACKFILL_CONCURRENCY
from studio_exporter.core.eventstreams import STEP_ENDED
from studio_exporter.simulator import (
    DeliveryOptions,
    EventStreamsPusher,
    FakeClock,
    Simulator,
    SimulatorConfig,
    throughput,
)
from studio_exporter.simulator.eventstreams import EventFeed, EventStreamSender
from studio_exporter.sources.poller import CycleReport, utc_now
from studio_exporter.store.sqlite import Store

from . import sdk
from .exporters import our_exporter
from .naive import NaiveExporter
from .simproc import ChildSimulator, child_simulator, delta

LOOKBACK = timedelta(days=3)
#: Runs of our backfill against the same data (the median is reported).
BACKFILL_RUNS = 3
#: How often the push latency row scrapes /metrics while a delivered step is not yet counted.
SCRAPE_EVERY = 0.025


def _run(coro_factory: Any, exporter: Any) -> CycleReport:
    async def scenario() -> CycleReport:
        try:
            result: CycleReport = await coro_factory()
            return result
        finally:
            await exporter.api.aclose()

    return asyncio.run(scenario())


def backfill(
    executions: int, latency_ms: float, concurrency: int, baseline_executions: int
) -> dict[str, Any]:
    """Ours and the naive loop catch up on ``executions`` ended executions over HTTP."""
    args = (
        "--rate",
        "0",
        "--history-executions",
        str(executions),
        "--history-days",
        "2",
        "--latency-ms",
        str(latency_ms),
        "--max-concurrency",
        str(concurrency),
        "--seed",
        "1",
    )
    result: dict[str, Any] = {
        "executions": executions,
        "latency_ms": latency_ms,
        "concurrency": concurrency,
    }
    with child_simulator(*args) as sim:
        # Each run from an empty state directory; the machine is shared, so the median of
        # BACKFILL_RUNS is reported, with every run's figure.
        runs: list[float] = []
        for _ in range(BACKFILL_RUNS):
            before = sim.requests_by_operation()
            with tempfile.TemporaryDirectory() as directory:
                exporter, sink = our_exporter(
                    sim.url,
                    sim.account_sid,
                    sim.auth_token,
                    Path(directory),
                    concurrency=concurrency,
                )
                started = time.perf_counter()
                report = _run(
                    functools.partial(exporter.poller.backfill, utc_now() - LOOKBACK), exporter
                )
                exporter.shipper.flush()
                runs.append(time.perf_counter() - started)
                exporter.close()
            ours = delta(sim.requests_by_operation(), before)
            if runs[1:] and (
                sum(ours.values()) != result["ours_requests"]
                or report.steps_exported != result["ours_steps"]
                or sink.spans != result["ours_spans"]
            ):
                raise RuntimeError(f"backfill runs disagree: {ours}, {report}, {sink.spans}")
            result["ours_requests"] = sum(ours.values())
            result["ours_by_operation"] = ours
            result["ours_steps"] = report.steps_exported
            result["ours_spans"] = sink.spans
        result["ours_seconds_runs"] = runs
        result["ours_seconds"] = statistics.median(runs)
        truth = sim.truth()
        result["throttled_429"] = truth["faults"].get("concurrency_429", 0)
        per_flow = [flow["executions_ended"] for flow in truth["flows"].values()]
        result["minimum_requests"] = _minimum(ours, per_flow)
        # The same data read as a user would: the command with default flags, in its own process.
        before = sim.requests_by_operation()
        result["defaults_seconds"], result["defaults_steps"] = _cli_backfill(sim, LOOKBACK)
        result["defaults_requests"] = sum(delta(sim.requests_by_operation(), before).values())
        result["defaults_concurrency"] = DEFAULT_BACKFILL_CONCURRENCY
    with child_simulator(*args[:3], str(baseline_executions), *args[4:]) as sim:
        before = sim.requests_by_operation()
        naive = NaiveExporter(sim.url, sim.account_sid, sim.auth_token, lookback=LOOKBACK)
        started = time.perf_counter()
        naive_report = naive.cycle()
        result["baseline_seconds_measured"] = time.perf_counter() - started
        result["baseline_executions"] = baseline_executions
        result["baseline_requests_measured"] = sum(
            delta(sim.requests_by_operation(), before).values()
        )
        result["baseline_steps"] = naive_report.steps_new
        before = sim.requests_by_operation()
        started = time.perf_counter()
        sdk_report = sdk.read_all(sim.url, sim.account_sid, sim.auth_token, utc_now() - LOOKBACK)
        result["sdk_seconds_measured"] = time.perf_counter() - started
        result["sdk_requests_measured"] = sum(delta(sim.requests_by_operation(), before).values())
        result["sdk_steps"] = sdk_report.steps
    scale = executions / baseline_executions
    result["baseline_extrapolated"] = baseline_executions != executions
    result["baseline_seconds"] = result["baseline_seconds_measured"] * scale
    result["baseline_requests"] = round(result["baseline_requests_measured"] * scale)
    result["sdk_seconds"] = result["sdk_seconds_measured"] * scale
    result["sdk_requests"] = round(result["sdk_requests_measured"] * scale)
    result["floor_seconds"] = result["ours_requests"] * latency_ms / 1000 / concurrency
    return result


def _cli_backfill(sim: ChildSimulator, since: timedelta) -> tuple[float, int]:
    """``studio-exporter backfill --since`` with default flags: wall seconds, steps exported.

    Only the API's address and a fresh state directory are given; no OTLP endpoint is set, so
    spans go to the default file in the state directory, as for a user who has not set one.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(TWILIO_ACCOUNT_SID=sim.account_sid, TWILIO_AUTH_TOKEN=sim.auth_token)
    with tempfile.TemporaryDirectory() as directory:
        command = [
            sys.executable,
            "-m",
            "studio_exporter.cli",
            "backfill",
            "--since",
            f"{since.days}d",
            "--twilio-base-url",
            sim.url,
            "--state-dir",
            directory,
        ]
        started = time.perf_counter()
        done = subprocess.run(
            command, check=False, env=env, capture_output=True, text=True, timeout=600
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"backfill failed ({done.returncode}): {done.stderr[-2000:]}")
    # "backfill: 5 flows, 10000 executions, 56217 steps exported"
    steps = int(done.stdout.rsplit(" executions, ", 1)[1].split(" ", 1)[0])
    return seconds, steps


def _minimum(ours: dict[str, int], per_flow: list[int]) -> int:
    """The flows and their definitions, executions pages of 1,000, one steps page each."""
    pages = sum(max(1, -(-count // 1000)) for count in per_flow)
    return ours.get("ListFlow", 0) + ours.get("FetchFlow", 0) + pages + sum(per_flow)


def steady_state(history: int, active_target: int) -> dict[str, Any]:
    """Requests in one poll cycle once the history is exported, with ~``active_target`` active."""
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    clock = FakeClock(start)
    # Mean execution lasts ~12 minutes in the simulator's flows: Little's law gives the rate.
    rate = active_target / 12.1
    config = SimulatorConfig(
        seed=2, history_executions=history, history_days=2, rate=rate, clock=clock, start=start
    )
    result: dict[str, Any] = {"history": history}
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as directory:
        exporter, _sink = our_exporter(
            sim.url,
            sim.account_sid,
            sim.auth_token,
            Path(directory),
            concurrency=16,
            lookback="3d",
            clock=clock,
        )
        poller = exporter.poller

        async def scenario() -> tuple[CycleReport, dict[str, int]]:
            try:
                await poller.backfill(clock() - LOOKBACK)
                clock.advance(2 * 3600)  # live traffic reaches its steady number of active ones
                await poller.cycle()
                clock.advance(30)
                before = sim.truth()["requests"]["by_operation"]
                report = await poller.cycle()
                return report, delta(sim.truth()["requests"]["by_operation"], before)
            finally:
                await exporter.api.aclose()

        try:
            report, ours = asyncio.run(scenario())
        finally:
            exporter.close()
        now = clock().timestamp()
        active = sum(1 for r in sim.traffic.existing(now) if r.ended_at > now)
        in_window = sum(
            1 for r in sim.traffic.existing(now) if r.created >= now - LOOKBACK.total_seconds()
        )
        result.update(
            active=active,
            in_window=in_window,
            ours_requests=sum(ours.values()),
            ours_by_operation=ours,
            ours_executions_read=report.executions_read,
        )
        before = sim.truth()["requests"]["by_operation"]
        naive = NaiveExporter(sim.url, sim.account_sid, sim.auth_token, lookback=LOOKBACK)
        naive.cycle(clock())
        baseline = delta(sim.truth()["requests"]["by_operation"], before)
        result.update(baseline_requests=sum(baseline.values()), baseline_by_operation=baseline)
    return result


def freshness(seconds: float, poll_interval: float, mode: str = "poll") -> dict[str, Any]:
    """Delay from a step's creation in the simulator to its count in /metrics, and the API
    requests the exporter made meanwhile; ``mode`` push receives the simulator's webhooks."""
    # Traffic starts a few seconds from now, once the exporter (and in push mode the
    # subscription) is up, so every step created is one the exporter can see.
    start = datetime.now(UTC) + timedelta(seconds=3)
    config = SimulatorConfig(seed=4, history_executions=0, rate=20, speed=60, start=start)
    lags: list[float] = []
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as directory:
        exporter, _sink = our_exporter(
            sim.url,
            sim.account_sid,
            sim.auth_token,
            Path(directory),
            concurrency=16,
            lookback="1h",
            poll_interval=f"{poll_interval}s",
            serve_web=True,
            mode=mode,
        )
        requests_before = sum(sim.truth()["requests"]["by_operation"].values())
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            async def main() -> None:
                try:
                    await exporter.run(stop)
                finally:
                    await exporter.api.aclose()

            loop.run_until_complete(main())

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert exporter.web is not None
        pusher = None
        if mode == "push":
            webhook = f"{exporter.web.url}{exporter.config.webhook_path}"
            pusher = sim.push_events_to(webhook, DeliveryOptions(batch_size=50), interval=0.1)
        scrapes: list[tuple[float, float]] = []
        deadline = time.time() + seconds
        with httpx.Client(timeout=5) as client:
            while time.time() < deadline:
                text = client.get(f"{exporter.web.url}/metrics").text
                scrapes.append((time.time(), _steps_total(text)))
                time.sleep(0.05)
        requests = sum(sim.truth()["requests"]["by_operation"].values()) - requests_before
        per_execution: dict[str, Any] = {}
        if pusher is not None:
            pusher.stop()  # before the exporter stops listening: its last batch is delivered
            per_execution = _push_rest_per_execution(sim, exporter.store, pusher.feed)
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        exporter.close()
        created = sorted(
            r.step_time(i) for r in sim.traffic.existing(time.time()) for i in range(r.step_count)
        )
    # The n-th step created appears when the total first reaches n.
    position = 0
    settle = scrapes[0][0] + 2 * poll_interval
    for when, total in scrapes:
        while position < len(created) and position < total:
            if created[position] >= settle:
                lags.append(when - created[position])
            position += 1
    lags.sort()
    return {
        "mode": mode,
        "requests": requests,
        "window_seconds": seconds,
        "poll_interval": poll_interval,
        "steps": len(lags),
        "median_seconds": lags[len(lags) // 2] if lags else float("nan"),
        "p99_seconds": lags[int(len(lags) * 0.99)] if lags else float("nan"),
        "max_seconds": lags[-1] if lags else float("nan"),
        **per_execution,
    }


#: Requests about flows or the account rather than executions: once per flow and revision,
#: and once per account refresh (the account's name for twilio_studio_account_info).
FLOW_OPERATIONS = frozenset({"ListFlow", "FetchFlow", "FetchAccount", "ListAccount"})


def _push_rest_per_execution(sim: Simulator, store: Store, feed: EventFeed) -> dict[str, Any]:
    """REST requests per ended execution in push mode, once every delivered event is processed.

    The feed pushed each of its ended executions whole, so each has had its end-of-execution
    read. Flow reads are counted apart.
    """
    deadline = time.time() + 30
    while store.count_pending_events() and time.time() < deadline:
        time.sleep(0.1)
    by_operation = sim.truth()["requests"]["by_operation"]
    ended = feed.executions_ended
    flow_reads = sum(by_operation.get(operation, 0) for operation in FLOW_OPERATIONS)
    execution_reads = sum(by_operation.values()) - flow_reads
    return {
        "executions_ended": ended,
        "execution_rest_requests": execution_reads,
        "flow_rest_requests": flow_reads,
        "rest_per_execution": execution_reads / max(ended, 1),
    }


def _steps_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("twilio_studio_steps_total{")
    )


def simulator_rate(seconds: float) -> float:
    """Steps-page requests per second the simulator serves (its own probe)."""
    return throughput.measure(seconds=seconds)


Series = tuple[str, str, str, str]  # flow_sid, widget, event, next_widget


class _TimedDeliveries(httpx.Client):
    """The webhook sender's client: notes when each delivery was answered 200 and, for each
    step in it, its ``twilio_studio_steps_total`` series and its rank within that series."""

    def __init__(self) -> None:
        super().__init__(timeout=10.0)
        self.steps_delivered = 0
        self.per_series: dict[Series, int] = {}
        self.answered: list[tuple[float, Series, int]] = []
        self.new_delivery = threading.Event()

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:
        response = super().post(url, **kwargs)
        if response.status_code == 200:
            answered = time.perf_counter()
            for event in json.loads(kwargs["content"]):
                if event["type"] != STEP_ENDED:
                    continue
                data = event["data"]
                series = (
                    data["flow_sid"],
                    data["transitioned_from"],
                    data["name"],
                    data["transitioned_to"],
                )
                rank = self.per_series.get(series, 0) + 1
                self.per_series[series] = rank
                self.answered.append((answered, series, rank))
                self.steps_delivered += 1
            self.new_delivery.set()
        return response


def push_latency(seconds: float) -> dict[str, Any]:
    """From the webhook's 200 to the step counted in /metrics, under steady live traffic.

    ``studio-exporter run --mode push`` with default flags runs in its own process; the
    simulator's traffic (20 executions a second, ~110 steps a second) reaches it as signed
    Event Streams batches every 0.1 s. While a delivered step is not yet counted, /metrics is
    scraped every ``SCRAPE_EVERY`` (and not at all otherwise: a scrape costs the exporter
    several ms of CPU). A step counts as visible at the end of the first scrape after its 200
    where its own series of ``twilio_studio_steps_total`` (flow, widget, event, next widget)
    reaches its rank in that series: a step the exporter holds back (a subflow's, until its
    parent step arrives) delays only the steps of its series, not every later one.
    """
    start = datetime.now(UTC) + timedelta(seconds=3)
    config = SimulatorConfig(seed=5, history_executions=0, rate=20, speed=60, start=start)
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as directory:
        env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
        env.update(TWILIO_ACCOUNT_SID=sim.account_sid, TWILIO_AUTH_TOKEN=sim.auth_token)
        command = [
            sys.executable,
            "-m",
            "studio_exporter.cli",
            "run",
            "--mode",
            "push",
            "--twilio-base-url",
            sim.url,
            "--web.listen-address",
            "127.0.0.1:0",
            "--state-dir",
            directory,
        ]
        child = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        try:
            base = _served_url(child)
            timed = _TimedDeliveries()
            feed = EventFeed(sim.traffic, sim.renderer, since=time.time())
            sender = EventStreamSender(
                f"{base}/webhooks/event-streams",
                sim.auth_token,
                DeliveryOptions(batch_size=50),
                client=timed,
            )
            pusher = EventStreamsPusher(feed, sender, time.time, interval=0.1)
            scrapes: list[tuple[float, dict[Series, float]]] = []
            scrape_seconds: list[float] = []
            pusher.start()
            deadline = time.perf_counter() + seconds
            seen = 0.0
            with httpx.Client(timeout=5) as client:
                while time.perf_counter() < deadline:
                    if seen >= timed.steps_delivered:
                        # Nothing outstanding: wait for the next delivery rather than scrape
                        # an exporter with nothing to show (a scrape costs it CPU).
                        timed.new_delivery.wait(timeout=0.5)
                        timed.new_delivery.clear()
                        continue
                    began = time.perf_counter()
                    text = client.get(f"{base}/metrics").text
                    done = time.perf_counter()
                    counts = _steps_by_series(text)
                    seen = sum(counts.values())
                    scrapes.append((done, counts))
                    scrape_seconds.append(done - began)
                    time.sleep(max(0.0, SCRAPE_EVERY - (done - began)))
            pusher.stop()
        finally:
            child.terminate()
            child.wait(timeout=30)
    settle = timed.answered[0][0] + 2.0 if timed.answered else 0.0
    lags: list[float] = []
    not_seen = 0
    times = [when for when, _ in scrapes]
    for answered, series, rank in timed.answered:
        if answered < settle:
            continue
        visible = next(
            (
                when
                for when, counts in scrapes[bisect.bisect_left(times, answered) :]
                if counts.get(series, 0) >= rank
            ),
            None,
        )
        if visible is None:
            not_seen += 1
        else:
            lags.append(visible - answered)
    lags.sort()
    scrape_seconds.sort()
    return {
        "window_seconds": seconds,
        "steps": len(lags),
        "steps_not_seen": not_seen,
        "deliveries": len({answered for answered, _, _ in timed.answered}),
        "median_seconds": lags[len(lags) // 2] if lags else float("nan"),
        "p99_seconds": lags[int(len(lags) * 0.99)] if lags else float("nan"),
        "max_seconds": lags[-1] if lags else float("nan"),
        "scrape_median_seconds": scrape_seconds[len(scrape_seconds) // 2],
        "scrape_every_seconds": SCRAPE_EVERY,
    }


_STEPS_LINE = re.compile(r"^twilio_studio_steps_total\{(.*)\} (\S+)$", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _steps_by_series(text: str) -> dict[Series, float]:
    counts: dict[Series, float] = {}
    for labels_text, value in _STEPS_LINE.findall(text):
        labels = dict(_LABEL.findall(labels_text))
        series = (labels["flow_sid"], labels["widget"], labels["event"], labels["next_widget"])
        counts[series] = counts.get(series, 0.0) + float(value)
    return counts


def _served_url(child: subprocess.Popen[str]) -> str:
    """The exporter's base URL, from its log line ``serving /metrics on URL/metrics``."""
    assert child.stderr is not None
    for line in child.stderr:
        found = re.search(r"serving /metrics on (\S+)/metrics", line)
        if found:
            # Keep draining its log so that the child never blocks on a full pipe.
            threading.Thread(target=child.stderr.read, daemon=True).start()
            return found.group(1)
    raise RuntimeError(f"the exporter did not start (exit code {child.wait()})")
