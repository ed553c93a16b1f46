"""The Grafana dashboards of the exporter, as code: `--out DIR` writes them, `--check DIR` diffs."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    heatmap,
    nodegraph,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import tempo as tempo_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TRACING = model.DataSourceRef(type_val="tempo", uid="${tracing}")
TAGS = ["twilio-studio"]

# Mirrors spans.DEFAULT_FAILURE_EVENTS (the exporter's default failure set); a timeout of a
# wait-for-reply widget is a normal outcome, so it is not here.
FAILURE_EVENTS = "failed|fail|deliveryFailure|error"

# Every template variable a query may use: the dashboards' own and Grafana's built-in ones.
TEMPLATE_VARIABLES = frozenset(
    {"datasource", "tracing", "flow", "widget", "__rate_interval", "__interval", "__range"}
)
# `$1` in a label_replace replacement is not a variable: names start with a letter or `_`.
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]|\$([A-Za-z_]\w*)")

# Selectors. The overview takes many flows (a regex, escaped by Grafana); the drill-downs
# take one flow and one widget, which Grafana interpolates unescaped, hence `=`, not `=~`.
ANY_FLOWS = 'flow=~"$flow"'
ONE_FLOW = 'flow="$flow"'
ONE_WIDGET = 'flow="$flow", widget="$widget"'


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL expression of one panel, as Grafana sends it (variables not yet replaced)."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def variables(self) -> frozenset[str]:
        """The template variables the expression uses (`$flow`, `${flow}`, `[[flow]]`)."""
        return variables_in(self.expr)


def variables_in(text: str) -> frozenset[str]:
    """The names of the template variables referenced in `text`."""
    return frozenset(next(g for g in m.groups() if g) for m in _VARIABLE.finditer(text))


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace template variables as Grafana would; a variable missing from `values` is an error."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for template variable {name!r} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "Inf", "NaN", "inf", "nan"}
)


def metrics_in(expr: str) -> frozenset[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    return frozenset(
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name not in _KEYWORDS and not name.startswith("$")
    )


# --- small builders -------------------------------------------------------------------------


def _prom(
    expr: str,
    legend: str = "__auto",
    ref: str = "A",
    *,
    instant: bool = False,
    exemplar: bool = False,
    fmt: PromQueryFormat = PromQueryFormat.TIME_SERIES,
) -> prometheus.Dataquery:
    query = (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .format(fmt)
        .exemplar(exemplar)
    )
    return query.instant() if instant else query.range()


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


# "Lower is better" and "higher means trouble" thresholds, the two shapes every panel uses.
def _warn_above(warning: float, critical: float) -> dash.ThresholdsConfig:
    return _thresholds((None, "green"), (warning, "orange"), (critical, "red"))


def _informational() -> dash.ThresholdsConfig:
    return _thresholds((None, "green"))


class _PanelBuilder(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def thresholds(self, thresholds: cogbuilder.Builder[model.ThresholdsConfig]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


@dataclass(frozen=True)
class _Look:
    """What every panel must say: what it shows, in which unit, and when to worry."""

    title: str
    description: str
    unit: str
    thresholds: dash.ThresholdsConfig
    span: int = 12
    height: int = 8


def _panel(panel: P, look: _Look, targets: Sequence[prometheus.Dataquery]) -> P:
    panel = (
        panel.title(look.title)
        .description(look.description)
        .datasource(PROMETHEUS)
        .unit(look.unit)
        .thresholds(look.thresholds)
        .span(look.span)
        .height(look.height)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )


def _timeseries(look: _Look, *targets: prometheus.Dataquery) -> timeseries.Panel:
    return _panel(timeseries.Panel().legend(_legend()).fill_opacity(10).min(0), look, targets)


def _stat(look: _Look, target: prometheus.Dataquery) -> stat.Panel:
    return _panel(
        stat.Panel()
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA),
        look,
        [target],
    )


def _bars(look: _Look, target: prometheus.Dataquery) -> bargauge.Panel:
    return _panel(
        bargauge.Panel()
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .min(0),
        look,
        [target],
    )


# --- template variables ---------------------------------------------------------------------


def _datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable("datasource")
        .label("Prometheus")
        .description("The Prometheus that scrapes the exporter.")
        .type("prometheus")
    )


def _tracing_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable("tracing")
        .label("Traces")
        .description("The Tempo that receives the exporter's spans (exemplars link to it).")
        .type("tempo")
    )


def _flow_variable(*, many: bool) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable("flow")
        .label("Flow")
        .description("The Studio flow (its friendly name).")
        .datasource(PROMETHEUS)
        .query("label_values(twilio_studio_steps_total, flow)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )
    if many:
        variable = variable.multi(True).include_all(True).all_value(".*")
    return variable


def _widget_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("widget")
        .label("Widget")
        .description("A widget of the chosen flow.")
        .datasource(PROMETHEUS)
        .query('label_values(twilio_studio_steps_total{flow="$flow"}, widget)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )


def _dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("Twilio Studio")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


def _quantile(q: float, buckets: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({buckets}[$__rate_interval])))"


def _quantile_over_range(q: float, buckets: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({buckets}[$__range])))"


def _copy_label(expr: str, new: str, source: str) -> str:
    """`expr` with label `new` set to the value of label `source` (the node graph's field names)."""
    return f'label_replace({expr}, "{new}", "$1", "{source}", "(.*)")'


# --- the dashboards -------------------------------------------------------------------------


def studio_overview() -> dash.Dashboard:
    """Executions per flow, how long they take, where they end, and the widgets that matter."""
    steps = f"twilio_studio_steps_total{{{ANY_FLOWS}}}"
    started = f"twilio_studio_executions_started_total{{{ANY_FLOWS}}}"
    ended = f"twilio_studio_executions_ended_total{{{ANY_FLOWS}}}"
    active = f"twilio_studio_executions_active{{{ANY_FLOWS}}}"
    duration = f"twilio_studio_execution_duration_seconds_bucket{{{ANY_FLOWS}}}"
    step_duration = f"twilio_studio_step_duration_seconds_bucket{{{ANY_FLOWS}}}"
    gaps = f"twilio_studio_step_gaps_total{{{ANY_FLOWS}}}"
    per_second = "suffix: /s"
    return (
        _dashboard(
            "twilio-studio-overview",
            "Twilio Studio / Overview",
            "Executions of the chosen Studio flows: volume, duration, outcome, busiest and "
            "slowest widgets.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_tracing_variable())
        .with_variable(_flow_variable(many=True))
        .with_row(dash.Row("Now"))
        .with_panel(
            _stat(
                _Look(
                    "Executions started",
                    "Executions started in the chosen time range, all chosen flows.",
                    "short",
                    _informational(),
                    span=6,
                    height=5,
                ),
                _prom(f"sum(increase({started}[$__range]))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Executions ended",
                    "Executions that reached the end of their flow in the chosen time range.",
                    "short",
                    _informational(),
                    span=6,
                    height=5,
                ),
                _prom(f"sum(increase({ended}[$__range]))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Active executions",
                    "Executions started and not ended yet: users somewhere inside a flow now. "
                    "Orange and red mean executions pile up (see the ExecutionsPilingUp alert).",
                    "short",
                    _warn_above(500, 2000),
                    span=6,
                    height=5,
                ),
                _prom(f"sum({active})", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Step gaps",
                    "Breaks in the step chain of executions (Twilio's step log is best-effort) "
                    "in the chosen time range. Visits across a gap are not measured.",
                    "short",
                    _warn_above(1, 50),
                    span=6,
                    height=5,
                ),
                # No gap series yet means no gap happened: zero is the honest answer.
                _prom(f"sum(increase({gaps}[$__range])) or on () vector(0)", instant=True),
            )
        )
        .with_row(dash.Row("Executions"))
        .with_panel(
            _timeseries(
                _Look(
                    "Executions started per flow",
                    "How many executions each flow starts per second.",
                    per_second,
                    _informational(),
                ),
                _prom(f"sum by (flow) (rate({started}[$__rate_interval]))", "{{flow}}"),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Executions ended per flow and final widget",
                    "How many executions end per second, split by the widget they ended from "
                    "(final_widget).",
                    per_second,
                    _informational(),
                ),
                _prom(
                    f"sum by (flow, final_widget) (rate({ended}[$__rate_interval]))",
                    "{{flow}} / {{final_widget}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Active executions per flow",
                    "Executions in progress per flow. A line that only grows means executions "
                    "do not end (users stuck waiting, or a widget that never returns).",
                    "short",
                    _warn_above(500, 2000),
                ),
                _prom(f"sum by (flow) ({active})", "{{flow}}"),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Execution duration percentiles",
                    "p50, p90 and p99 of the time from an execution's start to its end, all "
                    "chosen flows together.",
                    "s",
                    _warn_above(600, 3600),
                ),
                _prom(_quantile(0.5, duration), "p50", "A"),
                _prom(_quantile(0.9, duration), "p90", "B"),
                _prom(_quantile(0.99, duration), "p99", "C"),
            )
        )
        .with_row(dash.Row("Where executions end, busiest and slowest widgets"))
        .with_panel(
            _bars(
                _Look(
                    "Where executions end",
                    "Executions ended in the chosen time range, by the widget they ended from "
                    "(final_widget). An error path among the top is worth a look.",
                    "short",
                    _informational(),
                    span=8,
                    height=10,
                ),
                _prom(
                    f"sort_desc(sum by (flow, final_widget) (increase({ended}[$__range])))",
                    "{{flow}} / {{final_widget}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Busiest widgets",
                    "The 10 widgets with the most visits per second over the chosen time range.",
                    per_second,
                    _informational(),
                    span=8,
                    height=10,
                ),
                _prom(
                    f"topk(10, sum by (flow, widget) (rate({steps}[$__range])))",
                    "{{flow}} / {{widget}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Slowest widgets (p90)",
                    "The 10 widgets with the longest 90th percentile visit duration over the "
                    "chosen time range. Widgets waiting for a human (send-and-wait-for-reply, "
                    "gather) are slow by nature.",
                    "s",
                    _warn_above(10, 60),
                    span=8,
                    height=10,
                ),
                _prom(
                    "topk(10, histogram_quantile(0.9, sum by (flow, widget, le) "
                    f"(rate({step_duration}[$__range]))))",
                    "{{flow}} / {{widget}}",
                    instant=True,
                ),
            )
        )
    )


