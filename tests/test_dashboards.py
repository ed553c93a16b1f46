"""Tests of grafana/dashboards.py: panel hygiene, known metric names, PromQL syntax, drift check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.dashboards import (
    NODE_FIELDS,
    RECORDED_METRICS,
    TEMPLATE_VARIABLES,
    PanelQuery,
    annotation_queries,
    build_dashboards,
    drift,
    main,
    metrics_in,
    panel_id,
    panel_queries,
    substitute,
    variable_queries,
    variables_in,
    write,
)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "grafana" / "dashboards"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
# Prometheus adds `up` to every scrape and `ALERTS` for its alerts; the exporter defines neither.
PROMETHEUS_SYNTHETIC = frozenset({"up", "ALERTS"})
# The account info metric comes with the exporter's accounts support; the dashboards already
# read it (the $account variable and the top-accounts panels work without it).
ACCOUNTS_METRICS = frozenset({"twilio_studio_account_info"})
VARIABLE_VALUES = {
    "datasource": "prometheus",
    "tracing": "tempo",
    "account": ".*",
    "flow": "FW00000000000000000000000000000001",
    "widget": "ask",
    "job": ".*",
    "instance": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
    "__range_s": "3600",
}
KNOWN = PROMETHEUS_SYNTHETIC | RECORDED_METRICS | ACCOUNTS_METRICS


def architecture_metrics() -> frozenset[str]:
    """The metric names of ARCHITECTURE.md's Metrics section, with histogram series suffixes."""
    section = ARCHITECTURE.read_text(encoding="utf-8").split("### Metrics", 1)[1]
    section = section.split("\n### ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        found = re.findall(r"`((?:twilio_studio|process)_\w+)", line)
        names.update(found)
        if found and re.search(rf"`{found[0]}[^`]*` histogram", line):
            names.update(f"{found[0]}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return frozenset(names)


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def content_panels() -> list[pytest.ParameterSet]:
    return [
        pytest.param(panel, id=f"{board['uid']}:{panel['title']}")
        for board in build_dashboards().values()
        for panel in panels(board)
        if panel["type"] != "row"
    ]


def queries() -> list[pytest.ParameterSet]:
    return [
        pytest.param(query, id=f"{query.dashboard}:{query.panel}:{query.ref_id}")
        for query in [*panel_queries(), *annotation_queries()]
    ]


def test_architecture_lists_the_metrics() -> None:
    names = architecture_metrics()
    assert "twilio_studio_steps_total" in names
    assert "twilio_studio_step_duration_seconds_bucket" in names
    assert "twilio_studio_steps_total_bucket" not in names


def test_every_dashboard_is_there() -> None:
    assert sorted(build_dashboards()) == [
        "twilio-studio-exporter-health.json",
        "twilio-studio-flow-map.json",
        "twilio-studio-overview.json",
        "twilio-studio-widget.json",
    ]


@pytest.mark.parametrize("panel", content_panels())
def test_panel_has_description_unit_thresholds_and_a_datasource_variable(
    panel: dict[str, Any],
) -> None:
    assert panel.get("description", "").strip(), "a panel says what it shows"
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults.get("unit"), "a panel has a unit"
    assert defaults["thresholds"]["steps"], "a panel has thresholds"
    assert panel["datasource"]["uid"] in {"${datasource}", "${tracing}"}
    assert panel["targets"], "a panel has queries"
    for target in panel["targets"]:
        assert target["datasource"] == panel["datasource"]
        assert target["refId"]


@pytest.mark.parametrize("query", queries())
def test_query_uses_only_known_metrics(query: PanelQuery) -> None:
    used = metrics_in(query.expr)
    assert used, "a query selects at least one metric"
    assert used <= architecture_metrics() | KNOWN


@pytest.mark.parametrize("query", queries())
def test_query_uses_only_defined_variables(query: PanelQuery) -> None:
    board = build_dashboards()[f"{query.dashboard}.json"]
    defined = {variable["name"] for variable in board["templating"]["list"]}
    builtin = {name for name in TEMPLATE_VARIABLES if name.startswith("__")}
    assert query.variables <= defined | builtin


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        pytest.param("rate(foo_total[5m])", {"foo_total"}, id="function-and-range"),
        pytest.param(
            'sum by (le) (rate(a_bucket{x=~"y|z"}[1m])) / on (x) group_left b > 1e3',
            {"a_bucket", "b"},
            id="grouping-matchers-numbers",
        ),
        pytest.param('label_replace(c, "id", "$1", "widget", "(.*)")', {"c"}, id="strings"),
        pytest.param("sum(d) or vector(0)", {"d"}, id="keyword-and-literal"),
    ],
)
def test_metrics_in(expr: str, expected: set[str]) -> None:
    assert metrics_in(expr) == expected


def test_a_query_with_an_unknown_metric_is_caught() -> None:
    assert not metrics_in("rate(twilio_studio_visits_total[5m])") <= architecture_metrics()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('x{flow="$flow"}[$__rate_interval]', {"flow", "__rate_interval"}, id="plain"),
        pytest.param(
            "${datasource} [[widget]] ${flow:regex}", {"datasource", "widget", "flow"}, id="forms"
        ),
        pytest.param('label_replace(a, "id", "$1", "w", "(.*)")', set(), id="regex-group"),
    ],
)
def test_variables_in(text: str, expected: set[str]) -> None:
    assert variables_in(text) == expected


