"""Ground truth: what the simulator has served, summed the way the exporter must sum it.

One account's truth: the caller's (``GET /_simulator/truth``; the main account's credentials
may name a subaccount with ``?AccountSid=``), or ``Simulator.truth(account_sid)``. Schema::

    {
      "now": "2024-05-01T12:00:00Z",
      "account_sid": "AC...",
      "flows": {
        "<flow sid>": {
          "name": "IVR Main Menu",
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
      "requests": {"by_operation": {"ListExecutionStep": 120}, "by_status": {"200": 118}},
      "faults": {"fail_429": 3, ...}
    }

A visit of widget W is closed by a served step out of W and runs from the step into W (or the
chain's start: the execution's creation, or for a subflow the parent step that entered the
run-subflow widget) to it. A visit whose entry step is withheld has no known start and, as in
the exporter's transform, is not counted; its step still counts as a transition.
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
) -> dict[str, Any]:
    seed = traffic.config.seed
    names = renderer.widget_names
    types = renderer.widget_types
    sids = traffic.flow_sids
    flows: dict[str, dict[str, Any]] = {}
    for index, spec in enumerate(traffic.flows):
        flows[sids[index]] = {
            "name": spec.name,
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
    for record in traffic.existing(now):
        summary = flows[sids[record.flow]]
        summary["executions_started"] += 1
        visible = record.visible_steps(now)
        steps = record.steps
        served = [not withheld(seed, record, i, missing_steps) for i in range(visible)]
        # The widget each chain is in, as the served steps show it (key: parent step or -1).
        chain_at: dict[int, tuple[int, int]] = {-1: (record.flow, 0)}
        for i in range(visible):
            base = i * STRIDE
            flow = steps[base + FLOW]
            origin = steps[base + FROM]
            target = steps[base + TO]
            parent = steps[base + PARENT]
            if not served[i]:
                withheld_total += 1
                continue
            served_total += 1
            transitions[(flow, origin, target, steps[base + EVENT])] += 1
            chain_at[parent] = (flow, target)
            prev = steps[base + PREV]
            entry_known = served[prev] if prev >= 0 else (parent < 0 or served[parent])
            if entry_known:
                widget = flows[sids[flow]]["widgets"][names[flow][origin]]
                widget["visits"] += 1
                widget["duration_seconds_sum"] += record.step_time(i) - record.entry_time(i)
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
        "requests": requests,
        "faults": faults,
    }