def widget_drilldown() -> dash.Dashboard:
    """One widget of one flow: visits by outcome, duration with exemplars, failures, waiters."""
    steps = f"twilio_studio_steps_total{{{ONE_WIDGET}}}"
    failures = f'twilio_studio_steps_total{{{ONE_WIDGET}, event=~"{FAILURE_EVENTS}"}}'
    buckets = f"twilio_studio_step_duration_seconds_bucket{{{ONE_WIDGET}}}"
    waiting = f"twilio_studio_widget_visits_in_progress{{{ONE_WIDGET}}}"
    per_second = "suffix: visits/s"
    duration_thresholds = _warn_above(10, 60)
    traceql = (
        '{ span.twilio.studio.flow.name = "$flow" && span.twilio.studio.widget.name = "$widget" }'
    )
    traces = (
        table.Panel()
        .title("Recent traces through this widget")
        .description(
            "Visit spans of this widget in the tracing data source; open one to see the whole "
            "execution as a trace."
        )
        .datasource(TRACING)
        .unit("none")
        .thresholds(_informational())
        .span(24)
        .height(9)
        .with_target(
            tempo_builders.TempoQuery()
            .datasource(TRACING)
            .ref_id("A")
            .query_type("traceql")
            .query(traceql)
            .limit(20)
        )
    )
    return (
        _dashboard(
            "twilio-studio-widget",
            "Twilio Studio / Widget drill-down",
            "One widget of one flow: where its visits go, how long they take (with exemplars "
            "linking to traces), failures, and users waiting in it now.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_tracing_variable())
        .with_variable(_flow_variable(many=False))
        .with_variable(_widget_variable())
        .with_row(dash.Row("Now"))
        .with_panel(
            _stat(
                _Look(
                    "Users waiting now",
                    "Visits of this widget in progress: users who entered it and have not left "
                    "yet (for wait-for-reply widgets, people who have not answered).",
                    "short",
                    _warn_above(100, 1000),
                    span=6,
                    height=5,
                ),
                # No series means nobody entered the widget yet: zero waiting is true.
                _prom(f"sum({waiting}) or on () vector(0)", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Visits",
                    "Visits that left this widget in the chosen time range.",
                    "short",
                    _informational(),
                    span=6,
                    height=5,
                ),
                _prom(f"sum(increase({steps}[$__range]))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Failure ratio",
                    f"Share of visits that left by a failure event ({FAILURE_EVENTS}) over "
                    "the chosen time range.",
                    "percentunit",
                    _warn_above(0.05, 0.2),
                    span=6,
                    height=5,
                ),
                _prom(
                    f"(sum(rate({failures}[$__range])) or on () vector(0)) "
                    f"/ sum(rate({steps}[$__range]))",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "p90 visit duration",
                    "90% of the closed visits of this widget in the chosen time range took at "
                    "most this long.",
                    "s",
                    duration_thresholds,
                    span=6,
                    height=5,
                ),
                _prom(
                    f"histogram_quantile(0.9, sum by (le) (rate({buckets}[$__range])))",
                    instant=True,
                ),
            )
        )
        .with_row(dash.Row("Visits"))
        .with_panel(
            _timeseries(
                _Look(
                    "Visits per second by outgoing event",
                    "How visits of this widget end: the event that fired and the widget it led to.",
                    per_second,
                    _informational(),
                ),
                _prom(
                    f"sum by (event, next_widget) (rate({steps}[$__rate_interval]))",
                    "{{event}} → {{next_widget}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Failure events",
                    f"Visits per second that ended with a failure event ({FAILURE_EVENTS}). "
                    "A flat zero is good news.",
                    per_second,
                    _warn_above(0.01, 0.1),
                ),
                # No failure series means no failure: zero is the honest answer.
                _prom(
                    f"sum by (event) (rate({failures}[$__rate_interval])) or on () vector(0)",
                    "{{event}}",
                ),
            )
        )
        .with_row(dash.Row("Duration (click an exemplar to open its trace)"))
        .with_panel(
            _timeseries(
                _Look(
                    "Visit duration p50 / p90 / p99",
                    "Percentiles of the time from entering this widget to leaving it. The "
                    "dots are exemplars: one real visit each, linking to its trace.",
                    "s",
                    duration_thresholds,
                ),
                _prom(_quantile(0.5, buckets), "p50", "A", exemplar=True),
                _prom(_quantile(0.9, buckets), "p90", "B", exemplar=True),
                _prom(_quantile(0.99, buckets), "p99", "C", exemplar=True),
            )
        )
        .with_panel(
            _panel(
                heatmap.Panel()
                .calculate(False)
                .y_axis(heatmap.YAxisConfig().unit("s"))
                .color(
                    heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges")
                )
                .exemplars_color("rgba(31,120,193,0.9)")
                .show_legend(),
                _Look(
                    "Visit duration heatmap",
                    "How many visits per second fell into each duration bucket; the dots are "
                    "exemplars linking to traces.",
                    "short",
                    _informational(),
                ),
                [
                    _prom(
                        f"sum by (le) (rate({buckets}[$__rate_interval]))",
                        "{{le}}",
                        exemplar=True,
                        fmt=PromQueryFormat.HEATMAP,
                    )
                ],
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Users waiting",
                    "Visits of this widget in progress over time.",
                    "short",
                    _warn_above(100, 1000),
                    span=24,
                ),
                _prom(f"sum({waiting}) or on () vector(0)", "waiting"),
            )
        )
        .with_row(dash.Row("Traces"))
        .with_panel(traces)
    )