def test_substitute_replaces_every_form_and_refuses_unknown_variables() -> None:
    assert substitute('a{w="$widget"}[${__range}]', VARIABLE_VALUES) == 'a{w="ask"}[1h]'
    with pytest.raises(KeyError, match="nope"):
        substitute("$nope", VARIABLE_VALUES)


def test_every_template_variable_has_a_test_value() -> None:
    assert set(VARIABLE_VALUES) == TEMPLATE_VARIABLES


def test_flow_map_feeds_the_node_graph_its_field_names() -> None:
    board = build_dashboards()["twilio-studio-flow-map.json"]
    graph = next(panel for panel in panels(board) if panel["type"] == "nodeGraph")
    exprs = {target["refId"]: target["expr"] for target in graph["targets"]}
    assert all(target["format"] == "table" for target in graph["targets"])
    assert '"id"' in exprs["A"]
    assert '"title"' in exprs["A"]
    assert '"id"' in exprs["B"]
    assert all(f'"{label}"' in exprs["C"] for label in ("id", "source", "target"))
    assert all('"id"' in exprs[ref] for ref in ("D", "E"))
    renamed = next(t for t in graph["transformations"] if t["id"] == "organize")
    assert renamed["options"]["renameByName"] == NODE_FIELDS
    # The ring around a node: arc__ fields, coloured, for the failure share and the rest.
    assert {NODE_FIELDS["Value #D"], NODE_FIELDS["Value #E"]} == {"arc__failed", "arc__ok"}
    overridden = {o["matcher"]["options"] for o in graph["fieldConfig"]["overrides"]}
    assert {"arc__failed", "arc__ok", "title"} <= overridden
    # Nodes (visits) and edges (transitions) count the same thing in the same unit.
    options = graph["options"]
    assert options["nodes"]["mainStatUnit"] == options["edges"]["mainStatUnit"] == "short"
    assert exprs["A"].startswith("round(")
    assert exprs["C"].count("round(") == 1


def test_duration_panels_ask_for_exemplars() -> None:
    boards = build_dashboards()
    with_exemplars = {
        (board["uid"], panel["title"])
        for board in boards.values()
        for panel in panels(board)
        if any(target.get("exemplar") for target in panel.get("targets", []))
    }
    assert with_exemplars == {
        ("twilio-studio-widget", "Visit duration p50 / p90 / p99"),
        ("twilio-studio-widget", "Visit duration heatmap"),
        ("twilio-studio-overview", "Execution duration p90 per flow"),
    }


@pytest.mark.parametrize(
    "board", [pytest.param(b, id=b["uid"]) for b in build_dashboards().values()]
)
def test_panel_ids_are_distinct_and_follow_the_title(board: dict[str, Any]) -> None:
    """Adding, removing or moving a panel renumbers no other (links name panels by id)."""
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        title = panel["title"] if panel["type"] != "row" else f"row: {panel['title']}"
        assert panel["id"] == panel_id(title)


