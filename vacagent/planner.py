"""Decide one cycle for one space: what to delete, what to close, what to create.

Pure: `plan(...)` takes the machinetypes, the live machines (as views), the
feedback states and `now`, and returns a `Plan` plus the new feedback states.
`actuate` carries the plan out; the simulator and the tests call this very
function.  Its first half, `lifecycle(...)` (which machines to delete and
close), is shared with the simulator's baseline policies.

Evidence first (`_feedback`): aborts, machines past `fizzle_seconds` and
machines reporting a job started (`jobs_started`), in time order, move each
machinetype's backoff state (`backoff`).  Then creation (`_creations`),
per machinetype, by these rules, each naming itself first in `Plan.held`:

- `backoff`: none while the backoff lasts (a fresh `demand` report of
  waiting jobs lifts a backoff after `300`); a machine the cloud took back
  for want of room (the outcome's cause `capacity` or `quota`) is not the
  project's abort but backs off all the same, never doubling (a create the
  cloud refuses is the actuator's, with the same rule: `backoff.record_refusal`);
- `looking`: none while a machine of it is up and reports 0 jobs started;
- `demand`: no more than a fresh `demand` report's waiting jobs, less the
  machines starting;
- `probe`/`one probe`: after a backoff, one machine until one shows success;
- `ramp`: a machinetype whose machines report `jobs_started` creates its
  `FeedbackState.ramp` machines, doubling each cycle it uses them; after
  any abort it starts again from one (a fresh one spends the budget first).

Creation, in processors, never exceeds the space's `processors_limit`,
`max_machines`, the machinetype's own `processors_limit` and
`max_starting_processors`, nor the cycle's creation budget
(`creation_budget_processors`; when not configured, 10% of
`processors_limit`, always at least one machine, for machinetypes that
neither ramp nor have a demand report).  Among the machinetypes that may
still create, the one with the lowest processors-in-use / target_share goes
first.  Every machinetype that ends the cycle without creating (more)
carries the reason in `Plan.held`.

Machines being deleted still count against the limits until the backend
stops listing them: clouds hold their quota until then.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from vacagent import backoff
from vacagent.backoff import FeedbackState, Gate, Kind
from vacagent.feedback import Assessment, assess
from vacagent.model import (
    Cause,
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
DEMAND_FRESH_SECONDS = 600  # a demand report older than this is ignored
DEMAND_HINT = "demand_hint"  # MachineType.extra key: (time, jobs waiting, where), from its demand_url (`demand`)
_FIZZLE, _FOUND = object(), object()  # kinds of success evidence
_REFUSALS = frozenset({Cause.CAPACITY.value, Cause.QUOTA.value})  # an outcome's causes that are the cloud's refusal


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
    found_work: tuple[MachineView, ...] = ()  # running, reporting jobs_started > 0


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
    found: list[MachineView] = []
    for view in views:
        mt = machinetypes.get(view.machinetype)
        a = assess(view, mt, limits, now)
        assessments[view.name] = a
        new_outcome = a.outcome if (a.ends and not view.outcome_recorded) else None
        if new_outcome is not None and mt is not None:
            ended.append((view, a))
        elif mt is not None and not a.ends:
            if a.passed_fizzle:
                passed.append((view, a))
            if view.jobs_started:
                found.append(view)
        if view.state is MachineState.GONE:
            closes.append(Close(view.name, new_outcome))
        elif a.ends:
            retry = view.deleting_since is not None and now - view.deleting_since >= limits.delete_retry_seconds
            if view.deleting_since is None or retry:
                message = str(a.ours) if a.ours and not view.outcome_recorded else None
                reason = a.outcome.reason if a.outcome else "ended"
                deletes.append(Delete(view.name, reason, message, new_outcome))
    return Lifecycle(tuple(deletes), tuple(closes), assessments, tuple(ended), tuple(passed), tuple(found))


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
    life = lifecycle(limits, machinetypes, views, now)
    states = _feedback(machinetypes, life, feedback, now)
    current = {**feedback, **states}
    creates, ramps = _creations(limits, machinetypes, views, current, now, held)
    for name, ramp in ramps.items():
        states[name] = replace(current.get(name, FeedbackState()), ramp=ramp)
    return Decision(
        Plan(tuple(creates), life.deletes, life.closes, held),
        states,
        life.assessments,
    )


def _feedback(
    machinetypes: Mapping[str, MachineType],
    life: Lifecycle,
    feedback: Mapping[str, FeedbackState],
    now: float,
) -> dict[str, FeedbackState]:
    """The machinetypes' new feedback states from this cycle's evidence, in time order.

    Evidence: an abort (at its end), or the cloud's refusal (an end it put
    down to capacity or quota, at its end); a machine that ran past fizzle_seconds
    (at started + fizzle_seconds, whenever it ends: a probe that ran its
    fizzle_seconds and ended between two cycles still counts); a machine
    that reports a job started (`jobs_started` > 0: at `now` while it runs,
    just before its end when it has ended).
    """
    events = []
    for view, a in life.ended:
        outcome = a.outcome
        mt = machinetypes[view.machinetype]
        if outcome.aborted or outcome.cause in _REFUSALS:
            events.append((outcome.at, 2, view, outcome))
        if view.started is not None and outcome.ran_seconds >= mt.fizzle_seconds:
            events.append((view.started + mt.fizzle_seconds, 0, view, _FIZZLE))
        if view.jobs_started and view.started is not None:
            events.append((outcome.at, 1, view, _FOUND))
    # A success only matters to a machinetype that is (or this cycle becomes)
    # probing; skipping the others keeps a 50,000-machine cycle cheap.
    probing = {e[2].machinetype for e in events if e[3] is not _FIZZLE and e[3] is not _FOUND}
    probing |= {name for name, state in feedback.items() if state.probing}
    for view, a in life.passed_fizzle:
        if view.machinetype in probing:
            events.append((now, 0, view, _FIZZLE))
    for view in life.found_work:
        if view.machinetype in probing:
            events.append((now, 1, view, _FOUND))
    states: dict[str, FeedbackState] = {}
    for at, _, view, evidence in sorted(events, key=lambda e: (e[0], e[1], e[2].name)):
        mt = machinetypes[view.machinetype]
        state = states.get(mt.name, feedback.get(mt.name, FeedbackState()))
        if evidence is _FIZZLE:
            state = backoff.record_success(state, view.created)
        elif evidence is _FOUND:
            found_at = view.jobs_started_at if view.jobs_started_at is not None else view.started
            state = backoff.record_found_work(state, min(found_at, at))
        elif evidence.cause in _REFUSALS:  # the cloud took it back for want of room: not the project's abort
            message = f"{view.name} ended by the cloud ({evidence.cause}): {evidence.message or evidence.reason}"
            state = backoff.record_refusal(state, mt, at, message)
        else:
            message = f"{view.name}: {evidence.message or 'no shutdown message'} after {evidence.ran_seconds:.0f}s"
            kind = backoff.kind_of(evidence.code, view.started is not None)
            state = backoff.record_abort(state, mt, at, view.created, message, kind)
        if state != feedback.get(mt.name, FeedbackState()) or mt.name in states:
            states[mt.name] = state
    return states


def _creations(
    limits: SpaceLimits,
    machinetypes: Mapping[str, MachineType],
    views: list[MachineView],
    feedback: Mapping[str, FeedbackState],
    now: float,
    held: dict[str, str],
) -> tuple[list[Create], dict[str, int]]:
    """The creations, and the machinetypes whose ramp changes (name -> new ramp)."""
    gone = MachineState.GONE  # enum attribute access is slow; this loop sees every machine
    running_state = MachineState.RUNNING
    live = [v for v in views if v.state is not gone]
    space_processors = sum(v.processors for v in live)
    space_machines = len(live)
    in_use: dict[str, int] = defaultdict(int)
    starting: dict[str, int] = defaultdict(int)
    starting_machines: dict[str, int] = defaultdict(int)
    looking: dict[str, int] = defaultdict(int)
    reporting: set[str] = set()  # machinetypes with a live machine that reports jobs_started
    hints: dict[str, tuple[float, int, str]] = {}  # freshest demand report: (at, jobs waiting, machine)
    for v in live:
        in_use[v.machinetype] += v.processors
        if v.started is None and v.state in _NOT_YET_RUNNING:
            starting[v.machinetype] += v.processors
            starting_machines[v.machinetype] += 1
        elif v.jobs_started == 0 and v.state is running_state and v.shutdown_message is None:
            looking[v.machinetype] += 1
        if v.jobs_started is not None:
            reporting.add(v.machinetype)
        if v.demand_at is not None and now - v.demand_at <= DEMAND_FRESH_SECONDS:
            best = hints.get(v.machinetype)
            if best is None or v.demand_at > best[0]:
                hints[v.machinetype] = (v.demand_at, v.demand, v.name)

    for name, mt in machinetypes.items():
        published = mt.extra.get(DEMAND_HINT)
        if published is not None and now - published[0] <= DEMAND_FRESH_SECONDS:
            best = hints.get(name)
            if best is None or published[0] > best[0]:
                hints[name] = published

    ramps: dict[str, int] = {}
    allowance: dict[str, int | None] = {}  # None: no limit from feedback
    for name, mt in machinetypes.items():
        if name in held:
            continue
        if mt.target_share <= 0:
            held[name] = "target_share is 0"
            continue
        state = feedback.get(name, FeedbackState())
        hint = hints.get(name)
        need = None if hint is None else hint[1] - starting_machines[name] - looking[name]
        g = backoff.gate(state, now)
        if g is Gate.BACKOFF and state.kind == Kind.EMPTY_QUEUE.value and need is not None and need > 0:
            g = Gate.OPEN  # the project says work waits: its queue is no longer empty
        if g is Gate.BACKOFF and state.kind == Kind.CAPACITY.value:
            held[name] = (f"backoff until {iso(state.backoff_until or now)}, the cloud's refusal "
                          f"(capacity or quota), not the project's abort; last: {state.last_message}")
            continue
        if g is Gate.BACKOFF:
            kind = f" ({state.kind.replace('_', ' ')})" if state.kind else ""
            held[name] = (
                f"backoff until {iso(state.backoff_until or now)} after {state.consecutive_aborts} "
                f"consecutive abort(s){kind}; last: {state.last_message}"
            )
            continue
        if looking[name]:
            held[name] = (
                f"looking: {looking[name]} machine(s) up and still looking for work (jobs_started 0); "
                "no more until they find some or stop"
            )
            if state.ramp > 1:
                ramps[name] = 1  # the queue is drained: the ramp starts again from one machine
            continue
        if need is not None and need <= 0:
            held[name] = (
                f"demand: {hint[1]} job(s) waiting (reported by {hint[2]} at {iso(hint[0])}), "
                f"{starting_machines[name]} machine(s) starting"
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
                    f"fizzle_seconds ({mt.fizzle_seconds}s) nor reported a job started"
                )
                continue
            allowance[name] = 1
        elif state.ramp or (name in reporting and state.last_abort is not None):
            allowance[name] = max(1, state.ramp)  # after any abort, a reporting machinetype ramps from one
        else:
            allowance[name] = None
        if need is not None:  # the project's own count beats the ramp's guess, and bounds a probe
            allowance[name] = min(need, allowance[name]) if g is Gate.PROBE else need

    budget = limits.budget
    created: dict[str, int] = defaultdict(int)
    total_created = 0
    ramp_budget = limits.creation_budget_processors is None  # a ramp is its own budget unless one is configured

    def blocker(mt: MachineType) -> str | None:
        limit = allowance[mt.name]
        if limit is not None and created[mt.name] >= limit:
            state = feedback.get(mt.name, FeedbackState())
            if backoff.gate(state, now) is Gate.PROBE:
                return "one probe created after backoff; more once it reports a job started or runs fizzle_seconds"
            if mt.name not in hints and (state.ramp or mt.name in reporting):
                return f"ramp: {limit} machine(s) this cycle, twice as many next cycle while they find work"
            return f"demand: no more machines than the {limit} job(s) waiting need"
        if space_processors + mt.processors > limits.processors_limit:
            return f"space processors_limit reached ({space_processors}/{limits.processors_limit})"
        if limits.max_machines is not None and space_machines + 1 > limits.max_machines:
            return f"space max_machines reached ({space_machines}/{limits.max_machines})"
        if mt.processors_limit is not None and in_use[mt.name] + mt.processors > mt.processors_limit:
            return f"machinetype processors_limit reached ({in_use[mt.name]}/{mt.processors_limit})"
        if mt.max_starting_processors is not None and starting[mt.name] + mt.processors > mt.max_starting_processors:
            return f"max_starting_processors reached ({starting[mt.name]}/{mt.max_starting_processors})"
        state = feedback.get(mt.name, FeedbackState())
        ramping = ramp_budget and (state.ramp or mt.name in hints or (mt.name in reporting and state.last_abort))
        if total_created > 0 and mt.processors > budget and not ramping:
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

    for name, limit in allowance.items():
        state = feedback.get(name, FeedbackState())
        made = created.get(name, 0)
        if name in hints or backoff.gate(state, now) is not Gate.OPEN or not made:
            continue
        # A ramp doubles what it used; a reporting machinetype with no ramp yet (a fresh start) spent the
        # budget, and ramps on from there.
        if (limit is not None and made >= limit) or (limit is None and name in reporting):
            ramps[name] = min(2 * made, max(1, limits.processors_limit // machinetypes[name].processors))
    return [
        Create(name, n, probe=backoff.gate(feedback.get(name, FeedbackState()), now) is Gate.PROBE)
        for name, n in sorted(created.items())
    ], ramps
