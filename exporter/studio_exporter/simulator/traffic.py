"""Deterministic traffic: every execution's whole path, generated once from (seed, serial).

An execution is kept as one compact record (a flat ``array`` of integers for its steps); SIDs,
JSON and contexts are derived from it on demand. What a client can see depends only on the
clock: an execution exists once its ``date_created`` has come, a step once its own has, and an
execution is ``active`` until its end step is visible.

History executions (ended before the simulator starts) keep real-life durations. Live
executions arrive at ``rate`` per simulated minute, and their durations are divided by
``speed``: timestamps always follow the clock, so time between steps is compressed rather than
the clock being run ahead of the exporter's. Live executions are created when the clock
reaches them (on the next request or truth), so a big jump of a fake clock with a high rate
creates them all at once.

Subflows. A run-subflow widget R runs its subflow inside the parent's execution: the subflow's
steps are in the parent execution's step list, with ``flow_sid`` = the subflow's SID and
``parent_step_sid`` = the SID of the parent step P that transitioned into R, or, with
``SimulatorConfig.subflow_parent="out"``, of the step that leaves R (Twilio's wording fits
both; that step's SID is known before the step exists, as a real one would be). The subflow chain
starts in its own ``Trigger`` (entered at P's ``date_created``, left with event
``incomingParent``) and ends with a step to ``Ended`` (that is the subflow's end, not the
execution's). Then the parent leaves R with a step ``completed`` (or ``failed``) at or after
the subflow's last step, and goes on. The execution's end is the top-level step
(``parent_step_sid`` null) to ``Ended``. Step URLs stay under the execution's own flow.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from .flows import WIDGET_EVENTS, FlowSpec, Outcome, WidgetSpec, flow_sid

ENDED = "Ended"
#: A step's widget index when it transitions to ``Ended``.
END = -1
#: What a subflow step's ``parent_step_sid`` names: the step into the run-subflow widget, or
#: the step out of it.
SUBFLOW_PARENT_READINGS = ("into", "out")
#: Studio keeps executions (and their steps) this long after they start.
RETENTION_SECONDS = 30 * 86400

# Fields of one step in ExecutionRecord.steps, STRIDE integers per step.
OFFSET, FLOW, FROM, TO, EVENT, PARENT, PREV = range(7)
STRIDE = 7

EVENTS: tuple[str, ...] = tuple(
    sorted({event for names in WIDGET_EVENTS.values() for event in names})
)
_EVENT_INDEX = {event: index for index, event in enumerate(EVENTS)}

_MASK = (1 << 64) - 1
# Salts that keep the hash streams of one serial apart.
SALT_RNG, SALT_SID_A, SALT_SID_B, SALT_CONTACT = 0, 1, 2, 3
_SALT_STEP = 1_000
SALT_MISSING = 2_000_000
SALT_MISSING_END = 3_000_000


def mix64(*values: int) -> int:
    """A 64-bit hash of integers (splitmix64 folded over them): cheap and well spread."""
    state = 0x243F6A8885A308D3
    for value in values:
        state = (state ^ (value & _MASK)) + 0x9E3779B97F4A7C15 & _MASK
        state = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        state = ((state ^ (state >> 27)) * 0x94D049BB133111EB) & _MASK
        state ^= state >> 31
    return state


def unit(*values: int) -> float:
    """A uniform number in [0, 1) from a hash of integers."""
    return mix64(*values) / 2.0**64


class ExecutionRecord:
    """One execution, compactly: creation time, flow, and its steps as a flat integer array."""

    __slots__ = ("contact", "created", "flow", "serial", "sid", "steps")

    def __init__(self, serial: int, sid: str, flow: int, created: int, steps: array[int]) -> None:
        self.serial = serial
        self.sid = sid
        self.flow = flow
        self.created = created
        self.steps = steps
        self.contact = 0

    @property
    def step_count(self) -> int:
        return len(self.steps) // STRIDE

    def field(self, index: int, name: int) -> int:
        return self.steps[index * STRIDE + name]

    def step_time(self, index: int) -> int:
        return self.created + self.steps[index * STRIDE + OFFSET]

    @property
    def ended_at(self) -> int:
        """When the end step (always the last one generated) is created."""
        return self.created + self.steps[-STRIDE + OFFSET]

    def visible_steps(self, now: float) -> int:
        """How many steps exist at ``now``: steps are stored in time order, so a prefix."""
        limit = now - self.created
        steps = self.steps
        count = 0
        for index in range(OFFSET, len(steps), STRIDE):
            if steps[index] > limit:
                break
            count += 1
        return count

    def step_out_of(self, index: int) -> int:
        """The step that left the widget step ``index`` entered (-1 if there is none)."""
        for later in range(index + 1, self.step_count):
            if self.steps[later * STRIDE + PREV] == index:
                return later
        return -1

    def entry_time(self, index: int) -> int:
        """When the widget left by step ``index`` was entered (the exporter's visit rule)."""
        prev = self.field(index, PREV)
        if prev >= 0:
            return self.step_time(prev)
        parent = self.field(index, PARENT)
        return self.created if parent < 0 else self.step_time(parent)


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    seed: int
    start: int  # epoch seconds: history ends before it, live traffic starts at it
    history_executions: int
    history_days: float
    rate: float  # new executions per simulated minute
    speed: float


def execution_sid(seed: int, serial: int) -> str:
    return f"FN{mix64(seed, serial, SALT_SID_A):016x}{mix64(seed, serial, SALT_SID_B):016x}"


def step_sid(seed: int, serial: int, index: int) -> str:
    salt = _SALT_STEP + 2 * index
    return f"FT{mix64(seed, serial, salt):016x}{mix64(seed, serial, salt + 1):016x}"


class _PathBuilder:
    """Walks flow definitions with one execution's RNG and records its steps."""

    def __init__(self, flows: tuple[FlowSpec, ...], rng: random.Random) -> None:
        self.flows = flows
        self.rng = rng
        self.times: list[float] = []
        self.rows: list[tuple[int, int, int, int, int, int]] = []
        self._index = [{w.name: i for i, w in enumerate(f.widgets)} for f in flows]
        self._flow_index = {f.key: i for i, f in enumerate(flows)}

    def run_chain(self, flow: int, start: float, parent: int) -> float:
        """Generate one chain (the execution's or a subflow's) and return its end time."""
        spec = self.flows[flow]
        names = self._index[flow]
        widget = names["Trigger"]
        now = start
        prev = -1
        visits: dict[int, int] = {}
        while True:
            current: WidgetSpec = spec.widgets[widget]
            visits[widget] = visits.get(widget, 0) + 1
            if current.subflow is not None:
                # The subflow starts when the step into this widget (prev) happened.
                now = self.run_chain(self._flow_index[current.subflow], now, prev)
            outcome = self._choose(current, names, visits)
            now += outcome.duration.sample(self.rng)
            target = END if outcome.next is None else names[outcome.next]
            self.times.append(now)
            self.rows.append((flow, widget, target, _EVENT_INDEX[outcome.event], parent, prev))
            prev = len(self.rows) - 1
            if target == END:
                return now
            widget = target

    def _choose(self, widget: WidgetSpec, names: dict[str, int], visits: dict[int, int]) -> Outcome:
        candidates = [o for o in widget.outcomes if o.weight > 0]
        # Studio ends an execution that loops; a caller pressing a wrong key thrice goes on.
        fresh = [o for o in candidates if o.next is None or visits.get(names[o.next], 0) < 3]
        pool = fresh or candidates
        pick = self.rng.random() * sum(o.weight for o in pool)
        for outcome in pool:
            pick -= outcome.weight
            if pick < 0:
                return outcome
        return pool[-1]


def generate_steps(
    flows: tuple[FlowSpec, ...], flow: int, rng: random.Random, speed: float
) -> array[int]:
    """All steps of one execution of ``flow``, offsets in whole seconds from its creation."""
    builder = _PathBuilder(flows, rng)
    builder.run_chain(flow, 0.0, -1)
    steps: array[int] = array("q")
    for when, row in zip(builder.times, builder.rows, strict=True):
        steps.append(math.floor(when / speed))
        steps.extend(row)
    return steps


class Traffic:
    """Every execution of the simulated account, and what of it is visible at a given time."""

    def __init__(
        self, config: TrafficConfig, flows: tuple[FlowSpec, ...], account_sid: str
    ) -> None:
        self.config = config
        self.flows = flows
        self.flow_sids = tuple(flow_sid(account_sid, f.key) for f in flows)
        self.flow_by_sid = {sid: index for index, sid in enumerate(self.flow_sids)}
        self.by_flow: list[list[ExecutionRecord]] = [[] for _ in flows]
        self.created_by_flow: list[array[int]] = [array("q") for _ in flows]
        self.by_sid: dict[str, ExecutionRecord] = {}
        self._shares = [f.share for f in flows]
        self._lock = threading.Lock()
        # Deleted through the API (DELETE answers 204, then every read of them 404).
        self.deleted_flows: set[int] = set()
        self.deleted_executions: set[str] = set()
        self._arrivals = random.Random(mix64(config.seed, 0xA11CE))
        self._live = 0
        self._next_arrival = float(config.start) + self._gap()
        self._generate_history()

    def _gap(self) -> float:
        per_second = self.config.rate * self.config.speed / 60.0
        return math.inf if per_second <= 0 else self._arrivals.expovariate(per_second)

    def _new(self, serial: int, created: int | None, speed: float) -> ExecutionRecord:
        seed = self.config.seed
        rng = random.Random(mix64(seed, serial, SALT_RNG))
        flow = rng.choices(range(len(self.flows)), weights=self._shares)[0]
        steps = generate_steps(self.flows, flow, rng, speed)
        if created is None:
            window = self.config.history_days * 86400
            end = self.config.start - 1
            created = end - math.floor(rng.random() * window)
            # History is ended by the time the simulator starts.
            created = min(created, end - steps[-STRIDE + OFFSET])
        record = ExecutionRecord(serial, execution_sid(seed, serial), flow, created, steps)
        record.contact = mix64(seed, serial, SALT_CONTACT) % 10_000_000
        return record

    def _generate_history(self) -> None:
        records = [self._new(2 * i, None, 1.0) for i in range(self.config.history_executions)]
        records.sort(key=lambda r: (r.created, r.serial))
        for record in records:
            self._add(record)

    def _add(self, record: ExecutionRecord) -> None:
        self.by_flow[record.flow].append(record)
        self.created_by_flow[record.flow].append(record.created)
        self.by_sid[record.sid] = record

    def advance(self, now: float) -> None:
        """Create the live executions whose time has come (arrivals are a seeded sequence)."""
        if self._next_arrival > now:
            return
        with self._lock:
            while self._next_arrival <= now:
                created = math.floor(self._next_arrival)
                self._add(self._new(2 * self._live + 1, created, self.config.speed))
                self._live += 1
                self._next_arrival += self._gap()

    def window(
        self, flow: int, now: float, low: float | None = None, high: float | None = None
    ) -> tuple[int, int]:
        """Index range in ``by_flow[flow]`` of executions existing at ``now`` within [low, high]."""
        created = self.created_by_flow[flow]
        first = now - RETENTION_SECONDS
        if low is not None:
            first = max(first, low)
        last = now if high is None else min(now, high)
        return bisect.bisect_left(created, math.ceil(first)), bisect.bisect_right(
            created, math.floor(last)
        )

    def live_flow(self, sid: str) -> int | None:
        """The index of the flow with this SID, unless there is none or it was deleted."""
        flow = self.flow_by_sid.get(sid)
        return None if flow is None or flow in self.deleted_flows else flow

    def live_flows(self) -> list[int]:
        return [flow for flow in range(len(self.flows)) if flow not in self.deleted_flows]

    def delete_flow(self, flow: int) -> None:
        """Delete a flow: it and its executions are gone (Twilio deletes the executions too)."""
        with self._lock:
            self.deleted_flows.add(flow)

    def delete_execution(self, record: ExecutionRecord) -> None:
        """Delete an execution and its steps, as ``DELETE .../Executions/{Sid}`` does."""
        with self._lock:
            self.deleted_executions.add(record.sid)

    def is_deleted(self, record: ExecutionRecord) -> bool:
        return record.flow in self.deleted_flows or record.sid in self.deleted_executions

    def find(self, flow: int, sid: str, now: float) -> ExecutionRecord | None:
        record = self.by_sid.get(sid)
        if record is None or record.flow != flow or self.is_deleted(record):
            return None
        if record.created > now or record.created < now - RETENTION_SECONDS:
            return None
        return record

    def existing(self, now: float) -> Iterator[ExecutionRecord]:
        """Executions a client can read at ``now``: created, within retention, not deleted."""
        for flow in self.live_flows():
            lo, hi = self.window(flow, now)
            deleted = self.deleted_executions
            if not deleted:
                yield from self.by_flow[flow][lo:hi]
                continue
            yield from (r for r in self.by_flow[flow][lo:hi] if r.sid not in deleted)


def withheld(
    seed: int, record: ExecutionRecord, index: int, probability: float, end_probability: float = 0.0
) -> bool:
    """Whether the missing-steps faults hide this step (stable: a hash of the step).

    ``probability`` applies to every step but a step into ``Ended``; ``end_probability`` to the
    execution's own end step (its last).
    """
    if record.steps[index * STRIDE + TO] == END:
        if end_probability <= 0 or index != record.step_count - 1:
            return False
        return unit(seed, record.serial, SALT_MISSING_END) < end_probability
    if probability <= 0:
        return False
    return unit(seed, record.serial, SALT_MISSING + index) < probability


def served_steps(
    seed: int, record: ExecutionRecord, now: float, probability: float, end_probability: float = 0.0
) -> list[int]:
    """Indexes of the steps a client can read at ``now``, oldest first."""
    visible = record.visible_steps(now)
    if probability <= 0 and end_probability <= 0:
        return list(range(visible))
    return [
        i for i in range(visible) if not withheld(seed, record, i, probability, end_probability)
    ]