@pytest.mark.parametrize(
    "board", [pytest.param(b, id=b["uid"]) for b in build_dashboards().values()]
)
def test_every_declared_variable_is_used(board: dict[str, Any]) -> None:
    declared = [variable["name"] for variable in board["templating"]["list"]]
    rest = {key: value for key, value in board.items() if key != "templating"}
    text = json.dumps(rest) + json.dumps(
        [variable.get("query") for variable in board["templating"]["list"]]
    )
    for name in declared:
        assert re.search(rf"\$\{{?{name}\b", text), f"${name} is declared and never used"


def test_no_query_pads_with_a_fake_zero() -> None:
    """Empty means nothing happened: the panel's noValue says 0, not a made-up series."""
    for query in panel_queries():
        assert "vector(0)" not in query.expr, query


def test_counts_over_the_range_are_whole_numbers() -> None:
    for query in panel_queries():
        # A count (not a ratio of counts, not a rate) shows whole visits, not 41.73.
        if "increase(" in query.expr and "rate(" not in query.expr and " / " not in query.expr:
            assert "round(" in query.expr, query


def test_graphs_show_every_series_in_the_tooltip_and_draw_their_thresholds() -> None:
    for board in build_dashboards().values():
        for panel in panels(board):
            if panel["type"] != "timeseries":
                continue
            assert panel["options"]["tooltip"]["mode"] == "multi", panel["title"]
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            style = panel["fieldConfig"]["defaults"].get("custom", {}).get("thresholdsStyle")
            assert (style is not None) == (len(steps) > 1), panel["title"]


def test_traffic_panels_draw_last_week() -> None:
    board = build_dashboards()["twilio-studio-overview.json"]
    traffic = next(p for p in panels(board) if p["title"] == "Executions started per flow")
    assert any("offset 1w" in target["expr"] for target in traffic["targets"])


def test_every_studio_query_is_filtered_by_account() -> None:
    for query in panel_queries():
        if query.dashboard != "twilio-studio-exporter-health":
            assert 'account_sid=~"$account"' in query.expr, query
    for variable in variable_queries():
        if variable.name in {"flow", "widget"}:
            assert 'account_sid=~"$account"' in variable.query


def test_a_missing_exporter_target_shows_red() -> None:
    board = build_dashboards()["twilio-studio-exporter-health.json"]
    up = next(p for p in panels(board) if p["title"] == "Exporter up")
    defaults = up["fieldConfig"]["defaults"]
    assert defaults["noValue"] == "missing"
    special = [m for m in defaults["mappings"] if m["type"] == "special"]
    assert special[0]["options"]["result"]["color"] == "red"
    assert 'job=~"$job"' in up["targets"][0]["expr"]


def test_committed_json_is_what_the_code_generates() -> None:
    assert drift(COMMITTED) == []
    assert main(["--check", str(COMMITTED)]) == 0