def _node_graph_queries() -> list[prometheus.Dataquery]:
    """Three table frames the node graph reads by field name.

    A: nodes (`id`, `title`, value → `mainstat` = visits). Widgets appear as `widget` of the
       steps leaving them; widgets only ever entered (the `Ended` pseudo-widget, a widget
       with only open visits) appear as `next_widget`, so both are united with `or`.
    B: node p90 duration (`id`, value → `secondarystat`), joined onto A by `id`.
    C: edges (`id`, `source`, `target`, value → `mainstat` = transitions per second).
    """
    steps = f"twilio_studio_steps_total{{{ONE_FLOW}}}"
    buckets = f"twilio_studio_step_duration_seconds_bucket{{{ONE_FLOW}}}"
    left = f"sum by (id) ({_copy_label(f'increase({steps}[$__range])', 'id', 'widget')})"
    entered = f"sum by (id) ({_copy_label(f'increase({steps}[$__range])', 'id', 'next_widget')})"
    # Whole visits: increase() extrapolates to fractions over the range.
    nodes = f"round({_copy_label(f'{left} or {entered}', 'title', 'id')})"
    p90 = _quantile_over_range(0.9, buckets, "widget")
    p90 = f"sum by (id) ({_copy_label(p90, 'id', 'widget')})"
    transitions = f"sum by (widget, next_widget) (rate({steps}[$__range]))"
    edges = _copy_label(_copy_label(transitions, "source", "widget"), "target", "next_widget")
    edges = f'label_join({edges}, "id", "->", "widget", "next_widget")'
    return [
        _prom(nodes, ref="A", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(p90, ref="B", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(edges, ref="C", instant=True, fmt=PromQueryFormat.TABLE),
    ]


def _node_graph_transformations() -> list[model.DataTransformerConfig]:
    return [
        # Only the two node frames are joined; the edge frame must stay a frame of its own,
        # which the node graph recognises by its `source` field.
        model.DataTransformerConfig(
            id_val="joinByField",
            filter_val=model.MatcherConfig(id_val="byRefId", options="/^(A|B)$/"),
            options={"byField": "id", "mode": "outer"},
        ),
        model.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, "Time 1": True, "Time 2": True},
                "renameByName": {
                    "Value #A": "mainstat",
                    "Value #B": "secondarystat",
                    "Value #C": "mainstat",
                },
            },
        ),
    ]


