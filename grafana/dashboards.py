"""The Grafana dashboards of the exporter, as code: `--out DIR` writes them, `--check DIR` diffs."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import zlib
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
# Widgets whose visit lasts as long as the system takes (not a person): the slowest-widget
# panel and the WidgetSlow alert look at these only.
SYSTEM_WIDGET_TYPES = (
    "make-http-request|run-function|send-message|set-variables|split-based-on|trigger"
)
#: The pseudo-widget an execution moves to when it ends: a visit leading there is an exit.
ENDED = "Ended"

# Every template variable a query may use: the dashboards' own and Grafana's built-in ones.
TEMPLATE_VARIABLES = frozenset(
    {"datasource", "tracing", "account", "flow", "widget", "job", "instance"}
    | {"__rate_interval", "__interval", "__range", "__range_s"}
)
# `$1` in a label_replace replacement is not a variable: names start with a letter or `_`.
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)(?::\w+)?\}|\[\[([A-Za-z_]\w*)\]\]|\$([A-Za-z_]\w*)")

# Selectors. Every Studio query is filtered by account (All is `.*`, which also matches series
# without the label). Flows are chosen by SID (the variable shows the name): the overview takes
# several (a regex), the drill-downs one. A widget name is interpolated unescaped, hence `=`.
ACCOUNTS = 'account_sid=~"$account"'
ANY_FLOWS = f'{ACCOUNTS}, flow_sid=~"$flow"'
ONE_FLOW = f'{ACCOUNTS}, flow_sid="$flow"'
ONE_WIDGET = f'{ONE_FLOW}, widget="$widget"'
# The exporter processes (several replicas, one per group of accounts, or one per mode).
TARGETS = 'job=~"$job", instance=~"$instance"'
# A work unit: what one replica polls and serves, and what Studio queries aggregate to (never
# by `instance`: with replicas, a unit's series move from one instance to another).
UNIT = "account_sid, flow_sid, flow"
# Every replica serves the account info, and replicas refreshing an account at different times
# may briefly disagree on its name: one name per account (topk), so a `group_left` join on
# `account_sid` never finds two.
ACCOUNT_NAMES = (
    "topk by (account_sid) (1, max by (account_sid, account) (twilio_studio_account_info))"
)

# Metrics only a mode that runs that source exposes (--mode); a query reading one has no data
# elsewhere, by design. Everything else is there in every mode.
PUSH_ONLY_METRICS = frozenset(
    {
        "twilio_studio_exporter_last_successful_push_timestamp_seconds",
        "twilio_studio_exporter_webhook_requests_total",
        "twilio_studio_exporter_events_received_total",
        "twilio_studio_exporter_events_dropped_total",
        "twilio_studio_exporter_events_pending",
        "twilio_studio_exporter_push_rest_reads_total",
        "twilio_studio_exporter_event_rest_disagreements_total",
    }
)
POLL_ONLY_METRICS = frozenset({"twilio_studio_exporter_last_successful_poll_timestamp_seconds"})
# Metrics only replicas sharing PostgreSQL expose (--state.postgres-url in poll mode, leases):
# a single exporter, or shards on SQLite (--shard), has none.
REPLICA_METRICS = frozenset(
    {
        "twilio_studio_exporter_units_leased",
        "twilio_studio_exporter_units",
        "twilio_studio_exporter_replicas",
        "twilio_studio_exporter_unit_moves_total",
        "twilio_studio_exporter_lease_errors_total",
    }
)

# Recording rules (grafana/alerts/studio-exporter.recording.rules.yml): per-widget rates that
# the top-N tables average over the whole range instead of recomputing rate() per series.
REC_VISITS = "flow_widget:twilio_studio_steps:rate5m"
REC_FAILURES = "flow_widget:twilio_studio_step_failures:rate5m"
REC_EXITS = "flow_widget:twilio_studio_step_exits:rate5m"
REC_DURATION = "flow_widget_le:twilio_studio_step_duration_seconds_bucket:rate5m"
RECORDED_METRICS = frozenset({REC_VISITS, REC_FAILURES, REC_EXITS, REC_DURATION})


@dataclass(frozen=True)
class PanelQuery:
    """One PromQL expression of one panel, as Grafana sends it (variables not yet replaced).

    ``may_be_empty``: the panel shows `noValue` (0, "none") when the query has no series, which
    is the honest answer for errors, failures, drops and the like that have not happened.
    """

    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool
    may_be_empty: bool = False

    @property
    def variables(self) -> frozenset[str]:
        """The template variables the expression uses (`$flow`, `${flow}`, `[[flow]]`)."""
        return variables_in(self.expr)

    @property
    def sources(self) -> frozenset[str]:
        """The sources (poll, push) of which one must run for the query to have data; "replicas"
        for the lease metrics of replicas sharing PostgreSQL."""
        used = metrics_in(self.expr)
        if used & REPLICA_METRICS:
            return frozenset({"replicas"})
        if used & PUSH_ONLY_METRICS:
            return frozenset({"push"})
        if used & POLL_ONLY_METRICS:
            return frozenset({"poll"})
        return frozenset({"poll", "push"})


@dataclass(frozen=True)
class VariableQuery:
    """A query variable: Grafana runs `query` and, with `regex`, takes text and value from it."""

    dashboard: str
    name: str
    query: str
    regex: str


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
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
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
    def no_value(self, no_value: str) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


@dataclass(frozen=True)
class _Look:
    """What every panel must say: what it shows, in which unit, and when to worry.

    ``no_value``: what the panel shows when the query has no series (a count of errors that
    never happened is 0, not "No data"); None where no series means something is wrong.
    """

    title: str
    description: str
    unit: str
    thresholds: dash.ThresholdsConfig
    span: int = 12
    height: int = 8
    no_value: str | None = None


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
    if look.no_value is not None:
        panel = panel.no_value(look.no_value)
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
    panel = (
        timeseries.Panel()
        .legend(_legend())
        # Every series under the cursor, largest first: comparing flows is the point.
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .fill_opacity(10)
        .min(0)
    )
    if len(look.thresholds.build().steps or []) > 1:
        # A threshold that means something is drawn on the graph, not only in the legend.
        panel = panel.thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    return _panel(panel, look, targets)


def _last_week(panel: timeseries.Panel) -> timeseries.Panel:
    """Draw the series whose legend ends in "last week" dashed and thin."""
    return panel.override_by_regexp(
        ".* last week$",
        [
            model.DynamicConfigValue(
                id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}
            ),
            model.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
            model.DynamicConfigValue(id_val="custom.lineWidth", value=1),
        ],
    )


def _stat(look: _Look, *targets: prometheus.Dataquery) -> stat.Panel:
    return _panel(
        stat.Panel()
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA),
        look,
        targets,
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


def _link(title: str, url: str) -> dict[str, Any]:
    """A data link (field config `links`): `url` may use ${__data.fields.x} and variables."""
    return {"title": title, "url": url, "targetBlank": False}


# Links into the drill-downs keep the data source, the accounts and the time range.
_KEEP = "${datasource:queryparam}&${account:queryparam}&${__url_time_range}"


def _widget_link(flow_sid: str, widget: str) -> dict[str, Any]:
    return _link(
        "Widget drill-down",
        f"/d/twilio-studio-widget?var-flow={flow_sid}&var-widget={widget}&{_KEEP}",
    )


def _flow_map_link(flow_sid: str) -> dict[str, Any]:
    return _link("Flow map", f"/d/twilio-studio-flow-map?var-flow={flow_sid}&{_KEEP}")


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


_ALL = model.VariableOption(selected=True, text="All", value="$__all")

# Grafana's query_result() gives one line per series: `{label="value",...} value timestamp`,
# labels in name order, values unescaped. A name may hold any character, so the text group is
# greedy and the value group matches only a SID, which ends the line's label part.
ACCOUNT_QUERY = "query_result(max by (account_sid, account) (twilio_studio_account_info))"
ACCOUNT_REGEX = '/account="(?<text>.*)",account_sid="(?<value>AC[0-9a-fA-F]{32})"/'
FLOW_QUERY = f"query_result(max by (flow_sid, flow) (twilio_studio_flow_info{{{ACCOUNTS}}}))"
FLOW_REGEX = '/flow="(?<text>.*)",flow_sid="(?<value>FW[0-9a-fA-F]{32})"/'


def _account_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("account")
        .label("Account")
        .description(
            "Twilio accounts (friendly name shown, account SID used). All also matches series "
            "of an exporter that does not label accounts."
        )
        .datasource(PROMETHEUS)
        .query(ACCOUNT_QUERY)
        .regex(ACCOUNT_REGEX)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_ALL)
    )


def _flow_variable(*, many: bool) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable("flow")
        .label("Flow")
        .description(
            "The Studio flow: its friendly name is shown, its SID selects the series, so a "
            "renamed flow stays one flow."
        )
        .datasource(PROMETHEUS)
        .query(FLOW_QUERY)
        .regex(FLOW_REGEX)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )
    if many:
        variable = variable.multi(True).include_all(True).all_value(".*").current(_ALL)
    return variable


def _widget_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("widget")
        .label("Widget")
        .description("A widget of the chosen flow.")
        .datasource(PROMETHEUS)
        .query(f"label_values(twilio_studio_steps_total{{{ONE_FLOW}}}, widget)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
    )


def _job_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("job")
        .label("Job")
        .description("Prometheus scrape jobs of the exporter (those exposing its build_info).")
        .datasource(PROMETHEUS)
        .query("label_values(twilio_studio_exporter_build_info, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_ALL)
    )


def _instance_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("instance")
        .label("Instance")
        .description("Exporter processes of the chosen jobs.")
        .datasource(PROMETHEUS)
        .query('label_values(twilio_studio_exporter_build_info{job=~"$job"}, instance)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(_ALL)
    )


# --- annotations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Annotation:
    """A Prometheus annotation: an event at each step where `expr` has a series."""

    name: str
    expr: str
    color: str


# Title and text of each annotation's events, by annotation name. The SDK's annotation builder
# has no fields for them: `build_dashboards` adds them to the JSON.
ANNOTATION_FORMATS: dict[str, tuple[str, str]] = {
    "Flow revisions": (
        "{{flow}} revision {{revision}}",
        "Studio flow {{flow}} ({{flow_sid}}) runs revision {{revision}} from here.",
    ),
    "Firing alerts": (
        "{{alertname}}",
        "{{alertname}} firing ({{severity}}) {{flow}} {{widget}} {{instance}}",
    ),
    "Exporter restarts": (
        "exporter restart",
        "{{instance}} restarted: its gauges start again from the state.",
    ),
}


def _revision_annotation(flows: str) -> _Annotation:
    # A new revision is a new flow_info series: present now, absent ten minutes ago.
    info = f"max by (flow_sid, flow, revision) (twilio_studio_flow_info{{{flows}}})"
    earlier = info.replace("})", "} offset 10m)")
    return _Annotation("Flow revisions", f"{info} unless {earlier}", "blue")


def _alerts_annotation() -> _Annotation:
    return _Annotation(
        "Firing alerts", 'ALERTS{alertstate="firing", alertname=~"TwilioStudio.*"}', "red"
    )


def _restarts_annotation(targets: str) -> _Annotation:
    return _Annotation(
        "Exporter restarts",
        f"changes(process_start_time_seconds{{{targets}}}[2m]) > 0",
        "purple",
    )


def _with_annotations(board: dash.Dashboard, *annotations: _Annotation) -> dash.Dashboard:
    for annotation in annotations:
        board = board.annotation(
            dash.AnnotationQuery()
            .name(annotation.name)
            .datasource(PROMETHEUS)
            .expr(annotation.expr)
            .enable(True)
            .icon_color(annotation.color)
        )
    return board


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


def _over_range(recorded: str, selector: str, by: str) -> str:
    """A recorded per-second rate, averaged over the whole time range, summed `by`."""
    return f"sum by ({by}) (avg_over_time({recorded}{{{selector}}}[$__range]))"


def _count_over_range(recorded: str, selector: str, by: str) -> str:
    """Whole events over the range from a recorded rate: rate times seconds, rounded."""
    return f"round({_over_range(recorded, selector, by)} * $__range_s)"


def _share_over_range(recorded: str, selector: str, by: str) -> str:
    """Share of visits counted by `recorded` (0 for widgets that have none of them)."""
    visits = _over_range(REC_VISITS, selector, by)
    part = _over_range(recorded, selector, by)
    return f"({part} or {visits} * 0) / {visits}"


# --- the dashboards -------------------------------------------------------------------------


def _widget_table(selector: str) -> table.Panel:
    """Failure first: every (flow, widget) with visits, failures, exits and p90, worst on top."""
    by = "flow_sid, flow, widget"
    # Every widget of the chosen flows gets a row: 0 failed visits where there were none.
    visits = _over_range(REC_VISITS, selector, by)
    failed = f"({_over_range(REC_FAILURES, selector, by)} or {visits} * 0)"
    queries = [
        _prom(f"round({failed} * $__range_s)", ref="A"),
        _prom(_count_over_range(REC_VISITS, selector, by), ref="B"),
        _prom(_share_over_range(REC_FAILURES, selector, by), ref="C"),
        _prom(_share_over_range(REC_EXITS, selector, by), ref="D"),
        _prom(
            f"histogram_quantile(0.9, {_over_range(REC_DURATION, selector, f'{by}, le')})",
            ref="E",
        ),
    ]
    columns = {
        "Value #A": "Failed visits",
        "Value #B": "Visits",
        "Value #C": "Failure ratio",
        "Value #D": "Exit rate",
        "Value #E": "p90 duration",
    }
    panel = _panel(
        table.Panel()
        .sort_by([common_builders.TableSortByFieldState().display_name("Failed visits").desc(True)])
        .transformations(
            [
                model.DataTransformerConfig(id_val="merge", options={}),
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {**columns, "flow_sid": "Flow SID"},
                        "indexByName": {
                            "flow": 0,
                            "widget": 1,
                            **{name: i for i, name in enumerate(columns, start=2)},
                            "flow_sid": 7,
                        },
                    },
                ),
                model.DataTransformerConfig(
                    id_val="sortBy",
                    options={"sort": [{"field": "Failed visits", "desc": True}]},
                ),
                model.DataTransformerConfig(id_val="limit", options={"limitField": 15}),
            ]
        ),
        _Look(
            "Widgets by failed visits",
            f"The 15 widgets with the most visits that left by a failure event ({FAILURE_EVENTS}) "
            "in the chosen range: visits, failure ratio, exit rate (share of visits after which "
            "the execution ended) and p90 visit duration. Click a widget for its drill-down, a "
            "flow for its map.",
            "short",
            _informational(),
            span=24,
            height=10,
        ),
        [q.instant().format(PromQueryFormat.TABLE) for q in queries],
    )
    percent = [model.DynamicConfigValue(id_val="unit", value="percentunit")]
    return (
        panel.override_by_name(
            "Failed visits",
            [
                model.DynamicConfigValue(id_val="thresholds", value=_warn_above(1, 50).build()),
                model.DynamicConfigValue(
                    id_val="custom.cellOptions", value={"type": "color-background"}
                ),
            ],
        )
        .override_by_name(
            "Failure ratio",
            [
                *percent,
                model.DynamicConfigValue(id_val="thresholds", value=_warn_above(0.05, 0.2).build()),
                model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
            ],
        )
        .override_by_name("Exit rate", percent)
        .override_by_name("p90 duration", [model.DynamicConfigValue(id_val="unit", value="s")])
        .override_by_name(
            "widget",
            [
                model.DynamicConfigValue(
                    id_val="links",
                    value=[_widget_link("${__data.fields.flow_sid}", "${__data.fields.widget}")],
                )
            ],
        )
        .override_by_name(
            "flow",
            [
                model.DynamicConfigValue(
                    id_val="links", value=[_flow_map_link("${__data.fields.flow_sid}")]
                )
            ],
        )
    )


def studio_overview() -> dash.Dashboard:
    """What is failing, where callers leave, how traffic compares with last week, how long."""
    steps = f"twilio_studio_steps_total{{{ANY_FLOWS}}}"
    failures = f'twilio_studio_steps_total{{{ANY_FLOWS}, event=~"{FAILURE_EVENTS}"}}'
    started = f"twilio_studio_executions_started_total{{{ANY_FLOWS}}}"
    ended = f"twilio_studio_executions_ended_total{{{ANY_FLOWS}}}"
    # A flow's gauge, served by the replica that holds the flow (by two for a scrape around a
    # move): the max over instances, then the sum over flows (see _per_unit).
    active = _per_unit(f"twilio_studio_executions_active{{{ANY_FLOWS}}}", UNIT)
    duration = f"twilio_studio_execution_duration_seconds_bucket{{{ANY_FLOWS}}}"
    gaps = f"twilio_studio_step_gaps_total{{{ANY_FLOWS}}}"
    per_second = "suffix: /s"
    by_widget = "flow_sid, flow, widget"
    account_names = ACCOUNT_NAMES
    board = (
        _dashboard(
            "twilio-studio-overview",
            "Twilio Studio / Overview",
            "The chosen Studio flows, failure first: failing widgets, where callers leave, "
            "traffic against last week, execution duration, accounts.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_account_variable())
        .with_variable(_flow_variable(many=True))
        .with_row(dash.Row("What is failing"))
        .with_panel(
            _stat(
                _Look(
                    "Failed visits",
                    f"Visits in the chosen range that left their widget by a failure event "
                    f"({FAILURE_EVENTS}): callers who met an error. The table below says where.",
                    "short",
                    _warn_above(1, 50),
                    span=6,
                    height=5,
                    no_value="0",
                ),
                _prom(f"round(sum(increase({failures}[$__range])))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Failure ratio",
                    "Failed visits out of all visits in the chosen range.",
                    "percentunit",
                    _warn_above(0.01, 0.05),
                    span=6,
                    height=5,
                    no_value="0",
                ),
                _prom(
                    f"sum(rate({failures}[$__range])) / sum(rate({steps}[$__range]))",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Executions started",
                    "Executions started in the chosen range, all chosen flows.",
                    "short",
                    _informational(),
                    span=4,
                    height=5,
                ),
                _prom(f"round(sum(increase({started}[$__range])))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Active executions",
                    "Executions started and not ended yet: callers somewhere inside a flow now. "
                    "Orange and red mean executions pile up (see the ExecutionsPilingUp alert).",
                    "short",
                    _warn_above(500, 2000),
                    span=4,
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
                    "in the chosen range. Visits across a gap are not measured.",
                    "short",
                    _warn_above(1, 50),
                    span=4,
                    height=5,
                ),
                _prom(f"round(sum(increase({gaps}[$__range])))", instant=True),
            )
        )
        .with_panel(_widget_table(ANY_FLOWS))
        .with_row(dash.Row("Where callers leave"))
        .with_panel(
            _bars(
                _Look(
                    "Exit rate per widget",
                    f"Share of a widget's visits after which the execution ended (next widget "
                    f"`{ENDED}`): where callers leave the flow, by design or not. The 15 "
                    "highest over the chosen range.",
                    "percentunit",
                    _informational(),
                    span=8,
                    height=10,
                ),
                _prom(
                    f"topk(15, {_share_over_range(REC_EXITS, ANY_FLOWS, by_widget)})",
                    "{{flow}} / {{widget}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Where executions end",
                    "Executions ended in the chosen range, by the widget they ended from "
                    "(final_widget). An error path among the top is worth a look.",
                    "short",
                    _informational(),
                    span=8,
                    height=10,
                ),
                _prom(
                    f"sort_desc(round(sum by (flow, final_widget) (increase({ended}[$__range]))))",
                    "{{flow}} / {{final_widget}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Busiest widgets",
                    "The 10 widgets with the most visits in the chosen range.",
                    "short",
                    _informational(),
                    span=8,
                    height=10,
                ),
                _prom(
                    f"topk(10, {_count_over_range(REC_VISITS, ANY_FLOWS, by_widget)})",
                    "{{flow}} / {{widget}}",
                    instant=True,
                ),
            )
        )
        .with_row(dash.Row("Traffic against last week"))
        .with_panel(
            _last_week(
                _timeseries(
                    _Look(
                        "Executions started per flow",
                        "Executions each flow starts per second; the dashed line is the same "
                        "time last week (see the TrafficFarBelowLastWeek alert).",
                        per_second,
                        _informational(),
                    ),
                    _prom(f"sum by (flow) (rate({started}[$__rate_interval]))", "{{flow}}", "A"),
                    _prom(
                        f"sum by (flow) (rate({started}[$__rate_interval] offset 1w))",
                        "{{flow}} last week",
                        "B",
                    ),
                )
            )
        )
        .with_panel(
            _last_week(
                _timeseries(
                    _Look(
                        "Failed visits per flow",
                        "Visits per second that left by a failure event; dashed: last week.",
                        per_second,
                        _warn_above(0.01, 0.1),
                        no_value="0",
                    ),
                    _prom(f"sum by (flow) (rate({failures}[$__rate_interval]))", "{{flow}}", "A"),
                    _prom(
                        f"sum by (flow) (rate({failures}[$__rate_interval] offset 1w))",
                        "{{flow}} last week",
                        "B",
                    ),
                )
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
                    "do not end (callers stuck waiting, or a widget that never returns).",
                    "short",
                    _warn_above(500, 2000),
                ),
                _prom(f"sum by (flow) ({active})", "{{flow}}"),
            )
        )
        .with_row(dash.Row("How long"))
        .with_panel(
            _timeseries(
                _Look(
                    "Execution duration p90 per flow",
                    "90th percentile of the time from an execution's start to its end, per "
                    "flow. The dots are exemplars: one real execution each, linking to its "
                    "trace.",
                    "s",
                    _warn_above(600, 3600),
                ),
                _prom(_quantile(0.9, duration, "flow, le"), "{{flow}}", exemplar=True),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Slowest widgets (p90)",
                    "The 10 widgets with the longest 90th percentile visit duration over the "
                    "chosen range, among widgets whose time is the system's (HTTP request, "
                    "function, message, variables, split, trigger): widgets that wait for a "
                    "person are left out, as in the WidgetSlow alert.",
                    "s",
                    _warn_above(10, 60),
                    height=8,
                ),
                _prom(
                    "topk(10, histogram_quantile(0.9, "
                    + _over_range(
                        REC_DURATION,
                        f'{ANY_FLOWS}, widget_type=~"{SYSTEM_WIDGET_TYPES}"',
                        f"{by_widget}, le",
                    )
                    + "))",
                    "{{flow}} / {{widget}}",
                    instant=True,
                ),
            )
        )
        .with_row(dash.Row("Accounts"))
        .with_panel(
            _bars(
                _Look(
                    "Top accounts by executions started",
                    "The 10 accounts (subaccounts) of the chosen flows with the most executions "
                    "started in the chosen range, by friendly name where the exporter names "
                    "accounts.",
                    "short",
                    _informational(),
                ),
                _prom(
                    _with_account_names(
                        f"round(sum by (account_sid) (increase({started}[$__range])))",
                        account_names,
                    ),
                    "{{account}} {{account_sid}}",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _bars(
                _Look(
                    "Top accounts by failed visits",
                    "The 10 accounts with the most visits that left by a failure event in the "
                    "chosen range.",
                    "short",
                    _warn_above(1, 50),
                    no_value="0",
                ),
                _prom(
                    _with_account_names(
                        f"round(sum by (account_sid) (increase({failures}[$__range])))",
                        account_names,
                    ),
                    "{{account}} {{account_sid}}",
                    instant=True,
                ),
            )
        )
    )
    return _with_annotations(
        board,
        _revision_annotation(ANY_FLOWS),
        _alerts_annotation(),
        _restarts_annotation('job=~".+"'),
    )


def _per_unit(gauge: str, labels: str) -> str:
    """A gauge of one work unit (account, flow) as one series per `labels`, whatever the replicas.

    With replicas, the replica holding a unit serves its gauges; around a move the old and the
    new owner may both serve them for a scrape, with the same labels but `instance`. Summing
    over instances would count them twice: the max over instances is the value, and sums over
    units (flows, accounts) are taken from there.
    """
    return f"max by ({labels}) ({gauge})"


def _with_account_names(per_account: str, names: str) -> str:
    """The top 10 of `per_account`, with the account's friendly name joined on where known."""
    top = f"topk(10, {per_account})"
    return f"({top} * on (account_sid) group_left (account) {names}) or on (account_sid) {top}"