def test_out_writes_files_the_check_accepts(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(build_dashboards())
    assert drift(tmp_path) == []


def _edit_title(folder: Path) -> None:
    path = folder / "twilio-studio-overview.json"
    path.write_text(path.read_text().replace("Overview", "Overveiw", 1))


def _delete_one(folder: Path) -> None:
    (folder / "twilio-studio-flow-map.json").unlink()


def _add_stray(folder: Path) -> None:
    (folder / "old-dashboard.json").write_text("{}\n")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_edit_title, "Overveiw", id="edited"),
        pytest.param(_delete_one, "missing", id="missing"),
        pytest.param(_add_stray, "not generated", id="stray"),
    ],
)
def test_drift_check_fails_on_a_changed_folder(
    tmp_path: Path, damage: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "dashboards"
    shutil.copytree(COMMITTED, folder)
    damage(folder)
    assert main(["--check", str(folder)]) == 1
    assert message in capsys.readouterr().err


def promtool() -> str:
    """Path to promtool; in CI its absence is a failure, locally a reasoned skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("promtool is required in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus); required when CI=true")
    return found


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression (variables substituted) as a recording rule."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": substitute(query.expr, VARIABLE_VALUES)}
        for number, query in enumerate(panel_queries())
    ]
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout


# Replicas: flow Support (account 1) moves from instance a to b at t=10m, both serving its
# series at the scrape around the move, counters carried over; account 2's flow is on b. Every
# replica serves the account info, and a and b disagree on account 2's name (renamed, b has
# refreshed it, a not yet).
_ACCOUNT_1 = 'account_sid="AC00000000000000000000000000000001"'
_ACCOUNT_2 = 'account_sid="AC00000000000000000000000000000002"'
_SUPPORT = f'{_ACCOUNT_1}, flow_sid="FW00000000000000000000000000000001", flow="Support"'
_BILLING = f'{_ACCOUNT_2}, flow_sid="FW00000000000000000000000000000002", flow="Billing"'
_MOVED_UNIT_SERIES = [
    (f'twilio_studio_executions_active{{instance="a:9911", {_SUPPORT}}}', "400x10 stale"),
    (f'twilio_studio_executions_active{{instance="b:9911", {_SUPPORT}}}', "_x10 400x10"),
    (
        f'twilio_studio_widget_visits_in_progress{{instance="a:9911", {_SUPPORT}, widget="ask"}}',
        "7x10 stale",
    ),
    (
        f'twilio_studio_widget_visits_in_progress{{instance="b:9911", {_SUPPORT}, widget="ask"}}',
        "_x10 7x10",
    ),
    (f'twilio_studio_executions_started_total{{instance="a:9911", {_SUPPORT}}}', "0+60x10 stale"),
    (f'twilio_studio_executions_started_total{{instance="b:9911", {_SUPPORT}}}', "_x10 600+60x10"),
    (f'twilio_studio_executions_started_total{{instance="b:9911", {_BILLING}}}', "0+30x20"),
    *(
        (
            f'twilio_studio_account_info{{instance="{instance}", {_ACCOUNT_1}, '
            'account="Support desk", status="active"}',
            "1x20",
        )
        for instance in ("a:9911", "b:9911")
    ),
    (
        f'twilio_studio_account_info{{instance="a:9911", {_ACCOUNT_2}, account="Billing", '
        'status="active"}',
        "1x20",
    ),
    (
        f'twilio_studio_account_info{{instance="b:9911", {_ACCOUNT_2}, account="Billing EU", '
        'status="active"}',
        "1x20",
    ),
]


def query_of(dashboard: str, panel: str) -> str:
    """The one query of a panel, its variables replaced (all flows on the overview)."""
    (query,) = [q for q in panel_queries() if q.dashboard == dashboard and q.panel == panel]
    flows = ".*" if dashboard == "twilio-studio-overview" else VARIABLE_VALUES["flow"]
    return substitute(query.expr, {**VARIABLE_VALUES, "flow": flows, "__range": "10m"})


def test_studio_queries_count_a_moved_unit_once_and_join_one_account_name(
    tmp_path: Path,
) -> None:
    """promtool evaluates the panels on series two replicas serve around a unit's move."""
    active = query_of("twilio-studio-overview", "Active executions")
    per_flow = query_of("twilio-studio-overview", "Active executions per flow")
    waiting = query_of("twilio-studio-widget", "Callers waiting now")
    top = query_of("twilio-studio-overview", "Top accounts by executions started")
    checks = [
        # At the move both a and b serve the gauges: counted once.
        (active, [("{}", 400)]),
        (per_flow, [('{flow="Support"}', 400)]),
        (waiting, [("{}", 7)]),
        # Ten minutes of starts after the move (b), one series per account despite the info
        # served twice and the two names of account 2.
        (f"count by (account_sid) ({top})", [(f"{{{_ACCOUNT_1}}}", 1), (f"{{{_ACCOUNT_2}}}", 1)]),
        (f"sum by (account_sid) ({top})", [(f"{{{_ACCOUNT_1}}}", 600), (f"{{{_ACCOUNT_2}}}", 300)]),
        (
            f"count by (account_sid, account) ({top}) "
            f'and on (account_sid) twilio_studio_account_info{{{_ACCOUNT_1}, instance="a:9911"}}',
            [(f'{{{_ACCOUNT_1}, account="Support desk"}}', 1)],
        ),
    ]
    document = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": series, "values": values} for series, values in _MOVED_UNIT_SERIES
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "10m" if expr in (active, per_flow, waiting) else "20m",
                        "exp_samples": [
                            {"labels": labels, "value": value} for labels, value in samples
                        ],
                    }
                    for expr, samples in checks
                ],
            }
        ],
    }
    path = tmp_path / "replicas.test.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_write_returns_the_paths(tmp_path: Path) -> None:
    written = write(tmp_path / "new")
    assert {path.name for path in written} == set(build_dashboards())


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_provisioning_loads_the_committed_dashboards_where_compose_mounts_them() -> None:
    provider = load_yaml(ROOT / "grafana/provisioning/dashboards/studio-exporter.yaml")
    compose = load_yaml(ROOT / "deploy/docker-compose.yml")
    mounts = compose["services"]["grafana"]["volumes"]
    path = provider["providers"][0]["options"]["path"]
    assert f"../grafana/dashboards:{path}:ro" in mounts
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