def flow_map() -> dash.Dashboard:
    """The flow as a graph: widgets as nodes, transitions as edges, from the step counts."""
    steps = f"twilio_studio_steps_total{{{ONE_FLOW}}}"
    graph = _panel(
        nodegraph.Panel()
        .nodes(nodegraph.NodeOptions().main_stat_unit("short").secondary_stat_unit("s"))
        .edges(nodegraph.EdgeOptions().main_stat_unit("suffix: /s"))
        .transformations(_node_graph_transformations()),
        _Look(
            "Flow map",
            "Widgets of the flow as nodes (main number: visits in the chosen range; second: "
            "p90 visit duration) and transitions as edges (transitions per second). `Ended` "
            "is where executions finish.",
            "short",
            _informational(),
            span=24,
            height=18,
        ),
        _node_graph_queries(),
    )
    transitions = _panel(
        table.Panel().sort_by(
            [common_builders.TableSortByFieldState().display_name("Value").desc(True)]
        ),
        _Look(
            "Transitions",
            "Every transition of the flow in the chosen range: from widget, event, to widget, "
            "and how many times it happened.",
            "short",
            _informational(),
            span=24,
            height=12,
        ),
        [
            _prom(
                f"sum by (widget, event, next_widget) (increase({steps}[$__range]))",
                instant=True,
                fmt=PromQueryFormat.TABLE,
            )
        ],
    )
    return (
        _dashboard(
            "twilio-studio-flow-map",
            "Twilio Studio / Flow map",
            "The chosen flow drawn from its transition counts.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_tracing_variable())
        .with_variable(_flow_variable(many=False))
        .with_panel(graph)
        .with_panel(transitions)
    )


def exporter_health() -> dash.Dashboard:
    """Is the exporter keeping up: API calls, rate limits, lag, gaps, series cap, spans."""
    api = "twilio_studio_exporter_api_requests_total"
    per_second = "reqps"
    return (
        _dashboard(
            "twilio-studio-exporter-health",
            "Twilio Studio / Exporter health",
            "The exporter itself: Twilio API calls and errors, rate limiting, poll lag, step "
            "gaps, series cap hits and span export.",
        )
        .with_variable(_datasource_variable())
        .with_row(dash.Row("Now"))
        .with_panel(
            _stat(
                _Look(
                    "Exporter up",
                    "1 when Prometheus could scrape the exporter (job names matching "
                    "`.*studio.*`), 0 when not.",
                    "none",
                    _thresholds((None, "red"), (1, "green")),
                    span=6,
                    height=5,
                ),
                _prom('min(up{job=~".*studio.*"})', instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Since last successful poll",
                    "Time since the exporter last finished a poll of Twilio without error.",
                    "s",
                    _warn_above(120, 600),
                    span=6,
                    height=5,
                ),
                _prom(
                    "time() - max(twilio_studio_exporter_last_successful_poll_timestamp_seconds)",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Concurrency limit",
                    "Concurrent Twilio requests the exporter allows itself now; it shrinks on "
                    "429 answers and grows back when Twilio is happy.",
                    "short",
                    _thresholds((None, "orange"), (2, "green")),
                    span=6,
                    height=5,
                ),
                _prom("max(twilio_studio_exporter_concurrency_limit)", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Exporter version",
                    "Version of the running exporter (from build_info).",
                    "none",
                    _informational(),
                    span=6,
                    height=5,
                ),
                _prom(
                    "max by (version) (twilio_studio_exporter_build_info)",
                    "{{version}}",
                    instant=True,
                ),
            ).text_mode(common.BigValueTextMode.NAME)
        )
        .with_row(dash.Row("Twilio API"))
        .with_panel(
            _timeseries(
                _Look(
                    "API requests by operation and code",
                    "Requests to the Studio API per second, by operation and HTTP status (or "
                    "timeout / connection_error / malformed).",
                    per_second,
                    _informational(),
                ),
                _prom(
                    f"sum by (operation, code) (rate({api}[$__rate_interval]))",
                    "{{operation}} {{code}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "API errors by code",
                    "Requests per second that did not get a 2xx answer.",
                    per_second,
                    _warn_above(0.01, 1),
                ),
                # No error series means no error: zero is the honest answer.
                _prom(
                    f'sum by (code) (rate({api}{{code!~"2.."}}[$__rate_interval])) '
                    "or on () vector(0)",
                    "{{code}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "API latency p90 by operation",
                    "90th percentile of Studio API request durations.",
                    "s",
                    _warn_above(1, 5),
                ),
                _prom(
                    _quantile(
                        0.9,
                        "twilio_studio_exporter_api_request_duration_seconds_bucket",
                        "operation, le",
                    ),
                    "{{operation}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "429s and backoff waits",
                    "Answers 429 (too many concurrent requests) per second, and how often the "
                    "exporter backed off because of them.",
                    per_second,
                    _warn_above(0.1, 1),
                ),
                _prom(
                    f'sum(rate({api}{{code="429"}}[$__rate_interval])) or on () vector(0)',
                    "429 answers",
                    "A",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_rate_limit_waits_total[$__rate_interval]))",
                    "backoff waits",
                    "B",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Time spent backing off",
                    "Share of wall-clock time the exporter spent waiting because of rate "
                    "limits. Above 25% for long, see the RateLimitedForLong alert.",
                    "percentunit",
                    _warn_above(0.1, 0.25),
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_rate_limit_wait_seconds_total"
                    "[$__rate_interval]))",
                    "waiting",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Poll cycles by result and poll errors by reason",
                    "Poll cycles per second that finished ok or with an error, and the "
                    "reasons of the errors.",
                    "ops",
                    _informational(),
                ),
                _prom(
                    "sum by (result) (rate(twilio_studio_exporter_poll_cycles_total"
                    "[$__rate_interval]))",
                    "cycles {{result}}",
                    "A",
                ),
                # No error series means no error: zero is the honest answer.
                _prom(
                    "sum by (reason) (rate(twilio_studio_exporter_poll_errors_total"
                    "[$__rate_interval])) or on () vector(0)",
                    "error {{reason}}",
                    "B",
                ),
            )
        )
        .with_row(dash.Row("Freshness and completeness"))
        .with_panel(
            _timeseries(
                _Look(
                    "Poll lag (step created → exported)",
                    "p50 / p90 / p99 of the time between Twilio creating a step and the "
                    "exporter exporting it.",
                    "s",
                    _warn_above(120, 600),
                ),
                _prom(
                    _quantile(0.5, "twilio_studio_exporter_export_lag_seconds_bucket"), "p50", "A"
                ),
                _prom(
                    _quantile(0.9, "twilio_studio_exporter_export_lag_seconds_bucket"), "p90", "B"
                ),
                _prom(
                    _quantile(0.99, "twilio_studio_exporter_export_lag_seconds_bucket"), "p99", "C"
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Time since last successful poll",
                    "Grows between polls and drops at each successful one; a steady climb "
                    "means the exporter is stalled.",
                    "s",
                    _warn_above(120, 600),
                ),
                _prom(
                    "time() - max(twilio_studio_exporter_last_successful_poll_timestamp_seconds)",
                    "age",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Step gaps per flow",
                    "Breaks per second in executions' step chains (steps missing from "
                    "Twilio's best-effort log).",
                    "suffix: gaps/s",
                    _warn_above(0.01, 0.1),
                ),
                # No gap series means no gap: zero is the honest answer.
                _prom(
                    "sum by (flow) (rate(twilio_studio_step_gaps_total[$__rate_interval])) "
                    "or on () vector(0)",
                    "{{flow}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Series cap hits",
                    "New label combinations per second folded into `__overflow__` because a "
                    "metric reached its series cap. Anything above zero hides detail.",
                    "ops",
                    _warn_above(0.001, 1),
                ),
                # No overflow series means the cap was never hit: zero is the honest answer.
                _prom(
                    "sum by (metric) (rate(twilio_studio_exporter_series_overflow_total"
                    "[$__rate_interval])) or on () vector(0)",
                    "{{metric}}",
                ),
            )
        )
        .with_row(dash.Row("Spans"))
        .with_panel(
            _timeseries(
                _Look(
                    "Spans exported, dropped, failed exports",
                    "Spans per second accepted by the trace sink, dropped, and failed export "
                    "attempts (retried from the outbox).",
                    "ops",
                    _warn_above(0.01, 1),
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_spans_exported_total[$__rate_interval]))",
                    "exported",
                    "A",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_spans_dropped_total[$__rate_interval]))",
                    "dropped",
                    "B",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_span_export_failures_total"
                    "[$__rate_interval]))",
                    "failed exports",
                    "C",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Spans pending",
                    "Spans waiting in the outbox for the trace sink. A climbing line means the "
                    "tracing backend is down or too slow.",
                    "short",
                    _warn_above(1000, 10000),
                ),
                _prom("sum(twilio_studio_exporter_spans_pending)", "pending"),
            )
        )
    )


