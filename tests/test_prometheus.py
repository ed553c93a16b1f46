"""A real Prometheus scraping the exporter on the simulator: every panel and alert query works.

The whole module runs once per mode (poll, push, hybrid): a stack of simulator, exporter and
Prometheus per mode, one at a time.
"""

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

from grafana.dashboards import (
    TEMPLATE_VARIABLES,
    PanelQuery,
    VariableQuery,
    annotation_queries,
    panel_queries,
    substitute,
    variable_queries,
)
from studio_exporter.simulator import DeliveryOptions, Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "grafana" / "alerts" / "studio-exporter.rules.yml"
RECORDING = ROOT / "grafana" / "alerts" / "studio-exporter.recording.rules.yml"
JOB = "twilio-studio-exporter"  # the alert rules match `.*studio.*`
MODES = ("poll", "push", "hybrid")
#: The sources (poll, push) each mode runs: a query of a push-only metric has data in push
#: and hybrid mode and none in poll mode.
SOURCES = {"poll": {"poll"}, "push": {"push"}, "hybrid": {"poll", "push"}}
# Pushed deliveries carry some duplicates, as Twilio's at-least-once delivery does.
DELIVERY = DeliveryOptions(seed=7, duplicates=0.1)

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
    "__range_s": str(RANGE_SECONDS),
    # All accounts: the variable's default, and what matches an exporter without accounts.
    "account": ".*",
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
    mode: str
    simulator: Simulator
    exporter: Process
    prometheus: Process
    exporter_url: str
    prometheus_url: str
    client: httpx.Client

    def api(self, path: str, **params: str) -> Any:
        response = self.client.get(f"{self.prometheus_url}/api/v1/{path}", params=params)
        # A Prometheus that is still starting answers 503 in plain text, not JSON: read the
        # status first so the caller sees a QueryError (which wait_for retries) for both.
        if response.status_code != 200:
            raise QueryError(f"{path} {params}: HTTP {response.status_code}: {response.text}")
        try:
            body = response.json()
        except ValueError as error:
            raise QueryError(f"{path} {params}: not JSON ({error}): {response.text}") from error
        if not isinstance(body, dict) or body.get("status") != "success":
            raise QueryError(f"{path} {params}: {body}")
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
        "rule_files": [str(RULES), str(RECORDING)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [exporter_address]}]},
        ],
    }