def test_provisioned_datasources_fit_the_variables_and_link_exemplars_to_traces() -> None:
    sources = load_yaml(ROOT / "grafana/provisioning/datasources/studio-exporter.yaml")
    by_type = {source["type"]: source for source in sources["datasources"]}
    variable_types = {
        variable["query"]
        for board in build_dashboards().values()
        for variable in board["templating"]["list"]
        if variable["type"] == "datasource"
    }
    assert variable_types == {"prometheus", "tempo"} == set(by_type)
    destinations = by_type["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": by_type["tempo"]["uid"]}]
    # From a span to the metrics of its flow and widget, with queries that use only known
    # metrics and the span attributes the exporter sets.
    to_metrics = by_type["tempo"]["jsonData"]["tracesToMetrics"]
    assert to_metrics["datasourceUid"] == by_type["prometheus"]["uid"]
    assert to_metrics["queries"]
    for query in to_metrics["queries"]:
        assert "$__tags" in query["query"]
        assert metrics_in(query["query"].replace("$__tags", "")) <= architecture_metrics()
    keys = {tag["key"] for tag in to_metrics["tags"]}
    assert keys <= {"twilio.studio.flow.sid", "twilio.studio.widget.name"}


def test_compose_wires_exemplars_otlp_and_the_scrape_job() -> None:
    compose = load_yaml(ROOT / "deploy/docker-compose.yml")["services"]
    assert "--enable-feature=exemplar-storage" in compose["prometheus"]["command"]
    endpoint = compose["exporter"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    tempo = load_yaml(ROOT / "deploy/tempo.yaml")
    http = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert endpoint == f"http://tempo:{http.rsplit(':', 1)[1]}"
    scrape = load_yaml(ROOT / "deploy/prometheus.yml")["scrape_configs"][0]
    assert re.fullmatch(".*studio.*", scrape["job_name"])
    listen = compose["exporter"]["environment"]["STUDIO_EXPORTER_WEB_LISTEN_ADDRESS"]
    assert scrape["static_configs"][0]["targets"] == [f"exporter:{listen.rsplit(':', 1)[1]}"]


def test_prometheus_config_is_valid() -> None:
    result = subprocess.run(
        [promtool(), "check", "config", "--syntax-only", str(ROOT / "deploy/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_failure_events_agree_with_the_exporter() -> None:
    """Dashboards, alerts and span status use one definition of a failure event."""
    from grafana.dashboards import FAILURE_EVENTS
    from studio_exporter.config import DEFAULT_FAILURE_EVENTS as CONFIG_DEFAULT
    from studio_exporter.sinks.spans import DEFAULT_FAILURE_EVENTS as SPAN_DEFAULT

    assert set(FAILURE_EVENTS.split("|")) == set(CONFIG_DEFAULT) == set(SPAN_DEFAULT)
    rules = Path(__file__).resolve().parent.parent / "grafana/alerts/studio-exporter.rules.yml"
    assert f'event=~"{FAILURE_EVENTS}"' in rules.read_text(encoding="utf-8")


def test_annotations_mark_revisions_alerts_and_restarts_with_a_title() -> None:
    names: dict[str, set[str]] = {}
    for board in build_dashboards().values():
        for annotation in board["annotations"]["list"]:
            assert annotation["titleFormat"]
            assert annotation["textFormat"]
            names.setdefault(board["uid"], set()).add(annotation["name"])
    assert names["twilio-studio-overview"] == {
        "Flow revisions",
        "Firing alerts",
        "Exporter restarts",
    }
    assert names["twilio-studio-exporter-health"] == {"Firing alerts", "Exporter restarts"}
