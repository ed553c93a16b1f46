"""A real Prometheus scraping the exporter on the simulator: every panel and alert query works."""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from grafana.dashboards import TEMPLATE_VARIABLES, PanelQuery, panel_queries, substitute
from studio_exporter.simulator import Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "grafana" / "alerts" / "studio-exporter.rules.yml"
JOB = "twilio-studio-exporter"  # the alert rules and the health dashboard match `.*studio.*`

# Grafana's view of the stack: a one-minute time range drawn with a point every 2 s. With a
# 1 s scrape, $__rate_interval would be 4 s; one minute keeps every rate() well fed on a
# stack that has only lived for seconds, and it is what a real 1m-scrape setup would use.
RANGE_SECONDS = 60
STEP_SECONDS = 2
VARIABLE_DEFAULTS = {
    "datasource": "prometheus",
    "tracing": "tempo",
    "__interval": f"{STEP_SECONDS}s",
    "__rate_interval": "1m",
    "__range": f"{RANGE_SECONDS}s",
}
# Scrapes after the exporter's first poll cycle before the queries run: enough for rate() and
# for the rule groups to have been evaluated a few times.
MIN_SCRAPES_AFTER_FIRST_CYCLE = 6
STARTUP_TIMEOUT = 45.0
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")

# Live traffic: 12 new executions per simulated minute at 60x speed is 12 per real second, and a
# one-minute wait lasts a second, so executions start, move, and end while Prometheus watches;
# people who never answer keep some of them active. The history only has to be there (the
# end-to-end test proves a 1,500-execution backfill): 500 keeps the first poll cycle short on a
# busy machine.
SIMULATOR = SimulatorConfig(seed=23, history_executions=500, history_days=1, rate=12, speed=60)


