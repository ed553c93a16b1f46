"""Tests of grafana/dashboards.py: panel hygiene, known metric names, PromQL syntax, drift check."""

from __future__ import annotations

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
    TEMPLATE_VARIABLES,
    PanelQuery,
    build_dashboards,
    drift,
    main,
    metrics_in,
    panel_queries,
    substitute,
    variables_in,
    write,
)

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "grafana" / "dashboards"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
# Prometheus adds `up` to every scrape; the exporter does not define it.
PROMETHEUS_SYNTHETIC = frozenset({"up"})
VARIABLE_VALUES = {
    "datasource": "prometheus",
    "tracing": "tempo",
    "flow": "Support",
    "widget": "ask",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


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
        for query in panel_queries()
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
    assert used <= architecture_metrics() | PROMETHEUS_SYNTHETIC


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
    assert substitute('a{f="$flow"}[${__range}]', VARIABLE_VALUES) == 'a{f="Support"}[1h]'
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
    renamed = next(t for t in graph["transformations"] if t["id"] == "organize")
    assert renamed["options"]["renameByName"] == {
        "Value #A": "mainstat",
        "Value #B": "secondarystat",
        "Value #C": "mainstat",
    }


def test_duration_panels_ask_for_exemplars() -> None:
    board = build_dashboards()["twilio-studio-widget.json"]
    with_exemplars = {
        panel["title"]
        for panel in panels(board)
        if any(target.get("exemplar") for target in panel.get("targets", []))
    }
    assert with_exemplars == {"Visit duration p50 / p90 / p99", "Visit duration heatmap"}


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
    from studio_exporter.spans import DEFAULT_FAILURE_EVENTS as SPAN_DEFAULT

    assert set(FAILURE_EVENTS.split("|")) == set(CONFIG_DEFAULT) == set(SPAN_DEFAULT)
    rules = Path(__file__).resolve().parent.parent / "grafana/alerts/studio-exporter.rules.yml"
    assert f'event=~"{FAILURE_EVENTS}"' in rules.read_text(encoding="utf-8")