def widget_drilldown() -> dash.Dashboard:
    """One widget of one flow: visits by outcome, exits, duration with exemplars, waiters."""
    steps = f"twilio_studio_steps_total{{{ONE_WIDGET}}}"
    failures = f'twilio_studio_steps_total{{{ONE_WIDGET}, event=~"{FAILURE_EVENTS}"}}'
    exits = f'twilio_studio_steps_total{{{ONE_WIDGET}, next_widget="{ENDED}"}}'
    buckets = f"twilio_studio_step_duration_seconds_bucket{{{ONE_WIDGET}}}"
    waiting = _per_unit(
        f"twilio_studio_widget_visits_in_progress{{{ONE_WIDGET}}}", f"{UNIT}, widget"
    )
    per_second = "suffix: visits/s"
    duration_thresholds = _warn_above(10, 60)
    traceql = (
        '{ span.twilio.studio.flow.sid = "$flow" && span.twilio.studio.widget.name = "$widget" }'
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
    board = (
        _dashboard(
            "twilio-studio-widget",
            "Twilio Studio / Widget drill-down",
            "One widget of one flow: where its visits go, how often callers leave or fail "
            "there, how long visits take (with exemplars linking to traces), who waits in it.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_tracing_variable())
        .with_variable(_account_variable())
        .with_variable(_flow_variable(many=False))
        .with_variable(_widget_variable())
        .with_row(dash.Row("Now"))
        .with_panel(
            _stat(
                _Look(
                    "Visits",
                    "Visits that left this widget in the chosen range.",
                    "short",
                    _informational(),
                    span=4,
                    height=5,
                ),
                _prom(f"round(sum(increase({steps}[$__range])))", instant=True),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Failure ratio",
                    f"Share of visits that left by a failure event ({FAILURE_EVENTS}) over "
                    "the chosen range.",
                    "percentunit",
                    _warn_above(0.05, 0.2),
                    span=5,
                    height=5,
                    no_value="0",
                ),
                _prom(
                    f"sum(rate({failures}[$__range])) / sum(rate({steps}[$__range]))",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Exit rate",
                    f"Share of visits after which the execution ended (next widget `{ENDED}`): "
                    "callers who left the flow here.",
                    "percentunit",
                    _informational(),
                    span=5,
                    height=5,
                    no_value="0",
                ),
                _prom(
                    f"sum(rate({exits}[$__range])) / sum(rate({steps}[$__range]))",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "p90 visit duration",
                    "90% of the closed visits of this widget in the chosen range took at most "
                    "this long.",
                    "s",
                    duration_thresholds,
                    span=5,
                    height=5,
                ),
                _prom(
                    f"histogram_quantile(0.9, sum by (le) (rate({buckets}[$__range])))",
                    instant=True,
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Callers waiting now",
                    "Visits of this widget in progress: callers who entered it and have not "
                    "left yet (for wait-for-reply widgets, people who have not answered).",
                    "short",
                    _warn_above(100, 1000),
                    span=5,
                    height=5,
                    no_value="0",
                ),
                _prom(f"sum({waiting})", instant=True),
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
                    no_value="0",
                ),
                _prom(f"sum by (event) (rate({failures}[$__rate_interval]))", "{{event}}"),
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
                    "Callers waiting",
                    "Visits of this widget in progress over time.",
                    "short",
                    _warn_above(100, 1000),
                    span=24,
                    no_value="0",
                ),
                _prom(f"sum({waiting})", "waiting"),
            )
        )
        .with_row(dash.Row("Traces"))
        .with_panel(traces)
    )
    return _with_annotations(
        board,
        _revision_annotation(ONE_FLOW),
        _alerts_annotation(),
        _restarts_annotation('job=~".+"'),
    )