def program(name: str) -> str:
    """Path to a Prometheus binary; in CI its absence is a failure, locally a reasoned skip."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{name} is required in CI (apt-get install prometheus)")
        pytest.skip(f"{name} not installed (apt-get install prometheus); required when CI=true")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def grafana_escape(value: str, *, multi: bool) -> str:
    """A variable value as Grafana's Prometheus data source interpolates it.

    Multi-value variables (the overview's flow) are regex-escaped inside a PromQL string;
    single-value ones only get their backslashes and quotes escaped.
    """
    if multi:
        value = value.replace("\\", "\\\\\\\\")
        return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)
    return value.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class Process:
    """A started program whose output goes to a log file, for error messages."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def start(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    with log.open("wb") as out:
        popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Process(name, popen, log)


class QueryError(AssertionError):
    """Prometheus refused a query or answered with an error."""


@dataclass
class Stack:
    simulator: Simulator
    exporter: Process
    prometheus: Process
    exporter_url: str
    prometheus_url: str
    client: httpx.Client

    def api(self, path: str, **params: str) -> Any:
        response = self.client.get(f"{self.prometheus_url}/api/v1/{path}", params=params)
        if response.status_code == 503:  # not ready yet: a plain-text "Service Unavailable"
            raise QueryError(f"{path}: Prometheus is not ready yet")
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"{path} {params}: HTTP {response.status_code}: {body}")
        return body["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=f"{time.time():.3f}")
        return _as_list(data)

    def query_range(self, expr: str) -> list[dict[str, Any]]:
        # Grafana aligns the range to the step, so the points fall on the same grid each refresh.
        end = math.floor(time.time() / STEP_SECONDS) * STEP_SECONDS
        data = self.api(
            "query_range",
            query=expr,
            start=str(end - RANGE_SECONDS),
            end=str(end),
            step=f"{STEP_SECONDS}s",
        )
        return _as_list(data)

    def scalar(self, expr: str) -> float:
        """The single value of an aggregating expression; 0 while it has no series."""
        result = self.instant(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def diagnostics(self) -> str:
        return self.exporter.tail() + "\n" + self.prometheus.tail()


def _as_list(data: dict[str, Any]) -> list[dict[str, Any]]:
    if data["resultType"] in {"scalar", "string"}:
        return [{"metric": {}, "value": data["result"]}]
    result: list[dict[str, Any]] = data["result"]
    return result


def values_of(series: list[dict[str, Any]]) -> list[float]:
    """Every sample value of an instant or range result."""
    points = [p for s in series for p in ([s["value"]] if "value" in s else s["values"])]
    return [float(value) for _, value in points]


def wait_for(
    what: str, condition: Callable[[], bool], stack: Stack | None, deadline: float
) -> None:
    while True:
        with contextlib.suppress(httpx.TransportError, QueryError):
            if condition():
                return
        if time.monotonic() > deadline:
            details = "" if stack is None else "\n" + stack.diagnostics()
            pytest.fail(f"timed out waiting for {what}{details}")
        time.sleep(0.25)


def prometheus_config(exporter_address: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [exporter_address]}]},
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = program("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus-stack")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with contextlib.ExitStack() as cleanup:
        simulator = cleanup.enter_context(Simulator(SIMULATOR))
        exporter_address = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_AUTH_TOKEN": simulator.auth_token,
        }
        exporter = start(
            "exporter",
            [
                sys.executable,
                "-m",
                "studio_exporter.cli",
                "run",
                "--twilio-base-url",
                simulator.url,
                "--web.listen-address",
                exporter_address,
                "--poll-interval",
                "1s",
                "--lookback",
                "2d",
                "--state-dir",
                str(tmp / "exporter"),
            ],
            tmp / "exporter.log",
            env,
        )
        cleanup.callback(exporter.stop)
        config = tmp / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(exporter_address)), encoding="utf-8")
        prometheus_address = f"127.0.0.1:{free_port()}"
        prom = start(
            "prometheus",
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address={prometheus_address}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            tmp / "prometheus.log",
        )
        cleanup.callback(prom.stop)
        client = cleanup.enter_context(httpx.Client(timeout=10))
        running = Stack(
            simulator,
            exporter,
            prom,
            f"http://{exporter_address}",
            f"http://{prometheus_address}",
            client,
        )

        def scraped_after_first_cycle() -> bool:
            # Counters grow while the first cycle (the two-day backfill) runs, flow after flow;
            # the gauges of active executions are set when it ends. From then on every series
            # a panel reads exists, and a few scrapes later every rate() has its samples.
            scrapes = running.scalar("min(count_over_time(twilio_studio_executions_active[1m]))")
            moving = running.scalar("sum(rate(twilio_studio_steps_total[1m]))")
            return scrapes >= MIN_SCRAPES_AFTER_FIRST_CYCLE and moving > 0

        wait_for(
            "a few scrapes after the first poll cycle", scraped_after_first_cycle, running, deadline
        )
        wait_for("every alert rule evaluated", lambda: rules_evaluated(running), running, deadline)
        yield running


