"""Ground truth: what the simulator has served, summed the way the exporter must sum it.

One account's truth: the caller's (``GET /_simulator/truth``; the main account's credentials
may name a subaccount with ``?AccountSid=``), or ``Simulator.truth(account_sid)``. Schema::

    {
      "now": "2024-05-01T12:00:00Z",
      "account_sid": "AC...",
      "flows": {
        "<flow sid>": {
          "name": "IVR Main Menu",
          "deleted": false,                   # true once DELETE /v2/Flows/{Sid} removed it
          "executions_started": 812,          # existing at now (created, within retention)
          "executions_ended": 800,            # status "ended"
          "executions_active": 12,
          "execution_duration_seconds_sum": 123456,   # creation -> end step, ended ones
          "final_widgets": {"connect_sales": 300},    # transitioned_from of the end step
          "widgets": {                        # keyed by the flow owning the widget (step.flow_sid)
            "main_menu": {"type": "gather-input-on-call", "visits": 900,
                          "duration_seconds_sum": 7200, "visits_in_progress": 3}
          }
        }
      },
      "transitions": [{"flow_sid": "FW...", "from": "main_menu", "to": "menu_split",
                       "event": "keypress", "count": 850}],
      "steps_served": 9000,                  # steps visible at now and not withheld
      "steps_withheld": 12,                  # visible at now but hidden by missing_steps
      "executions_deleted": 1,               # removed by DELETE .../Executions/{Sid}
      "end_steps_withheld": 2,               # of those, steps into Ended (missing_end_steps)
      "visits_merged": 1,                    # undetectable merges (see below)
      "executions_order_ambiguous": ["FN..."],  # visits not knowable (see below)
      "requests": {"by_operation": {"ListExecutionStep": 120}, "by_status": {"200": 118}},
      "faults": {"fail_429": 3, ...}
    }

A visit of widget W is closed by a served step out of W and runs from the step into W (or the
chain's start: the execution's creation, or for a subflow the parent step that entered the
run-subflow widget) to it. A visit whose entry step is withheld has no known start and, as in
the exporter's transform, is not counted; its step still counts as a transition. When subflow
steps name the step out of the run-subflow widget (``subflow_parent="out"``), a subflow's
start is also unknown once that step is withheld and the parent chain has moved on (the
run-subflow visit is then neither closed nor open for a reader of the steps).

Deleted executions (and the executions of a deleted flow) are gone from Studio, so they leave
the truth: every figure above counts only what a client can still read. A deleted flow keeps
its entry, marked ``deleted``, with the counts of what remains of it (subflow steps that
executions of other flows ran).

The truth is what a reader of the served steps can know. When the withheld steps form a loop
back into the widget the chain is in (W -> V -> W, both withheld), the chain looks unbroken:
the next served step out of W reads as the end of the visit that the last served step of the
chain opened. No reader can tell, so the truth counts that knowable visit (its duration from
that served step) and counts the merge in ``visits_merged``.

Step times are whole seconds. After a withheld step (or a withheld parent step, for a
subflow), served steps of the same chain that share a second can be read in more than one
order with as few breaks as the true one: which visits they close is not knowable. Such an
execution is listed in ``executions_order_ambiguous`` and its visits are left out of the
widgets' ``visits`` and ``duration_seconds_sum`` (its transitions, start and end still count).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .clock import iso
from .resources import Renderer
from .traffic import (
    END,
    ENDED,
    EVENT,
    EVENTS,
    FLOW,
    FROM,
    OFFSET,
    PARENT,
    PREV,
    STRIDE,
    TO,
    ExecutionRecord,
    Traffic,
    withheld,
)


def compute_truth(
    traffic: Traffic,
    renderer: Renderer,
    now: float,
    missing_steps: float,
    requests: dict[str, dict[str, int]],
    faults: dict[str, int],
    *,
    missing_end_steps: float = 0.0,
) -> dict[str, Any]:
    seed = traffic.config.seed
    names = renderer.widget_names
    types = renderer.widget_types
    sids = traffic.flow_sids
    flows: dict[str, dict[str, Any]] = {}
    for index, spec in enumerate(traffic.flows):
        flows[sids[index]] = {
            "name": spec.name,
            "deleted": index in traffic.deleted_flows,
            "executions_started": 0,
            "executions_ended": 0,
            "executions_active": 0,
            "execution_duration_seconds_sum": 0,
            "final_widgets": {},
            "widgets": {
                widget: {
                    "type": types[index][w],
                    "visits": 0,
                    "duration_seconds_sum": 0,
                    "visits_in_progress": 0,
                }
                for w, widget in enumerate(names[index])
            },
        }
    transitions: Counter[tuple[int, int, int, int]] = Counter()
    served_total = 0
    withheld_total = 0
    end_withheld_total = 0
    merged_total = 0
    ambiguous: list[str] = []
    for record in traffic.existing(now):
        summary = flows[sids[record.flow]]
        summary["executions_started"] += 1
        visible = record.visible_steps(now)
        steps = record.steps
        served = [
            not withheld(seed, record, i, missing_steps, missing_end_steps) for i in range(visible)
        ]
        order_ambiguous = _order_ambiguous(record, served)
        if order_ambiguous:
            ambiguous.append(record.sid)
        # The widget each chain is in, as the served steps show it (key: parent step or -1),
        # and when the last served step of the chain entered it.
        chain_at: dict[int, tuple[int, int]] = {-1: (record.flow, 0)}
        chain_entered: dict[int, int] = {}
        for i in range(visible):
            base = i * STRIDE
            flow = steps[base + FLOW]
            origin = steps[base + FROM]
            target = steps[base + TO]
            parent = steps[base + PARENT]
            if not served[i]:
                withheld_total += 1
                end_withheld_total += target == END
                continue
            served_total += 1
            transitions[(flow, origin, target, steps[base + EVENT])] += 1
            prev = steps[base + PREV]
            if prev >= 0:
                entry_known = served[prev]
            else:
                entry_known = parent < 0 or _subflow_start_known(
                    record, parent, served, renderer.subflow_parent
                )
            merged = (
                not entry_known
                and parent in chain_entered
                and chain_at.get(parent) == (flow, origin)
            )
            if (entry_known or merged) and not order_ambiguous:
                entered = chain_entered[parent] if merged else record.entry_time(i)
                widget = flows[sids[flow]]["widgets"][names[flow][origin]]
                widget["visits"] += 1
                widget["duration_seconds_sum"] += record.step_time(i) - entered
                merged_total += merged
            chain_at[parent] = (flow, target)
            chain_entered[parent] = record.step_time(i)
        if visible == record.step_count:
            summary["executions_ended"] += 1
            summary["execution_duration_seconds_sum"] += steps[-STRIDE + OFFSET]
            final = names[record.flow][steps[-STRIDE + FROM]]
            summary["final_widgets"][final] = summary["final_widgets"].get(final, 0) + 1
        else:
            summary["executions_active"] += 1
            for flow, widget_index in chain_at.values():
                if widget_index != END:
                    widget = flows[sids[flow]]["widgets"][names[flow][widget_index]]
                    widget["visits_in_progress"] += 1
    return {
        "now": iso(int(now)),
        "account_sid": renderer.account_sid,
        "flows": flows,
        "transitions": [
            {
                "flow_sid": sids[flow],
                "from": names[flow][origin],
                "to": ENDED if target == END else names[flow][target],
                "event": EVENTS[event],
                "count": count,
            }
            for (flow, origin, target, event), count in sorted(transitions.items())
        ],
        "steps_served": served_total,
        "steps_withheld": withheld_total,
        "executions_deleted": len(traffic.deleted_executions),
        "end_steps_withheld": end_withheld_total,
        "visits_merged": merged_total,
        "executions_order_ambiguous": ambiguous,
        "requests": requests,
        "faults": faults,
    }


def _subflow_start_known(
    record: ExecutionRecord, into: int, served: list[bool], reading: str
) -> bool:
    """Whether a reader of the served steps knows when the subflow run by step ``into`` began.

    It began when the run-subflow widget was entered: that step must be served. Under the
    "out" reading the subflow names the step out of the widget instead; if that step is
    visible but withheld and a later step of the parent chain is served, nothing links the
    subflow to the entry any more.
    """
    if not served[into]:
        return False
    if reading == "into":
        return True
    out = record.step_out_of(into)
    if out < 0 or out >= len(served) or served[out]:
        return True
    chain = record.field(into, PARENT)
    return not any(
        served[later] and record.field(later, PARENT) == chain
        for later in range(out + 1, len(served))
    )


def _order_ambiguous(record: ExecutionRecord, served: list[bool]) -> bool:
    """Whether the served steps leave the order within some second open, after a hole.

    Before any hole a chain's order is known (it follows from its start). At or after one,
    a second holding several served steps of the chain is read in its true order only when
    following the chain from where the served steps left it is forced: at each point exactly
    one of that second's remaining steps leaves the current widget. Otherwise another order
    may break the chain as few times, and no reader can tell which happened.
    """
    steps = record.steps
    holes: dict[int, int] = {}  # chain (parent step or -1) -> time of its first hole
    groups: dict[tuple[int, int], list[int]] = {}  # (chain, second) -> served steps, in order
    for i, is_served in enumerate(served):
        base = i * STRIDE
        parent = steps[base + PARENT]
        when = record.step_time(i)
        if parent >= 0 and not served[parent]:
            holes[parent] = min(holes.get(parent, when), record.step_time(parent))
        if is_served:
            groups.setdefault((parent, when), []).append(i)
        elif steps[base + TO] != END:
            holes[parent] = min(holes.get(parent, when), when)
    state: dict[int, tuple[int, int]] = {}  # chain -> (flow, widget) its served steps reached
    for (chain, when), group in sorted(groups.items(), key=lambda item: item[0][1]):
        flow = steps[group[0] * STRIDE + FLOW]
        current = state.get(chain, (record.flow if chain < 0 else flow, 0))
        if len(group) > 1 and chain in holes and when >= holes[chain]:
            remaining = list(group)
            for i in group:
                leaving = [
                    j
                    for j in remaining
                    if (steps[j * STRIDE + FLOW], steps[j * STRIDE + FROM]) == current
                ]
                if leaving != [i] or (steps[i * STRIDE + TO] == END and i != group[-1]):
                    return True
                remaining.remove(i)
                current = (steps[i * STRIDE + FLOW], steps[i * STRIDE + TO])
        last = group[-1] * STRIDE
        state[chain] = (steps[last + FLOW], steps[last + TO])
    return False