def _node_graph_queries() -> list[prometheus.Dataquery]:
    """Five table frames the node graph reads by field name.

    A: nodes (`id`, `title`, value → `mainstat` = visits in the range). Widgets appear as
       `widget` of the steps leaving them; widgets only ever entered (the `Ended` pseudo-widget,
       a widget with only open visits) appear as `next_widget`, so both are united with `or`.
    B: node p90 duration (`id`, value → `secondarystat`), joined onto A by `id`.
    C: edges (`id`, `source`, `target`, value → `mainstat` = transitions in the range: the same
       unit as the nodes' visits, so a node's number is the sum of its outgoing edges).
    D, E: the failure share of each node's visits and the rest (`arc__failed`, `arc__ok`): the
       node graph draws them as the coloured ring around the node.
    """
    steps = f"twilio_studio_steps_total{{{ONE_FLOW}}}"
    failures = f'twilio_studio_steps_total{{{ONE_FLOW}, event=~"{FAILURE_EVENTS}"}}'
    buckets = f"twilio_studio_step_duration_seconds_bucket{{{ONE_FLOW}}}"

    def per_node(counter: str, label: str = "widget") -> str:
        return f"sum by (id) ({_copy_label(f'increase({counter}[$__range])', 'id', label)})"

    # Whole visits: increase() extrapolates to fractions over the range.
    every_node = f"{per_node(steps)} or {per_node(steps, 'next_widget')}"
    nodes = f"round({_copy_label(every_node, 'title', 'id')})"
    p90 = _quantile_over_range(0.9, buckets, "widget")
    p90 = f"sum by (id) ({_copy_label(p90, 'id', 'widget')})"
    transitions = f"round(sum by (widget, next_widget) (increase({steps}[$__range])))"
    edges = _copy_label(_copy_label(transitions, "source", "widget"), "target", "next_widget")
    edges = f'label_join({edges}, "id", "->", "widget", "next_widget")'
    failed_share = f"({per_node(failures)} or {per_node(steps)} * 0) / {per_node(steps)}"
    return [
        _prom(nodes, ref="A", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(p90, ref="B", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(edges, ref="C", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(failed_share, ref="D", instant=True, fmt=PromQueryFormat.TABLE),
        _prom(f"1 - {failed_share}", ref="E", instant=True, fmt=PromQueryFormat.TABLE),
    ]


NODE_FIELDS = {
    "Value #A": "mainstat",
    "Value #B": "secondarystat",
    "Value #C": "mainstat",
    "Value #D": "arc__failed",
    "Value #E": "arc__ok",
}


def _node_graph_transformations() -> list[model.DataTransformerConfig]:
    return [
        # Only the node frames are joined; the edge frame must stay a frame of its own,
        # which the node graph recognises by its `source` field.
        model.DataTransformerConfig(
            id_val="joinByField",
            filter_val=model.MatcherConfig(id_val="byRefId", options="/^(A|B|D|E)$/"),
            options={"byField": "id", "mode": "outer"},
        ),
        model.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": {"Time": True, **{f"Time {n}": True for n in range(1, 5)}},
                "renameByName": NODE_FIELDS,
            },
        ),
    ]


def _fixed_color(color: str) -> list[model.DynamicConfigValue]:
    return [model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})]