# --- output ---------------------------------------------------------------------------------


def _number_panels(panels: list[dict[str, Any]]) -> None:
    """Give every panel a stable id (the SDK leaves them unset), in reading order."""
    for number, panel in enumerate(_walk(panels), start=1):
        panel["id"] = number


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON model, for every dashboard the project ships."""
    result: dict[str, dict[str, Any]] = {}
    for builder in (studio_overview(), widget_drilldown(), flow_map(), exporter_health()):
        model_json: dict[str, Any] = json.loads(JSONEncoder().encode(builder.build()))
        _number_panels(model_json["panels"])
        result[f"{model_json['uid']}.json"] = model_json
    return result


def render(model_json: Mapping[str, Any]) -> str:
    """The bytes committed for one dashboard: stable key order, two-space indent."""
    return json.dumps(model_json, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def panel_queries(dashboards: Mapping[str, Mapping[str, Any]] | None = None) -> list[PanelQuery]:
    """Every PromQL expression of every panel of every dashboard (Prometheus targets only)."""
    dashboards = build_dashboards() if dashboards is None else dashboards
    queries: list[PanelQuery] = []
    for board in dashboards.values():
        for panel in _walk(board["panels"]):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != "prometheus":
                    continue
                queries.append(
                    PanelQuery(
                        dashboard=board["uid"],
                        panel=panel["title"],
                        ref_id=target["refId"],
                        expr=target["expr"],
                        instant=bool(target.get("instant", False)),
                    )
                )
    return queries


def write(directory: Path) -> list[Path]:
    """Write every dashboard into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model_json in build_dashboards().items():
        path = directory / name
        path.write_text(render(model_json), encoding="utf-8")
        written.append(path)
    return written


def drift(directory: Path) -> list[str]:
    """Human-readable differences between `directory` and what the code generates."""
    expected = {name: render(model_json) for name, model_json in build_dashboards().items()}
    problems: list[str] = []
    present = {path.name for path in directory.glob("*.json")}
    for name in sorted(present - expected.keys()):
        problems.append(f"{directory / name}: not generated by the code (delete it)")
    for name, text in sorted(expected.items()):
        path = directory / name
        if name not in present:
            problems.append(f"{path}: missing (run `make dashboards`)")
            continue
        actual = path.read_text(encoding="utf-8")
        if actual != text:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"{path} (committed)",
                f"{path} (generated)",
            )
            problems.append("".join(diff))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="write the dashboard JSON files into this folder")
    mode.add_argument("--check", type=Path, help="fail if this folder differs from the code")
    args = parser.parse_args(argv)
    if args.out is not None:
        for path in write(args.out):
            print(f"wrote {path}")
        return 0
    problems = drift(args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(
            "dashboards drifted from grafana/dashboards.py: run `make dashboards`", file=sys.stderr
        )
        return 1
    print(f"{args.check}: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
