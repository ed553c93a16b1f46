"""Rebuild an execution's path (visits and gaps) from its Studio steps: pure, no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime
from itertools import pairwise

from studio_exporter.core.domain import (
    ENDED,
    TRIGGER,
    Execution,
    ExecutionPath,
    Flow,
    Gap,
    Step,
    Visit,
)

#: The widget type of an open visit whose widget the flow definition does not name.
UNKNOWN_WIDGET_TYPE = "unknown"
#: The widget type that runs a subflow (Studio's Run Subflow widget).
RUN_SUBFLOW = "run-subflow"
#: Studio's widget types that never run a subflow: they break ties when placing a subflow.
NOT_SUBFLOW_WIDGET_TYPES = frozenset(
    {
        "trigger",
        "send-message",
        "send-and-wait-for-reply",
        "split-based-on",
        "say-play",
        "gather-input-on-call",
        "make-http-request",
        "run-function",
        "set-variables",
        "connect-call-to",
        "enqueue-call",
        "send-to-flex",
        "record-voicemail",
        "fork-stream",
        "capture-payments",
        "add-twiml-redirect",
        "connect-virtual-agent",
    }
)

# Private vertex names for the tie-break graph. Widget names are user text without NUL bytes, so
# these cannot collide with a real widget.
_SINK = "\x00ended"  # where every step to Ended goes: nothing leaves it, so it always ends a trail
_HUB = "\x00hub"  # joins the ends of trails to the starts of others (see _Graph)
_ENTRY = "\x00entry"  # the tail of the virtual edge into the widget the chain is in

# Orders visits: the first widget of the top-level chain sorts before a step entered at the same
# time; the first widget of a subflow sorts right after the parent step's own visit.
_OWN_ENTRY = 0
_SUBFLOW_START = 1


def build_path(
    execution: Execution, steps: Iterable[Step], flow: Flow | None = None
) -> ExecutionPath:
    """Rebuild ``execution`` from its ``steps`` (any order, duplicates allowed).

    A step is a transition: it closes the visit of ``transitioned_from`` and opens the visit of
    ``transitioned_to`` (unless that is ``Ended``). The steps are split into chains: the
    top-level chain (``parent_step_sid`` None) starts in ``flow.initial_widget`` (``Trigger``
    without a flow) entered at ``execution.date_created``; the chain of steps sharing one
    ``parent_step_sid`` P is a subflow run by step P. Twilio does not say whether P is the step
    into the run-subflow widget or the step out of it, so the subflow is placed by time inside
    the parent's run-subflow visit that P opened or closed (see ``_Places.container``; without
    P, an open run-subflow visit). It starts in ``Trigger`` entered when that visit was, and
    its visits carry ``parent_step_sid=P`` and ``parent_entry_sid`` = the step that entered
    that visit, under which they nest.

    Order: by ``date_created``; steps of the same second (REST timestamps are whole seconds) are
    ordered by following the chain from the widget the chain is in. Where several orders fit
    (loops) the one with the fewest gaps is taken, and among those a deterministic one (by step
    sid), preferring to end where the next second's steps start.

    Gaps (Studio's step logs are best-effort; nothing is invented across a break):

    - a step that does not leave the widget its chain is in is the ``after`` of a ``Gap`` whose
      ``before`` is the previous step of the chain (None for a chain's first step). The visit it
      closes has an unknown start and is not produced; the visit the previous step opened is
      not produced either, neither closed nor open, since what happened in it is unknown.
    - the first step of a subflow whose run-subflow visit is unknown (the steps around it were
      lost) is a gap (``before`` None): the subflow's start time is unknown.
    - once a chain reached ``Ended``, each later step of it is a gap and opens no visit.

    The last widget a chain entered without a step out is an open visit (``exit_step`` None),
    typed from the flow definition or ``"unknown"``, unless the execution is ended: then the
    steps out of it were lost and the visit is not produced (it is not still waiting).

    ``path.steps`` holds every distinct step once, sorted by ``date_created``; steps of one
    second keep their chain order, a parent step followed by the subflow it ran.
    ``path.visits`` is sorted by ``entered_at``, then by the position of the step that entered
    it (a subflow's first widget right after the parent step). Times are kept as Studio gave
    them: within a chain steps are in time order, so durations are never negative, except
    that a first step dated before its chain's start (clock skew: before the execution's or
    the run-subflow visit's start) gives the first visit a negative duration rather than an
    invented time; the caller counts it as an anomaly.

    A closed visit's ``widget_type`` is its exit step's ``widget_type``, or, if that is empty,
    the flow definition's type of the widget, or ``"unknown"``.
    """
    unique = _distinct(steps)
    chains: dict[str | None, list[Step]] = {}
    for step in unique.values():
        chains.setdefault(step.parent_step_sid, []).append(step)

    first_widget = flow.initial_widget if flow is not None else TRIGGER
    top = _order_chain(chains.pop(None, []), first_widget)
    visits: list[Visit] = []
    gaps: list[Gap] = []
    _walk(
        execution,
        top,
        first_widget=first_widget,
        started_at=execution.date_created,
        parent_step_sid=None,
        flow=flow,
        flow_sid=execution.flow_sid,
        visits=visits,
        gaps=gaps,
    )
    if not chains:
        # The common case, kept cheap: one chain, whose order is the path order.
        if not all(a.entered_at <= b.entered_at for a, b in pairwise(visits)):
            position = {step.sid: index for index, step in enumerate(top)}
            visits.sort(key=lambda visit: _visit_key(visit, position))
        return ExecutionPath(execution, tuple(top), tuple(visits), tuple(gaps))

    # Nesting order: each subflow chain right after the step that entered its parent visit.
    ordered: dict[str | None, list[Step]] = {None: top}
    places = _Places(visits)
    pending = {sid: chain for sid, chain in chains.items() if sid is not None}
    while pending:
        sid = _next_subflow(pending, unique)
        chain = pending.pop(sid)
        # A subflow is a flow of its own: the given flow describes it only if the sids match.
        sub_flow_sid = min(chain, key=_step_key).flow_sid
        sub_flow = flow if flow is not None and flow.sid == sub_flow_sid else None
        sub_first = sub_flow.initial_widget if sub_flow is not None else TRIGGER
        sub_chain = _order_chain(chain, sub_first)
        container = places.container(sub_chain, unique.get(sid))
        started_at, entry = container or (execution.date_created, None)
        nest_under = sid if entry is None else entry.sid
        ordered[nest_under] = ordered.get(nest_under, []) + sub_chain
        first_new = len(visits)
        _walk(
            execution,
            sub_chain,
            first_widget=sub_first if entry is not None else None,
            started_at=started_at,
            parent_step_sid=sid,
            parent_entry_sid=None if entry is None else entry.sid,
            flow=sub_flow,
            flow_sid=sub_flow_sid,
            visits=visits,
            gaps=gaps,
        )
        places.add(visits[first_new:])

    position = _nested_positions(ordered)
    path_steps = sorted(unique.values(), key=lambda step: (step.date_created, position[step.sid]))
    visits.sort(key=lambda visit: _visit_key(visit, position))
    gaps.sort(key=lambda gap: (gap.after.date_created, position[gap.after.sid]))
    return ExecutionPath(execution, tuple(path_steps), tuple(visits), tuple(gaps))


def _next_subflow(pending: dict[str, list[Step]], unique: dict[str, Step]) -> str:
    """The subflow chain to place next: one whose parent step's own chain is placed.

    Chains whose parent step is present come first (their candidates are known); then those
    whose parent step is missing (placed by the open visits of every chain placed so far); a
    cycle in broken data is cut at its smallest sid.
    """
    ready_present = []
    ready_missing = []
    for sid in pending:
        parent = unique.get(sid)
        if parent is None:
            ready_missing.append(sid)
        elif parent.parent_step_sid not in pending:
            ready_present.append(sid)
    return min(ready_present or ready_missing or pending)


class _Places:
    """The visits placed so far, indexed to find the run-subflow visit a subflow runs inside."""

    __slots__ = ("closed_by", "open", "opened_by")

    def __init__(self, visits: Iterable[Visit]) -> None:
        self.opened_by: dict[str, Visit] = {}
        self.closed_by: dict[str, Visit] = {}
        self.open: list[Visit] = []
        self.add(visits)

    def add(self, visits: Iterable[Visit]) -> None:
        for visit in visits:
            if visit.entry_step is not None:
                self.opened_by[visit.entry_step.sid] = visit
            if visit.exit_step is not None:
                self.closed_by[visit.exit_step.sid] = visit
            else:
                self.open.append(visit)

    def container(self, chain: list[Step], parent: Step | None) -> tuple[datetime, Step] | None:
        """When the subflow ``chain`` started, and the step that entered its run-subflow visit.

        Twilio's ``parent_step_sid`` names "the Step SID of the Widget in the parent Flow that
        started the Subflow": the step into the run-subflow widget, or the step out of it. So
        the candidates are the visit the parent step opened and the one it closed, and the
        subflow goes in the one that contains its steps in time (if both do, the one whose
        widget type can run a subflow, then the visit the parent step opened). If the visit
        the parent step opened is not known (a gap cut it short), a parent step dated no later
        than the subflow's first step can only be the step into the widget: the subflow
        started then. Without the parent step (not created yet, or lost) the subflow goes in
        the innermost open ``run-subflow`` visit that contains it. None when nothing fits: the
        subflow's start is unknown (its first step is a gap).
        """
        first = chain[0].date_created
        last = chain[-1].date_created

        def contains(visit: Visit) -> bool:
            left = visit.left_at
            return visit.entered_at <= first and (left is None or last <= left)

        if parent is None:
            inside = [
                v
                for v in self.open
                if v.widget_type == RUN_SUBFLOW and v.entry_step is not None and contains(v)
            ]
            visit = max(inside, key=lambda v: v.entered_at, default=None)
        else:
            named = (self.opened_by.get(parent.sid), self.closed_by.get(parent.sid))
            inside = [
                v for v in named if v is not None and v.entry_step is not None and contains(v)
            ]
            # Both contain it only when it shares a second with the parent step: then the visit
            # the step opened, unless its widget is of a type known not to run subflows.
            fitting = [v for v in inside if v.widget_type not in NOT_SUBFLOW_WIDGET_TYPES]
            visit = next(iter(fitting), None)
            opened = named[0]
            if visit is None and opened is None and parent.date_created <= first:
                return parent.date_created, parent
        if visit is None or visit.entry_step is None:
            return None
        return visit.entered_at, visit.entry_step


def _distinct(steps: Iterable[Step]) -> dict[str, Step]:
    """The steps by sid. Copies of a step are collapsed; if they differ, a fixed one is kept."""
    unique: dict[str, Step] = {}
    for step in steps:
        seen = unique.setdefault(step.sid, step)
        # Differing records with one sid should not happen; keeping the smallest by value keeps
        # the result independent of the input order.
        if seen is not step and seen != step and _record_key(step) < _record_key(seen):
            unique[step.sid] = step
    return unique


def _record_key(step: Step) -> tuple[str, ...]:
    return (
        step.date_created.isoformat(),
        step.transitioned_from,
        step.transitioned_to,
        step.event,
        step.widget_type,
        step.parent_step_sid or "",
        step.flow_sid,
        step.execution_sid,
        step.account_sid,
    )


def _step_key(step: Step) -> tuple[datetime, str]:
    return (step.date_created, step.sid)


def _order_chain(chain: list[Step], first_widget: str) -> list[Step]:
    """The chain's steps in time order, same-second steps ordered by following the chain."""
    chain.sort(key=_step_key)
    groups: list[list[Step]] = []
    for step in chain:
        if groups and groups[-1][0].date_created == step.date_created:
            groups[-1].append(step)
        else:
            groups.append([step])
    ordered: list[Step] = []
    state: str | None = first_widget  # None once the chain reached Ended
    for index, group in enumerate(groups):
        if len(group) == 1:
            ordered.append(group[0])
        else:
            following = groups[index + 1] if index + 1 < len(groups) else []
            ordered.extend(_order_same_second(group, state, _good_starts(following)))
        if state is not None:
            ends = any(step.transitioned_to == ENDED for step in group)
            state = None if ends else ordered[-1].transitioned_to
    return ordered


def _good_starts(group: list[Step]) -> set[str]:
    """Widgets that the steps of ``group`` can best continue from: where a chain must start.

    A widget left more often than entered within the group must start a trail there; if there
    is none, the group is made of loops, and it can start from any widget it leaves.
    """
    balance: dict[str, int] = {}
    for step in group:
        balance[step.transitioned_from] = balance.get(step.transitioned_from, 0) + 1
        balance[step.transitioned_to] = balance.get(step.transitioned_to, 0) - 1
    surplus = {widget for widget, count in balance.items() if count > 0}
    return surplus or {step.transitioned_from for step in group}


def _order_same_second(group: list[Step], state: str | None, next_starts: set[str]) -> list[Step]:
    """Order steps of one second so that the fewest of them break the chain.

    The trail that continues from ``state`` goes first; the other trails, each starting with a
    break, follow in an order that decides where the second ends: a trail ending in a widget
    the next second's steps start from goes last, except a trail that ends the chain. Every
    step after the end is a break, so if that order still puts steps after the step to Ended,
    an order that ends with it is taken when it breaks the chain no more often.
    """
    fast = _follow(group, state)
    if fast is not None:
        return fast
    continuing, others = _fewest_trails(group, state)

    def placement(trail: list[Step]) -> tuple[bool, bool, str]:
        last = trail[-1].transitioned_to
        return (last == ENDED, last in next_starts, trail[0].sid)

    ordered = continuing
    for trail in sorted((_rotate(trail, next_starts) for trail in others), key=placement):
        ordered.extend(trail)
    if state is not None and any(step.transitioned_to == ENDED for step in ordered[:-1]):
        # Steps after the end are breaks each; ending last may break the chain fewer times.
        ending = _ending_sequence(group, state)
        if _breaks(ending, state) <= _breaks(ordered, state):
            return ending
    return ordered


def _breaks(ordered: list[Step], state: str) -> int:
    """How many of the ordered steps break the chain from ``state`` (as ``_walk`` counts)."""
    breaks = 0
    current = state
    over = False
    for step in ordered:
        if over or step.transitioned_from != current:
            breaks += 1
        over = over or step.transitioned_to == ENDED
        current = step.transitioned_to
    return breaks


def _rotate(trail: list[Step], next_starts: set[str]) -> list[Step]:
    """A closed trail (a loop) may start anywhere: start it where the next second continues."""
    if trail[-1].transitioned_to != trail[0].transitioned_from:
        return trail
    for index, step in enumerate(trail):
        if step.transitioned_from in next_starts:
            return trail[index:] + trail[:index]
    return trail


class _Graph:
    """The steps of one second as a directed multigraph, balanced through a hub vertex.

    The steps are edges (widget to widget, Ended to ``_SINK``), walked in sid order so that
    nothing depends on the input order; virtual edges have no step. For every unit of surplus
    out-degree a vertex gets an edge from the hub, for every unit of surplus in-degree an edge
    to it: every vertex is then balanced, an Eulerian circuit exists in each component, and
    each pass through the hub is one break in the chain. That is the textbook minimum cover of
    a graph's edges by trails.
    """

    __slots__ = ("heads", "steps", "tails")

    def __init__(self, group: list[Step], virtual: list[tuple[str, str]]) -> None:
        self.tails: list[str] = []
        self.heads: list[str] = []
        self.steps: list[Step | None] = []
        for step in sorted(group, key=lambda s: s.sid):
            to = _SINK if step.transitioned_to == ENDED else step.transitioned_to
            self.add(step.transitioned_from, to, step)
        for tail, head in virtual:
            self.add(tail, head, None)
        balance: dict[str, int] = {}
        for tail, head in zip(self.tails, self.heads, strict=True):
            balance[tail] = balance.get(tail, 0) + 1
            balance[head] = balance.get(head, 0) - 1
        for vertex in sorted(balance):
            for _ in range(balance[vertex]):
                self.add(_HUB, vertex, None)
            for _ in range(-balance[vertex]):
                self.add(vertex, _HUB, None)

    def add(self, tail: str, head: str, step: Step | None) -> None:
        self.tails.append(tail)
        self.heads.append(head)
        self.steps.append(step)

    def connect(self) -> None:
        """Join every component to the hub, so that one circuit covers all edges."""
        parent: dict[str, str] = {}

        def root(vertex: str) -> str:
            while (up := parent.get(vertex, vertex)) != vertex:
                parent[vertex] = parent.get(up, up)  # path halving keeps the trees flat
                vertex = up
            return vertex

        for tail, head in zip(self.tails, self.heads, strict=True):
            parent[root(tail)] = root(head)
        first_edges: dict[str, int] = {}
        for edge, tail in enumerate(self.tails):
            first_edges.setdefault(root(tail), edge)
        if len(first_edges) < 2:
            return
        hub = root(_HUB) if _HUB in self.tails else None
        for component, edge in first_edges.items():
            if component != hub:
                vertex = self.tails[edge]
                self.add(vertex, _HUB, None)
                self.add(_HUB, vertex, None)

    def outgoing(self) -> dict[str, list[int]]:
        outgoing: dict[str, list[int]] = {}
        for edge in range(len(self.tails) - 1, -1, -1):
            # Filled backwards so that list.pop() takes the smallest edge first.
            outgoing.setdefault(self.tails[edge], []).append(edge)
        return outgoing

    def real(self, edges: list[int]) -> list[Step]:
        return [step for step in (self.steps[edge] for edge in edges) if step is not None]


def _ending_sequence(group: list[Step], state: str) -> list[Step]:
    """The steps of the second the chain ends in: from ``state`` to Ended, fewest breaks.

    A virtual edge from ``_SINK`` back to ``_ENTRY`` (and on into ``state``) closes the
    sequence into a circuit; cut there, the circuit runs from ``state`` to the step to Ended.
    """
    graph = _Graph(group, [(_ENTRY, state), (_SINK, _ENTRY)])
    graph.connect()
    return graph.real(_circuit(_ENTRY, graph.outgoing(), graph.heads))


def _fewest_trails(group: list[Step], state: str | None) -> tuple[list[Step], list[list[Step]]]:
    """Cover the steps with the fewest trails: (the trail leaving ``state``, the others).

    An order with k breaks is a cover by k trails, or k+1 if one continues from ``state``; a
    virtual edge from ``_ENTRY`` into ``state`` makes the continuing trail part of the cover.
    The circuit through the hub, cut at the hub, gives the trails of the unbalanced
    components; each balanced component left over (a loop on its own) is one more trail.
    """
    graph = _Graph(group, [(_ENTRY, state)] if state is not None else [])
    outgoing = graph.outgoing()
    trails: list[list[int]] = []
    used: set[int] = set()
    if _HUB in outgoing:
        walk = _circuit(_HUB, outgoing, graph.heads)
        used.update(walk)
        trails = _cut_at_hub(walk, graph.tails)
    for edge, tail in enumerate(graph.tails):
        if edge not in used:
            loop = _circuit(tail, outgoing, graph.heads)
            used.update(loop)
            trails.append(loop)

    continuing: list[Step] = []
    others: list[list[Step]] = []
    for trail in trails:
        trail_steps = graph.real(trail)
        if any(graph.tails[edge] == _ENTRY for edge in trail):
            continuing = trail_steps
        elif trail_steps:
            others.append(trail_steps)
    return continuing, others


def _follow(group: list[Step], state: str | None) -> list[Step] | None:
    """The group's order if following the chain from ``state`` never has a choice, else None."""
    if state is None:
        return None
    remaining = list(group)
    ordered: list[Step] = []
    while remaining:
        matches = [s for s in remaining if s.transitioned_from == state]
        if len(matches) != 1:
            return None
        step = matches[0]
        ordered.append(step)
        remaining.remove(step)
        if step.transitioned_to == ENDED and remaining:
            return None
        state = step.transitioned_to
    return ordered


def _circuit(start: str, outgoing: dict[str, list[int]], heads: list[str]) -> list[int]:
    """Hierholzer's algorithm: the edges of a closed (or maximal) walk from ``start``, in order."""
    stack: list[tuple[str, int]] = [(start, -1)]
    walk: list[int] = []
    while stack:
        vertex, via = stack[-1]
        edges = outgoing.get(vertex)
        if edges:
            edge = edges.pop()
            stack.append((heads[edge], edge))
        else:
            stack.pop()
            if via >= 0:
                walk.append(via)
    walk.reverse()
    return walk


def _cut_at_hub(walk: list[int], tails: list[str]) -> list[list[int]]:
    """Split a circuit through the hub into the trails between its visits of the hub."""
    trails: list[list[int]] = []
    for edge in walk:
        if tails[edge] == _HUB:
            trails.append([])
        trails[-1].append(edge)
    return trails


def _walk(
    execution: Execution,
    chain: list[Step],
    *,
    first_widget: str | None,
    started_at: datetime,
    parent_step_sid: str | None,
    parent_entry_sid: str | None = None,
    flow: Flow | None,
    flow_sid: str,
    visits: list[Visit],
    gaps: list[Gap],
) -> None:
    """Turn one ordered chain into visits and gaps (appended to ``visits`` and ``gaps``).

    ``first_widget`` None means the chain's start is unknown (``started_at`` is then unused):
    its first step is a gap.
    """
    current = first_widget  # the widget the chain is in; None when unknown or after Ended
    entered_at = started_at
    entry: Step | None = None
    previous: Step | None = None
    over = False
    for step in chain:
        if current is not None and step.transitioned_from == current:
            widget_type = step.widget_type or _widget_type(flow, current)
            visits.append(
                Visit(
                    current,
                    widget_type,
                    flow_sid,
                    entered_at,
                    entry,
                    step,
                    parent_step_sid,
                    parent_entry_sid,
                )
            )
        else:
            gaps.append(Gap(execution.sid, previous, step, parent_step_sid, parent_entry_sid))
        previous = step
        if over:
            continue
        if step.transitioned_to == ENDED:
            # Nothing follows the end: a later step is a gap even if it claims to leave "Ended".
            over = True
            current = None
        else:
            current = step.transitioned_to
            entered_at = step.date_created
            entry = step
    if current is not None and not execution.is_ended:
        widget_type = _widget_type(flow, current)
        visits.append(
            Visit(
                current,
                widget_type,
                flow_sid,
                entered_at,
                entry,
                None,
                parent_step_sid,
                parent_entry_sid,
            )
        )


def _widget_type(flow: Flow | None, widget: str) -> str:
    if flow is None:
        return UNKNOWN_WIDGET_TYPE
    return flow.widget_type(widget) or UNKNOWN_WIDGET_TYPE


def _nested_positions(ordered: dict[str | None, list[Step]]) -> dict[str, int]:
    """Each step's index in nesting order: a parent step, then its subflow, then the next step."""
    position: dict[str, int] = {}
    placed: set[str | None] = set()

    def place(parent_sid: str | None) -> None:
        # Iterative depth-first walk: subflows can nest, and data can be arbitrarily deep.
        stack: list[tuple[str | None, int]] = [(parent_sid, 0)]
        placed.add(parent_sid)
        while stack:
            chain_sid, index = stack.pop()
            chain = ordered[chain_sid]
            if index >= len(chain):
                continue
            step = chain[index]
            position[step.sid] = len(position)
            stack.append((chain_sid, index + 1))
            if step.sid in ordered and step.sid not in placed:
                placed.add(step.sid)
                stack.append((step.sid, 0))

    place(None)
    # Subflows whose parent step is missing (or unreachable in broken data) come after.
    leftovers = sorted(
        (sid for sid in ordered if sid not in placed),
        key=lambda sid: (_step_key(ordered[sid][0]), sid or ""),
    )
    for sid in leftovers:
        if sid not in placed:
            place(sid)
    return position


def _visit_key(visit: Visit, position: dict[str, int]) -> tuple[datetime, int, int]:
    if visit.entry_step is not None:
        return (visit.entered_at, position[visit.entry_step.sid], _OWN_ENTRY)
    if visit.parent_entry_sid is not None:
        return (visit.entered_at, position[visit.parent_entry_sid], _SUBFLOW_START)
    return (visit.entered_at, -1, _OWN_ENTRY)


def ready_steps(
    execution: Execution,
    steps: Iterable[Step],
    applied: AbstractSet[str],
    flow: Flow | None = None,
) -> set[str]:
    """The steps not in ``applied`` that continue their chain: exporting them adds no gap.

    One rule for push and poll: a step continues the chain exactly when ``build_path`` over
    the known ``steps`` does not report it as a ``Gap`` (same ordering, same first widget:
    ``flow.initial_widget``). A step is ready when it continues the chain and every step
    before it in its chain is applied or ready; a subflow's steps wait until the parent step
    that ran it is applied or ready. Whatever follows a break waits: the step that closes it
    may still arrive (Event Streams delivers out of order). The caller decides how long.

    A loop whose steps are still in transit cannot be seen: the step after it continues the
    chain as if there had been none, and is ready (the README states this limit).
    """
    path = build_path(execution, steps, flow)
    breaks = {gap.after.sid for gap in path.gaps}
    known = set(applied)
    ready: set[str] = set()
    changed = True
    while changed:
        # Repeated because a subflow's steps can precede the step that names them as parent.
        changed = False
        blocked: set[str | None] = set()
        for step in path.steps:
            chain = step.parent_step_sid
            if step.sid in known or step.sid in ready:
                continue
            if (
                chain in blocked
                or step.sid in breaks
                or (chain is not None and chain not in known and chain not in ready)
            ):
                blocked.add(chain)
                continue
            ready.add(step.sid)
            changed = True
    return ready