def flow_map() -> dash.Dashboard:
    """The flow as a graph: widgets as nodes, transitions as edges, from the step counts."""
    steps = f"twilio_studio_steps_total{{{ONE_FLOW}}}"
    graph = (
        _panel(
            nodegraph.Panel()
            .nodes(nodegraph.NodeOptions().main_stat_unit("short").secondary_stat_unit("s"))
            .edges(nodegraph.EdgeOptions().main_stat_unit("short"))
            .transformations(_node_graph_transformations()),
            _Look(
                "Flow map",
                "Widgets of the flow as nodes (main number: visits in the chosen range; second: "
                "p90 visit duration; ring: red for the share of visits that failed) and "
                "transitions as edges (transitions in the chosen range). `Ended` is where "
                "executions finish. Click a node for its drill-down.",
                "short",
                _informational(),
                span=24,
                height=18,
            ),
            _node_graph_queries(),
        )
        .override_by_name("arc__failed", _fixed_color("red"))
        .override_by_name("arc__ok", _fixed_color("green"))
        .override_by_name(
            # Only the node frame has `title`: the link goes to the widget of the node.
            "title",
            [
                model.DynamicConfigValue(
                    id_val="links", value=[_widget_link("${flow}", "${__data.fields.id}")]
                )
            ],
        )
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
                f"round(sum by (widget, event, next_widget) (increase({steps}[$__range])))",
                instant=True,
                fmt=PromQueryFormat.TABLE,
            )
        ],
    )
    board = (
        _dashboard(
            "twilio-studio-flow-map",
            "Twilio Studio / Flow map",
            "The chosen flow drawn from its transition counts, failures as red rings.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_account_variable())
        .with_variable(_flow_variable(many=False))
        .with_panel(graph)
        .with_panel(transitions)
    )
    return _with_annotations(board, _revision_annotation(ONE_FLOW), _alerts_annotation())


def _up_mappings() -> list[model.ValueMapping]:
    """A scraped target reads up / down; a target Prometheus no longer has reads "missing", red."""
    return [
        model.ValueMap(
            options={
                "0": model.ValueMappingResult(text="down", color="red", index=0),
                "1": model.ValueMappingResult(text="up", color="green", index=1),
            }
        ),
        model.SpecialValueMap(
            options=model.DashboardSpecialValueMapOptions(
                match=model.SpecialValueMatch.NULL_AND_NAN,
                result=model.ValueMappingResult(text="missing", color="red", index=2),
            )
        ),
    ]


def _since_success(gauge: str) -> str:
    """Seconds since a source last succeeded, per process; from the process start if never.

    The same reading as the Stalled alert: a gauge still 0 is not "56 years ago".
    """
    last = f"{gauge}{{{TARGETS}}}"
    started = f"process_start_time_seconds{{{TARGETS}}}"
    return (
        f"time() - max by (instance) ({last} > 0 "
        f"or on (job, instance) ({started} and on (job, instance) ({last} == 0)))"
    )


def exporter_health() -> dash.Dashboard:
    """Is each exporter process keeping up: API calls, rate limits, lag, push, spans."""
    api = f"twilio_studio_exporter_api_requests_total{{{TARGETS}}}"
    per_second = "reqps"
    poll_age = _since_success("twilio_studio_exporter_last_successful_poll_timestamp_seconds")
    push_age = _since_success("twilio_studio_exporter_last_successful_push_timestamp_seconds")
    board = (
        _dashboard(
            "twilio-studio-exporter-health",
            "Twilio Studio / Exporter health",
            "Each exporter process: scrape status, freshness, Twilio API calls and rate "
            "limiting, export lag, step gaps, series cap, Event Streams deliveries, spans.",
        )
        .with_variable(_datasource_variable())
        .with_variable(_job_variable())
        .with_variable(_instance_variable())
        .with_row(dash.Row("Now, per process"))
        .with_panel(
            _stat(
                _Look(
                    "Exporter up",
                    "Each exporter target of the chosen jobs: up when Prometheus scraped it, "
                    "down when the scrape failed, missing (red) when the target is gone.",
                    "none",
                    _thresholds((None, "red"), (1, "green")),
                    span=6,
                    height=5,
                    no_value="missing",
                ),
                _prom(f"up{{{TARGETS}}}", "{{instance}}", instant=True),
            )
            .mappings(_up_mappings())
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        )
        .with_panel(
            _stat(
                _Look(
                    "Since last success",
                    "Per process and source: time since the last successful poll cycle and "
                    "the last push pass that processed the inbox without failure (since the "
                    "process started, if none yet). A mode runs one source or both (--mode).",
                    "s",
                    _warn_above(120, 600),
                    span=6,
                    height=5,
                ),
                _prom(poll_age, "{{instance}} poll", "A", instant=True),
                _prom(push_age, "{{instance}} push", "B", instant=True),
            ).text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        )
        .with_panel(
            _stat(
                _Look(
                    "Concurrency limit",
                    "Concurrent Twilio requests each process allows itself now; it shrinks on "
                    "429 answers and grows back when Twilio is happy.",
                    "short",
                    _thresholds((None, "orange"), (2, "green")),
                    span=6,
                    height=5,
                ),
                _prom(
                    f"twilio_studio_exporter_concurrency_limit{{{TARGETS}}}",
                    "{{instance}}",
                    instant=True,
                ),
            ).text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        )
        .with_panel(
            _stat(
                _Look(
                    "Exporter version",
                    "Version each process runs (from build_info).",
                    "none",
                    _informational(),
                    span=6,
                    height=5,
                ),
                _prom(
                    f"max by (instance, version) (twilio_studio_exporter_build_info{{{TARGETS}}})",
                    "{{instance}} {{version}}",
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
                    "Requests per second that did not get a 2xx answer, per process.",
                    per_second,
                    _warn_above(0.01, 1),
                    no_value="0",
                ),
                _prom(
                    f"sum by (instance, code) "
                    f'(rate(twilio_studio_exporter_api_requests_total{{{TARGETS}, code!~"2.."}}'
                    "[$__rate_interval]))",
                    "{{instance}} {{code}}",
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
                        f"twilio_studio_exporter_api_request_duration_seconds_bucket{{{TARGETS}}}",
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
                    "Answers 429 (too many concurrent requests) per second, and how often each "
                    "process backed off because of them.",
                    per_second,
                    _warn_above(0.1, 1),
                    no_value="0",
                ),
                _prom(
                    "sum by (instance) (rate(twilio_studio_exporter_api_requests_total"
                    f'{{{TARGETS}, code="429"}}[$__rate_interval]))',
                    "{{instance}} 429 answers",
                    "A",
                ),
                _prom(
                    "sum by (instance) (rate(twilio_studio_exporter_rate_limit_waits_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{instance}} backoff waits",
                    "B",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Time spent backing off",
                    "Share of wall-clock time each process spent waiting because of rate "
                    "limits. Above 25% for long, see the RateLimitedForLong alert.",
                    "percentunit",
                    _warn_above(0.1, 0.25),
                ),
                _prom(
                    "sum by (instance) (rate(twilio_studio_exporter_rate_limit_wait_seconds_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{instance}}",
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
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "cycles {{result}}",
                    "A",
                ),
                _prom(
                    "sum by (reason) (rate(twilio_studio_exporter_poll_errors_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "error {{reason}}",
                    "B",
                ),
            )
        )
        .with_row(dash.Row("Freshness and completeness"))
        .with_panel(
            _timeseries(
                _Look(
                    "Export lag (step created → exported)",
                    "p50 / p90 / p99 of the time between Twilio creating a step and the "
                    "exporter exporting it, polled or pushed (see the ExportLagHigh alert).",
                    "s",
                    _warn_above(120, 600),
                ),
                *(
                    _prom(
                        _quantile(
                            q,
                            f"twilio_studio_exporter_export_lag_seconds_bucket{{{TARGETS}}}",
                        ),
                        f"p{round(q * 100)}",
                        ref,
                    )
                    for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Time since last success",
                    "Per process and source: grows between successes and drops at each; a "
                    "steady climb means that process is stalled (see the Stalled alert).",
                    "s",
                    _warn_above(120, 600),
                ),
                _prom(poll_age, "{{instance}} poll", "A"),
                _prom(push_age, "{{instance}} push", "B"),
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
                _prom(
                    "sum by (flow) (rate(twilio_studio_step_gaps_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
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
                _prom(
                    "sum by (metric) (rate(twilio_studio_exporter_series_overflow_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{metric}}",
                ),
            )
        )
        .with_row(dash.Row("Event Streams (push and hybrid modes)"))
        .with_panel(
            _timeseries(
                _Look(
                    "Webhook answers by code",
                    "Deliveries per second by the HTTP status the receiver answered: 200 "
                    "stored; 403 bad signature; 401 basic auth; 400 not JSON; 429 inbox full "
                    "(Twilio retries); 503 state store failing. Twilio drops events answered "
                    "with other 4xx.",
                    per_second,
                    _informational(),
                ),
                _prom(
                    "sum by (instance, code) (rate(twilio_studio_exporter_webhook_requests_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{instance}} {{code}}",
                ),
            )
            .override_by_regexp(".* 2..$", _fixed_color("green"))
            .override_by_regexp(".* [45]..$", _fixed_color("red"))
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Events received, duplicated, dropped",
                    "Events per second: accepted (new), duplicate (Twilio delivers at least "
                    "once), ignored (other types), rejected (unreadable), and dropped after "
                    "acceptance (malformed, REST completion failing).",
                    "ops",
                    _warn_above(0.001, 0.1),
                ),
                _prom(
                    "sum by (result) (rate(twilio_studio_exporter_events_received_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{result}}",
                    "A",
                ),
                _prom(
                    "sum by (reason) (rate(twilio_studio_exporter_events_dropped_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "dropped {{reason}}",
                    "B",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Events pending",
                    "Events committed to the inbox and not processed yet, per process. A "
                    "climbing line means processing is stuck (see the Stalled alert).",
                    "short",
                    _warn_above(1000, 50000),
                ),
                _prom(
                    f"sum by (instance) (twilio_studio_exporter_events_pending{{{TARGETS}}})",
                    "{{instance}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "REST reads in push mode",
                    "Requests push mode still makes, by reason: a step event missing a field, "
                    "an execution's steps at its end, after a hole, after a restart, or after "
                    "10 idle minutes.",
                    "reqps",
                    _informational(),
                    no_value="0",
                ),
                _prom(
                    "sum by (reason) (rate(twilio_studio_exporter_push_rest_reads_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{reason}}",
                ),
            )
        )
        .with_row(dash.Row("Accounts, data quality, web port"))
        .with_panel(
            _timeseries(
                _Look(
                    "Account errors",
                    "Failures of one followed account that the others do not share, by account "
                    "and reason: its credentials refused (unauthorized), its Studio or Accounts "
                    "entry unreadable, no auth token listed for it. Retried with backoff.",
                    "ops",
                    _warn_above(0.0001, 0.01),
                    no_value="0",
                ),
                _prom(
                    "sum by (account_sid, reason) (rate("
                    f"twilio_studio_exporter_account_errors_total{{{TARGETS}}}[$__rate_interval]))",
                    "{{account_sid}} {{reason}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Data that cannot be right",
                    "Studio data counted rather than smoothed over: durations that end before "
                    "they start (kept out of the histograms), executions Studio answered 404 "
                    "for (deleted), pushed steps that Studio's REST copy gives differently "
                    "(REST wins), by kind or field.",
                    "ops",
                    _warn_above(0.01, 1),
                    no_value="0",
                ),
                _prom(
                    "sum by (kind) (rate(twilio_studio_exporter_anomalies_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{kind}}",
                    "A",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_executions_vanished_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "executions vanished",
                    "B",
                ),
                _prom(
                    "sum by (field) (rate(twilio_studio_exporter_event_rest_disagreements_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "event vs REST: {{field}}",
                    "C",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Web port refusals",
                    "Connections and requests the web port refused, by reason: over "
                    "--web.max-connections, too many bodies at once, too slow, too large, "
                    "malformed, TLS. A steady rate from one source is usually a scanner.",
                    "ops",
                    _warn_above(0.1, 10),
                    no_value="0",
                ),
                _prom(
                    "sum by (reason) (rate(twilio_studio_exporter_http_refused_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{reason}}",
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
                    "sum(rate(twilio_studio_exporter_spans_exported_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "exported",
                    "A",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_spans_dropped_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "dropped",
                    "B",
                ),
                _prom(
                    "sum(rate(twilio_studio_exporter_span_export_failures_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "failed exports",
                    "C",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Spans pending",
                    "Spans waiting in the outbox for the trace sink, per process. A climbing "
                    "line means the tracing backend is down or too slow.",
                    "short",
                    _warn_above(1000, 10000),
                ),
                _prom(
                    f"sum by (instance) (twilio_studio_exporter_spans_pending{{{TARGETS}}})",
                    "{{instance}}",
                ),
            )
        )
        .with_row(dash.Row("Replicas (PostgreSQL leases)"))
        .with_panel(
            _timeseries(
                _Look(
                    "Units leased per replica",
                    "Replicas sharing PostgreSQL split the work units (account, flow) by lease: "
                    "the units each replica holds, polls and serves, against all units and "
                    "those leased by any replica of the chosen jobs. Leased under all for "
                    "longer than a lease and a poll interval: some flows are polled by nobody. "
                    "Empty without replicas.",
                    "short",
                    _informational(),
                    span=12,
                    no_value="no replicas",
                ),
                _prom(
                    f"twilio_studio_exporter_units_leased{{{TARGETS}}}",
                    "{{instance}}",
                    "A",
                ),
                _prom(
                    # The same on every replica of a job: one per job, then the jobs.
                    'sum(max by (job) (twilio_studio_exporter_units{job=~"$job"}))',
                    "all units",
                    "B",
                ),
                _prom(
                    'sum(twilio_studio_exporter_units_leased{job=~"$job"})',
                    "leased by any replica",
                    "C",
                ),
            )
        )
        .with_panel(
            _stat(
                _Look(
                    "Replicas seen",
                    "Replicas whose heartbeat in PostgreSQL is current, as each replica sees "
                    "them: all should show the same number, the number of replicas running.",
                    "short",
                    _informational(),
                    span=4,
                    no_value="no replicas",
                ),
                _prom(
                    f"max by (instance) (twilio_studio_exporter_replicas{{{TARGETS}}})",
                    "{{instance}}",
                    instant=True,
                ),
            ).text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Unit moves",
                    "Units per second that replicas took (acquired), gave up to balance the "
                    "load (released), or dropped because they could not renew their leases "
                    "(expired). Moves follow replicas joining and leaving; a steady rate "
                    "without either is units bouncing between replicas.",
                    "ops",
                    _warn_above(0.1, 1),
                    span=4,
                    no_value="0",
                ),
                _prom(
                    "sum by (direction) (rate(twilio_studio_exporter_unit_moves_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{direction}}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                _Look(
                    "Lease errors",
                    "Lease ticks per second that failed (PostgreSQL did not answer in time or "
                    "refused), per replica. A replica whose ticks keep failing for a lease "
                    "duration drops its units, for the others to take.",
                    "ops",
                    _warn_above(0.001, 0.05),
                    span=4,
                    no_value="0",
                ),
                _prom(
                    "sum by (instance) (rate(twilio_studio_exporter_lease_errors_total"
                    f"{{{TARGETS}}}[$__rate_interval]))",
                    "{{instance}}",
                ),
            )
        )
    )
    return _with_annotations(board, _alerts_annotation(), _restarts_annotation(TARGETS))


