"""Decide one cycle for one space: what to delete, what to close, what to create.

Pure: `plan(...)` takes the machinetypes, the live machines (as views), the
feedback states and `now`, and returns a `Plan` plus the new feedback states.
`actuate` carries the plan out; the simulator and the tests call this very
function.  Its first half, `lifecycle(...)` (which machines to delete and
close), is shared with the simulator's baseline policies.

Creation, in processors, never exceeds the space's `processors_limit`,
`max_machines`, the machinetype's own `processors_limit` and
`max_starting_processors`, nor the cycle's creation budget (default 10% of
`processors_limit`, but always at least one machine).  Among the machinetypes
that may still create, the one with the lowest processors-in-use /
target_share goes first.  Every machinetype that ends the cycle without
creating (more) carries the reason in `Plan.held`.

Machines being deleted still count against the limits until the backend
stops listing them: clouds hold their quota until then.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from vacagent import backoff
from vacagent.backoff import FeedbackState, Gate
from vacagent.feedback import Assessment, assess
from vacagent.model import (
    Quota,
    Close,
    Create,
    Delete,
    MachineState,
    MachineType,
    MachineView,
    Plan,
    SpaceLimits,
    iso,
)


_NOT_YET_RUNNING = frozenset({MachineState.STARTING, MachineState.UNKNOWN})


@dataclass(frozen=True)
class Decision:
    plan: Plan
    feedback: Mapping[str, FeedbackState]  # only the machinetypes whose state changed
    assessments: Mapping[str, Assessment]


@dataclass(frozen=True)
class Lifecycle:
    """The half of a plan that ends machines: the same rules for every policy."""

    deletes: tuple[Delete, ...]
    closes: tuple[Close, ...]
    assessments: Mapping[str, Assessment]
    ended: tuple[tuple[MachineView, Assessment], ...]  # outcome decided this cycle (known machinetype)
    passed_fizzle: tuple[tuple[MachineView, Assessment], ...]  # running, past fizzle_seconds


def lifecycle(
    limits: SpaceLimits,
    machinetypes: Mapping[str, MachineType],
    views: Iterable[MachineView],
    now: float,
) -> Lifecycle:
    """Assess every machine: delete the ended and expired, close the gone."""
    assessments: dict[str, Assessment] = {}
    deletes: list[Delete] = []
    closes: list[Close] = []
    ended: list[tuple[MachineView, Assessment]] = []
    passed: list[tuple[MachineView, Assessment]] = []
    for view in views:
        mt = machinetypes.get(view.machinetype)
        a = assess(view, mt, limits, now)
        assessments[view.name] = a
        new_outcome = a.outcome if (a.ends and not view.outcome_recorded) else None
        if new_outcome is not None and mt is not None:
            ended.append((view, a))
        elif a.passed_fizzle and mt is not None:
            passed.append((view, a))
        if view.state is MachineState.GONE:
            closes.append(Close(view.name, new_outcome))
        elif a.ends:
            retry = view.deleting_since is not None and now - view.deleting_since >= limits.delete_retry_seconds
            if view.deleting_since is None or retry:
                message = str(a.ours) if a.ours and not view.outcome_recorded else None
                reason = a.outcome.reason if a.outcome else "ended"
                deletes.append(Delete(view.name, reason, message, new_outcome))
    return Lifecycle(tuple(deletes), tuple(closes), assessments, tuple(ended), tuple(passed))


NO_PROCESSORS_LIMIT = (
    "no processors limit: the space sets no processors_limit and the cloud's core quota is unlimited "
    "(maxTotalCores -1): set processors_limit"
)


def within_quota(limits: SpaceLimits, quota: Quota) -> tuple[SpaceLimits, str | None]:
    """The space's limits for a cycle when the cloud's quota stands in for processors_limit.

    Returns the limits to plan within, and why nothing may be created when
    nothing limits processors at all (never plan without a limit)."""
    machines = limits.max_machines
    if quota.machines is not None:
        machines = quota.machines if machines is None else min(machines, quota.machines)
    processors = quota.processors if quota.processors is not None else 0
    return (SpaceLimits(processors, machines, limits.creation_budget_processors, limits.max_starting_seconds,
                        limits.shutdown_grace_seconds, limits.delete_retry_seconds),
            None if quota.processors is not None else NO_PROCESSORS_LIMIT)


def plan(
    limits: SpaceLimits,
    machinetypes: Mapping[str, MachineType],
    views: Iterable[MachineView],
    feedback: Mapping[str, FeedbackState],
    now: float,
    held: Mapping[str, str] | None = None,
) -> Decision:
    """`machinetypes` are all definitions known (for lifecycle rules);
    `held` names those that must not create this cycle and why (invalid or
    retired definitions)."""
    views = list(views)
    held = dict(held or {})
    states: dict[str, FeedbackState] = {}
    life = lifecycle(limits, machinetypes, views, now)
    events = [(a.outcome.at, 1, view, a) for view, a in life.ended if a.outcome is not None]

    # A success only matters to a machinetype that is (or this cycle becomes)
    # probing; skipping the others keeps a 50,000-machine cycle cheap.
    probing = {e[2].machinetype for e in events if e[3].outcome and e[3].outcome.aborted}
    probing |= {name for name, state in feedback.items() if state.probing}
    events += [(now, 0, v, a) for v, a in life.passed_fizzle if v.machinetype in probing]
    for at, _, view, a in sorted(events, key=lambda e: (e[0], e[1], e[2].name)):
        mt = machinetypes[view.machinetype]
        state = states.get(mt.name, feedback.get(mt.name, FeedbackState()))
        if a.outcome is not None:
            if a.outcome.aborted:
                message = f"{view.name}: {a.outcome.message or 'no shutdown message'} after {a.outcome.ran_seconds:.0f}s"
                state = backoff.record_abort(state, mt, at, view.created, message)
        else:
            state = backoff.record_success(state, view.created)
        if state != feedback.get(mt.name, FeedbackState()) or mt.name in states:
            states[mt.name] = state

    current = {**feedback, **states}
    creates = _creations(limits, machinetypes, views, current, now, held)
    return Decision(
        Plan(tuple(creates), life.deletes, life.closes, held),
        states,
        life.assessments,
    )


def _creations(
    limits: SpaceLimits,
    machinetypes: Mapping[str, MachineType],
    views: list[MachineView],
    feedback: Mapping[str, FeedbackState],
    now: float,
    held: dict[str, str],
) -> list[Create]:
    gone = MachineState.GONE  # enum attribute access is slow; this loop sees every machine
    live = [v for v in views if v.state is not gone]
    space_processors = sum(v.processors for v in live)
    space_machines = len(live)
    in_use: dict[str, int] = defaultdict(int)
    starting: dict[str, int] = defaultdict(int)
    for v in live:
        in_use[v.machinetype] += v.processors
        if v.started is None and v.state in _NOT_YET_RUNNING:
            starting[v.machinetype] += v.processors

    allowance: dict[str, int | None] = {}  # None: no limit from feedback
    for name, mt in machinetypes.items():
        if name in held:
            continue
        if mt.target_share <= 0:
            held[name] = "target_share is 0"
            continue
        state = feedback.get(name, FeedbackState())
        g = backoff.gate(state, now)
        if g is Gate.BACKOFF:
            held[name] = (
                f"backoff until {iso(state.backoff_until or now)} after {state.consecutive_aborts} "
                f"consecutive abort(s); last: {state.last_message}"
            )
            continue
        if g is Gate.PROBE:
            probe = next(
                (v for v in live if v.machinetype == name and v.created >= (state.wave_start or 0.0)),
                None,
            )
            if probe is not None:
                held[name] = (
                    f"probe {probe.name} created {iso(probe.created)} has not yet run "
                    f"fizzle_seconds ({mt.fizzle_seconds}s)"
                )
                continue
            allowance[name] = 1
        else:
            allowance[name] = None

    budget = limits.budget
    created: dict[str, int] = defaultdict(int)
    total_created = 0

    def blocker(mt: MachineType) -> str | None:
        if allowance[mt.name] is not None and created[mt.name] >= allowance[mt.name]:
            return "one probe created after backoff; more once it has run fizzle_seconds"
        if space_processors + mt.processors > limits.processors_limit:
            return f"space processors_limit reached ({space_processors}/{limits.processors_limit})"
        if limits.max_machines is not None and space_machines + 1 > limits.max_machines:
            return f"space max_machines reached ({space_machines}/{limits.max_machines})"
        if mt.processors_limit is not None and in_use[mt.name] + mt.processors > mt.processors_limit:
            return f"machinetype processors_limit reached ({in_use[mt.name]}/{mt.processors_limit})"
        if mt.max_starting_processors is not None and starting[mt.name] + mt.processors > mt.max_starting_processors:
            return f"max_starting_processors reached ({starting[mt.name]}/{mt.max_starting_processors})"
        if total_created > 0 and mt.processors > budget:
            return f"creation budget of {limits.budget} processors per cycle used"
        return None

    while True:
        eligible = []
        for name in allowance:
            mt = machinetypes[name]
            why = blocker(mt)
            if why is None:
                eligible.append(mt)
            else:
                held[name] = why
        if not eligible:
            break
        pick = min(eligible, key=lambda mt: (in_use[mt.name] / mt.target_share, mt.name))
        created[pick.name] += 1
        total_created += 1
        budget -= pick.processors
        space_processors += pick.processors
        space_machines += 1
        in_use[pick.name] += pick.processors
        starting[pick.name] += pick.processors

    return [
        Create(name, n, probe=allowance[name] == 1)
        for name, n in sorted(created.items())
    ]