def rule_entries(stack: Stack) -> list[dict[str, Any]]:
    groups = stack.api("rules")["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rules_evaluated(stack: Stack) -> bool:
    # A rule never evaluated reports lastEvaluation "0001-01-01T00:00:00Z" and health "unknown".
    entries = rule_entries(stack)
    return bool(entries) and all(not rule["lastEvaluation"].startswith("0001") for rule in entries)


@pytest.fixture(scope="module")
def variables(stack: Stack) -> dict[str, dict[str, str]]:
    """Template variable values per dashboard: the busiest flow, its busiest timed widget."""
    ended = stack.instant("topk(1, sum by (flow) (rate(twilio_studio_executions_ended_total[1m])))")
    assert ended, "no executions ended while Prometheus watched:\n" + stack.diagnostics()
    flow: str = ended[0]["metric"]["flow"]
    single = grafana_escape(flow, multi=False)
    visited = stack.instant(
        "topk(1, sum by (widget) "
        f'(rate(twilio_studio_step_duration_seconds_count{{flow="{single}"}}[1m])))'
    )
    assert visited, f"no widget of {flow!r} was visited while Prometheus watched"
    widget = grafana_escape(visited[0]["metric"]["widget"], multi=False)
    one = {**VARIABLE_DEFAULTS, "flow": single, "widget": widget}
    many = {**one, "flow": grafana_escape(flow, multi=True)}
    values = {query.dashboard: one for query in panel_queries()}
    values["twilio-studio-overview"] = many
    assert set(many) == TEMPLATE_VARIABLES, "a template variable has no test value"
    return values


def query_params() -> list[pytest.ParameterSet]:
    return [
        pytest.param(query, id=f"{query.dashboard}/{query.panel}/{query.ref_id}")
        for query in panel_queries()
    ]


@pytest.mark.parametrize("query", query_params())
def test_panel_query_returns_data(
    stack: Stack, variables: dict[str, dict[str, str]], query: PanelQuery
) -> None:
    expr = substitute(query.expr, variables[query.dashboard])
    result = stack.instant(expr) if query.instant else stack.query_range(expr)
    assert result, f"no data for {expr}"
    # A panel of NaN (a quantile of nothing, 0/0) shows nothing useful either.
    assert any(not math.isnan(v) for v in values_of(result)), f"only NaN for {expr}: {result}"


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("rule", [pytest.param(r, id=r["alert"]) for r in alert_rules()])
def test_alert_expression_evaluates(stack: Stack, rule: dict[str, Any]) -> None:
    # Empty is a fine answer (nothing is wrong); an error is not.
    stack.instant(rule["expr"])


def test_prometheus_loaded_every_rule_healthy(stack: Stack) -> None:
    # The stack fixture waited for every rule to be evaluated: "ok" is a verdict, not "unknown".
    loaded = {rule["name"]: rule for rule in rule_entries(stack)}
    assert set(loaded) == {rule["alert"] for rule in alert_rules()}
    unhealthy = {
        name: (rule["health"], rule.get("lastError"))
        for name, rule in loaded.items()
        if rule["health"] != "ok"
    }
    assert unhealthy == {}


def test_exemplars_carry_trace_ids_of_real_executions(stack: Stack) -> None:
    now = time.time()
    data = stack.api(
        "query_exemplars",
        query="twilio_studio_step_duration_seconds_bucket",
        start=f"{now - RANGE_SECONDS:.3f}",
        end=f"{now:.3f}",
    )
    trace_ids = [
        exemplar["labels"].get("trace_id", "")
        for series in data
        for exemplar in series["exemplars"]
    ]
    assert trace_ids, "Prometheus stored no exemplars"
    assert all(TRACE_ID.match(trace_id) for trace_id in trace_ids), trace_ids[:5]
    # The trace id spells the execution SID: each exemplar points at a real execution.
    unknown = [t for t in trace_ids if f"FN{t}" not in stack.simulator.traffic.by_sid]
    assert unknown == []


def test_every_flow_name_survives_grafana_escaping(stack: Stack) -> None:
    """The overview's regex selector, with Grafana's escaping, selects what `=` selects."""
    flows = stack.api("label/flow/values", **{"match[]": "twilio_studio_steps_total"})
    assert len(flows) >= 2
    for flow in flows:
        exact = stack.scalar(
            f'count(twilio_studio_steps_total{{flow="{grafana_escape(flow, multi=False)}"}})'
        )
        regex = stack.scalar(
            f'count(twilio_studio_steps_total{{flow=~"{grafana_escape(flow, multi=True)}"}})'
        )
        assert (flow, regex) == (flow, exact)
        assert exact > 0


def test_target_is_up(stack: Stack) -> None:
    targets = stack.api("targets")["activeTargets"]
    assert [(t["labels"]["job"], t["health"]) for t in targets] == [(JOB, "up")]


def test_promtool_check_metrics_accepts_the_exposition(stack: Stack) -> None:
    promtool = program("promtool")
    exposition = stack.client.get(f"{stack.exporter_url}/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