# --- output ---------------------------------------------------------------------------------


def panel_id(title: str) -> int:
    """A panel's id, from its title: adding or moving a panel renumbers no other.

    Links (alerts' dashboard_url, `viewPanel=`) name panels by id; tests check that the ids of
    a dashboard are distinct and that every link points at a panel that exists.
    """
    return zlib.crc32(title.encode("utf-8")) % 100_000 + 1


def _number_panels(panels: list[dict[str, Any]]) -> None:
    """Give every panel its stable id (the SDK leaves them unset)."""
    for panel in _walk(panels):
        # A row and a panel may share a title ("Visits"): rows get ids of their own.
        title = panel["title"] if panel["type"] != "row" else f"row: {panel['title']}"
        panel["id"] = panel_id(title)


def _walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _walk(panel.get("panels", []))


def _annotation_formats(model_json: dict[str, Any]) -> None:
    for annotation in model_json.get("annotations", {}).get("list", []):
        if annotation.get("name") in ANNOTATION_FORMATS:
            title, text = ANNOTATION_FORMATS[annotation["name"]]
            annotation["titleFormat"] = title
            annotation["textFormat"] = text


def build_dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard JSON model, for every dashboard the project ships."""
    result: dict[str, dict[str, Any]] = {}
    for builder in (studio_overview(), widget_drilldown(), flow_map(), exporter_health()):
        model_json: dict[str, Any] = json.loads(JSONEncoder().encode(builder.build()))
        _number_panels(model_json["panels"])
        _annotation_formats(model_json)
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
            no_value = "noValue" in panel.get("fieldConfig", {}).get("defaults", {})
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
                        may_be_empty=no_value,
                    )
                )
    return queries


def annotation_queries(
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[PanelQuery]:
    """Every Prometheus annotation query (events: empty while nothing happened)."""
    dashboards = build_dashboards() if dashboards is None else dashboards
    return [
        PanelQuery(
            dashboard=board["uid"],
            panel=f"annotation: {annotation['name']}",
            ref_id="",
            expr=annotation["expr"],
            instant=False,
            may_be_empty=True,
        )
        for board in dashboards.values()
        for annotation in board.get("annotations", {}).get("list", [])
        if "expr" in annotation
    ]


def variable_queries(
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[VariableQuery]:
    """Every query variable of every dashboard, with its regex (empty when it has none)."""
    dashboards = build_dashboards() if dashboards is None else dashboards
    return [
        VariableQuery(
            dashboard=board["uid"],
            name=variable["name"],
            query=variable["query"],
            regex=variable.get("regex", ""),
        )
        for board in dashboards.values()
        for variable in board["templating"]["list"]
        if variable["type"] == "query"
    ]


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