@pytest.fixture(scope="module", params=MODES)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    mode: str = request.param
    prometheus = program("prometheus")
    tmp = tmp_path_factory.mktemp(f"prometheus-stack-{mode}")
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
                "--mode",
                mode,
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
        if mode != "poll":
            # Like a real subscription, only executions created from now on are pushed.
            pusher = simulator.push_events_to(
                f"http://{exporter_address}/webhooks/event-streams", DELIVERY
            )
            # Stopped before the exporter (callbacks run last in, first out): its last
            # deliveries then reach a live receiver instead of retrying into a closed port.
            cleanup.callback(pusher.stop)
        running = Stack(
            mode,
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
            # Push mode learns each flow when its first event arrives; the recording rules
            # need two scrapes of a series.
            flows = running.scalar("count(twilio_studio_flow_info)")
            recorded = running.scalar("count(flow_widget:twilio_studio_steps:rate5m > 0)")
            return (
                scrapes >= MIN_SCRAPES_AFTER_FIRST_CYCLE
                and moving > 0
                and flows >= len(simulator.traffic.flows)
                and recorded > 0
            )

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
    ended = stack.instant(
        "topk(1, sum by (flow_sid) (rate(twilio_studio_executions_ended_total[1m])))"
    )
    assert ended, "no executions ended while Prometheus watched:\n" + stack.diagnostics()
    flow_sid: str = ended[0]["metric"]["flow_sid"]
    visited = stack.instant(
        "topk(1, sum by (widget) "
        f'(rate(twilio_studio_step_duration_seconds_count{{flow_sid="{flow_sid}"}}[1m])))'
    )
    assert visited, f"no widget of {flow_sid} was visited while Prometheus watched"
    widget = grafana_escape(visited[0]["metric"]["widget"], multi=False)
    instance = stack.exporter_url.removeprefix("http://")
    one = {
        **VARIABLE_DEFAULTS,
        "flow": flow_sid,
        "widget": widget,
        # One job and one instance chosen, as a multi-value variable is interpolated.
        "job": grafana_escape(JOB, multi=True),
        "instance": grafana_escape(instance, multi=True),
    }
    values = {query.dashboard: one for query in panel_queries()}
    assert set(one) == TEMPLATE_VARIABLES, "a template variable has no test value"
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
    if not query.sources & SOURCES[stack.mode]:
        # A metric of a source this mode does not run (push metrics in poll mode) is absent.
        assert result == [], f"{stack.mode} mode has data for {expr}"
        return
    if query.may_be_empty and not result:
        return  # nothing of the kind happened: the panel shows its noValue (0)
    if "offset 1w" in query.expr:
        # This Prometheus is minutes old: last week is empty. The same query now has data.
        assert result == []
        expr = expr.replace(" offset 1w", "")
        result = stack.instant(expr) if query.instant else stack.query_range(expr)
    assert result, f"no data for {expr}"
    # A panel of NaN (a quantile of nothing, 0/0) shows nothing useful either.
    assert any(not math.isnan(v) for v in values_of(result)), f"only NaN for {expr}: {result}"


@pytest.mark.parametrize(
    "query",
    [pytest.param(query, id=f"{query.dashboard}/{query.panel}") for query in annotation_queries()],
)
def test_annotation_query_evaluates(
    stack: Stack, variables: dict[str, dict[str, str]], query: PanelQuery
) -> None:
    # Annotations are events (a firing alert, a restart): none is a fine answer, an error not.
    stack.query_range(substitute(query.expr, variables[query.dashboard]))


def test_revision_annotation_marks_the_revisions_first_seen(
    stack: Stack, variables: dict[str, dict[str, str]]
) -> None:
    """Every flow is new to this Prometheus: its revision shows as a change, with its labels."""
    (query,) = [
        q
        for q in annotation_queries()
        if q.dashboard == "twilio-studio-overview" and q.panel == "annotation: Flow revisions"
    ]
    values = {**variables["twilio-studio-overview"], "flow": ".*"}
    result = stack.query_range(substitute(query.expr, values))
    followed = {series["metric"]["flow_sid"] for series in stack.instant("twilio_studio_flow_info")}
    assert len(followed) == len(stack.simulator.traffic.flows)
    assert {series["metric"]["flow_sid"] for series in result} == followed
    assert all(series["metric"]["revision"].isdigit() for series in result)


def grafana_query_result(series: list[dict[str, Any]]) -> list[str]:
    """What Grafana's query_result() variable query gives: one line per series.

    As Grafana's Prometheus data source writes it: the metric name, then
    `{label="value",...}` in the order Prometheus answers (by name), values unescaped, then
    the value and the timestamp in milliseconds.
    """
    lines = []
    for item in series:
        labels = dict(item["metric"])
        name = labels.pop("__name__", "")
        pairs = ",".join(f'{key}="{value}"' for key, value in labels.items())
        stamp, value = item["value"]
        lines.append(f"{name}{{{pairs}}} {value} {int(float(stamp) * 1000)}")
    return lines


def variable_options(
    stack: Stack, variable: VariableQuery, values: dict[str, str]
) -> list[tuple[str, str]]:
    """(text, value) of each option Grafana would offer for a query variable."""
    query = substitute(variable.query, values)
    if query.startswith("label_values("):
        selector, label = query.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        found = stack.api(f"label/{label.strip()}/values", **{"match[]": selector.strip()})
        lines = [str(value) for value in found]
    else:
        assert query.startswith("query_result("), query
        lines = grafana_query_result(stack.instant(query.removeprefix("query_result(")[:-1]))
    if not variable.regex:
        return [(line, line) for line in lines]
    # Grafana's regex is a JavaScript one between slashes; named groups text and value.
    pattern = re.compile(variable.regex.strip("/").replace("(?<", "(?P<"))
    options = []
    for line in lines:
        match = pattern.search(line)
        if match is not None:
            options.append((match.group("text"), match.group("value")))
    return options


def unique_variable_queries() -> list[pytest.ParameterSet]:
    seen: dict[tuple[str, str], VariableQuery] = {}
    for variable in variable_queries():
        seen.setdefault((variable.name, variable.query), variable)
    return [pytest.param(v, id=f"{v.name}:{v.dashboard}") for v in seen.values()]


@pytest.mark.parametrize("variable", unique_variable_queries())
def test_variable_query_offers_options(
    stack: Stack, variables: dict[str, dict[str, str]], variable: VariableQuery
) -> None:
    """Every variable lists something to pick, and its regex takes a name and an ID from it.

    `account` reads twilio_studio_account_info, which the exporter exposes once it labels
    accounts: until then this check fails for it (and only for it).
    """
    options = variable_options(stack, variable, variables[variable.dashboard])
    assert options, f"${variable.name} offers nothing: {variable.query}"
    if variable.name == "flow":
        names = {
            series["metric"]["flow_sid"]: series["metric"]["flow"]
            for series in stack.instant("twilio_studio_flow_info")
        }
        assert {value: text for text, value in options} == names
    if variable.name == "account":
        assert all(value.startswith("AC") and text for text, value in options), options


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("rule", [pytest.param(r, id=r["alert"]) for r in alert_rules()])
def test_alert_expression_evaluates(stack: Stack, rule: dict[str, Any]) -> None:
    # Empty is a fine answer (nothing is wrong); an error is not.
    stack.instant(rule["expr"])


def recording_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RECORDING.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_prometheus_loaded_every_rule_healthy(stack: Stack) -> None:
    # The stack fixture waited for every rule to be evaluated: "ok" is a verdict, not "unknown".
    loaded = {rule["name"]: rule for rule in rule_entries(stack)}
    assert set(loaded) == {rule["alert"] for rule in alert_rules()} | {
        rule["record"] for rule in recording_rules()
    }
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


def test_every_widget_name_survives_grafana_escaping(stack: Stack) -> None:
    """The drill-down's `widget="$widget"`, with Grafana's escaping, selects that widget."""
    widgets = stack.api("label/widget/values", **{"match[]": "twilio_studio_steps_total"})
    assert len(widgets) >= 2
    for widget in widgets:
        escaped = grafana_escape(widget, multi=False)
        found = stack.instant(
            f'count by (widget) (twilio_studio_steps_total{{widget="{escaped}"}})'
        )
        assert [series["metric"]["widget"] for series in found] == [widget]


def test_alerts_stay_silent_on_a_healthy_stack(stack: Stack) -> None:
    """No alert about the exporter's health fires, or waits to, on a healthy stack.

    In push mode the poll freshness gauge is absent, so Stalled cannot read a 0 from 1970.
    (Alerts about the flows may: the simulated traffic has failing widgets, and the history
    read at start has a lag of hours.)
    """
    exporter_alerts = (
        "TwilioStudioExporterDown|TwilioStudioExporterStalled|TwilioStudioPushDeliveriesFailing"
        "|TwilioStudioPushEventsDropped|TwilioStudioSpansDropped|TwilioStudioSeriesCapReached"
    )
    pending = stack.instant(f'ALERTS{{alertname=~"{exporter_alerts}"}}')
    assert pending == []
    age = stack.instant("time() - twilio_studio_exporter_last_successful_push_timestamp_seconds")
    poll_age = stack.instant(
        "time() - twilio_studio_exporter_last_successful_poll_timestamp_seconds"
    )
    assert (bool(poll_age), bool(age)) == (
        "poll" in SOURCES[stack.mode],
        "push" in SOURCES[stack.mode],
    )
    assert all(v < 60 for v in values_of(age + poll_age)), age + poll_age


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
