"""One cycle of one space: observe, classify, decide, act, report.

    definitions  -> the machinetypes (pipes fetched through the cache)
    observe      -> backend.list_machines() + state store records + joboutputs
    reconcile    -> adopt unknown machines, spot gone ones
    decide       -> planner.plan(...) (pure)
    act          -> actuate.Actuator.carry_out(...)
    report       -> decisions/<space>.jsonl, reporter hooks

`run_once(space, now)` is what the daemon calls every cycle_seconds and what
`vacagent once` calls once.  The cycle holds the space's lock file while it
runs, so that two processes on one host never act on one space at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import filelock

from vacagent import backoff, definitions, demand, ledger, planner
from vacagent.actuate import Actuator
from vacagent.backends import registry
from vacagent.backends.base import Backend, BackendContext
from vacagent.backends.metered import Metered
from vacagent.backoff import FeedbackState
from vacagent.clock import Clock, SystemClock
from vacagent.config import Settings, SpaceSettings
from vacagent.errors import ConfigError, VacagentError
from vacagent.fetch import Fetcher
from vacagent.model import STATE_VALUE, Machine, MachineRecord, MachineState, MachineType, MachineView, SpaceLimits, iso
from vacagent.reconcile import reconcile
from vacagent.report import Reporter
from vacagent.state import uptime
from vacagent.state.atomic import FILE_MODE, make_dirs
from vacagent.state.store import SpaceStore

STALE_DEFINITION = (
    "not in the current configuration, or its definition is now invalid (see `vacagent validate`); "
    "existing machines run on under the last good definition"
)


class SpaceBusy(Exception):
    """Another process holds this space's cycle lock."""


@dataclass
class Space:
    """Everything one space's cycles need, built once per configuration."""

    settings: SpaceSettings
    actuator: Actuator
    retention_days: float
    decisions_max_bytes: int
    problems: dict[str, str] = field(default_factory=dict)  # reported definition problems
    demand_problems: dict[str, str] = field(default_factory=dict)  # reported demand_url problems
    disk_full: bool = False  # did the last cycle find the state directory full? (reported once per change)
    # The decision function: the daemon always uses planner.plan; the
    # simulator swaps in baseline policies with the same signature.
    decide: Callable[..., planner.Decision] = planner.plan

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def store(self) -> SpaceStore:
        return self.actuator.store

    @property
    def backend(self) -> Metered:
        return self.actuator.backend  # type: ignore[return-value]  # build() always meters it


def build(settings: Settings, space: SpaceSettings, reporter: Reporter, clock: Clock | None = None,
          backend: Backend | None = None, endpoint_url: str | None = None) -> Space:
    """Build a space's runtime; `backend` may be given (tests, simulator) instead of the configured one;
    `endpoint_url` is the running endpoint's (default: as configured)."""
    clock = clock or SystemClock()
    context = BackendContext(settings.site, space.name, settings.state_dir, space.options, clock)
    store = SpaceStore(settings.state_dir, space.name, settings.site)

    def observe(operation: str, outcome: str, seconds: float) -> None:
        reporter.backend_request(space.name, space.backend, operation, outcome, seconds)

    actuator = Actuator(
        space=space.name,
        site=settings.site,
        backend=Metered(backend or registry.create(space.backend, context), clock.monotonic, observe),
        store=store,
        fetcher=Fetcher(settings.state_dir / "cache"),
        reporter=reporter,
        endpoint_url=endpoint_url or (settings.endpoint.base_url() if settings.endpoint else None),
        apel=space.apel,
    )
    return Space(space, actuator, settings.finished_retention_days, settings.decisions_max_bytes)


def _machinetypes(space: Space, now: float) -> tuple[dict[str, MachineType], dict[str, str], dict[str, str]]:
    """(all machinetypes with a usable definition, held reasons, definition errors)."""
    resolved = definitions.resolve_space(space.settings, space.actuator.fetcher, now)
    _report_problems(space, resolved.errors, resolved.warnings)
    machinetypes = dict(resolved.machinetypes)
    for name, definition in resolved.definitions.items():
        with space.actuator.writing(f"saving the definition of {name}"):
            space.store.save_definition(name, dict(definition))
    held: dict[str, str] = {}
    for name in space.store.stored_machinetypes():
        if name in machinetypes:
            continue
        stored = space.store.definition(name)
        try:
            machinetypes[name] = definitions.build(name, stored or {}, {"suffix": "(stored definition)"})
        except ConfigError:
            continue
        held[name] = STALE_DEFINITION
    return machinetypes, held, dict(resolved.errors)


def _report_problems(space: Space, errors: dict[str, str], warnings: tuple[str, ...]) -> None:
    """Report definition problems when they appear or change, not every cycle."""
    current = {**{w: w for w in warnings}, **errors}
    reporter = space.actuator.reporter
    for key, message in current.items():
        if space.problems.get(key) != message:
            reporter.definition_problem(space.name, key, message, warning=key not in errors)
    for key in space.problems.keys() - current.keys():
        if space.problems[key] != key:  # an error (warnings are keyed by their own text)
            reporter.definition_problem_cleared(space.name, key)
    space.problems = current


def _report_demand(space: Space, problems: dict[str, str]) -> None:
    """Report a demand_url that cannot be read when it starts failing or its reason changes."""
    for name, message in problems.items():
        if space.demand_problems.get(name) != message:
            space.actuator.reporter.definition_problem(space.name, f"{name} demand_url", message, warning=True)
    space.demand_problems = problems


def run_once(space: Space, now: float) -> dict[str, Any]:
    """Run one cycle; returns the decision record it appended."""
    lock = filelock.FileLock(str(space.store.root / "cycle.lock"), mode=FILE_MODE)
    make_dirs(space.store.root)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise SpaceBusy(f"space {space.name}: another process holds {lock.lock_file}") from None
    try:
        return _cycle(space, now)
    finally:
        lock.release()


def _cycle(space: Space, now: float) -> dict[str, Any]:
    store, settings = space.store, space.settings
    space.actuator.confirm("running", "a cycle")
    writing = space.actuator.writing  # a write a full disk refuses is noted, and the cycle goes on
    space.actuator.unwritten = []
    with writing("completing interrupted closes"):
        for line in store.finish_closes():  # a crash or a full disk interrupted these closes
            space.actuator.reporter.machine_closed(space.name, line)
    machinetypes, held, definition_errors = _machinetypes(space, now)
    machinetypes, demand_problems = demand.apply(machinetypes, space.actuator.fetcher, now)
    _report_demand(space, demand_problems)

    listing = space.backend.list_machines()
    limits = settings.limits
    if settings.quota_from_cloud:
        limits, held = _within_quota(space, held, machinetypes)
    known = store.records()
    listing = _looked_up(space, listing, known)
    machines = {m.name: m for m in listing}
    for name, reason in dict(store.damaged).items():
        try:
            where = str(store.quarantine(name, now))
        except OSError as e:  # the record stays where it is; its machine is adopted (rewritten) all the same
            where = f"nowhere (could not move it: {e.strerror})"
        space.actuator.reporter.record_quarantined(space.name, name, reason, where)
    rec = reconcile(listing, known, space.name, now, settings.intent_grace_seconds)
    with writing("updating records"):
        for record in rec.changed:
            store.save(record)
    with writing("recording adopted machines"):
        for record in rec.adopted:
            record = replace(record, epoch=space.actuator.epoch)
            store.write_intent(record)
            space.actuator.reporter.machine_adopted(space.name, record)

    endpoint_up_since = uptime.up_since(store.state_dir)
    views = []
    records = {}
    job_seconds: dict[str, float | None] = {}
    heartbeats: dict[str, dict[str, float]] = {}
    for pair in rec.pairs:
        record, machine = pair.record, pair.machine
        records[record.name] = record
        mt = machinetypes.get(record.machinetype)
        outputs = store.outputs(record.name, mt.heartbeat_file if mt else None)
        job_seconds[record.name] = outputs.job_seconds
        if mt is not None and mt.heartbeat_checked and pair.state is MachineState.RUNNING:
            _heartbeat_age(heartbeats, mt, record.started, outputs.heartbeat_at, endpoint_up_since, now)
        message, message_at = outputs.shutdown_message, outputs.shutdown_message_at
        if not message and machine is not None and machine.message:
            message, message_at = machine.message, machine.stopped_at
        views.append(
            MachineView(
                name=record.name,
                machinetype=record.machinetype,
                processors=record.processors,
                state=pair.state,
                created=record.created,
                started=record.started,
                stopped=machine.stopped_at if machine is not None else None,
                shutdown_message=message,
                shutdown_message_at=message_at,
                heartbeat_at=outputs.heartbeat_at,
                deleting_since=record.deleting_since,
                outcome_recorded=record.outcome is not None,
                endpoint_up_since=endpoint_up_since,
                cause=machine.cause if machine is not None else None,
                jobs_started=outputs.jobs_started,
                jobs_started_at=outputs.jobs_started_at,
                demand=outputs.demand,
                demand_at=outputs.demand_at,
                unconfirmed=record.state == "intent",
            )
        )

    feedback = {name: _feedback(space, name, now) for name in machinetypes}
    decision = space.decide(limits, machinetypes, views, feedback, now, held)
    current = {**feedback, **decision.feedback}
    for name, state in decision.feedback.items():
        with writing(f"saving the feedback of {name}"):
            store.save_feedback(name, state)
        space.actuator.reporter.feedback_changed(space.name, name, feedback[name], state)

    before = dict(current)
    done = space.actuator.carry_out(decision.plan, records, machines, machinetypes, current, now)
    for name, state in current.items():
        if state != before[name]:
            with writing(f"saving the feedback of {name}"):
                store.save_feedback(name, state)
            space.actuator.reporter.feedback_changed(space.name, name, before[name], state)

    store.prune_finished(now, space.retention_days)
    record = _decision_record(space, now, views, decision, done, definition_errors, current, limits)
    record["ledger_live"] = _live_ledger(store.records(), job_seconds, machinetypes, now)
    record["heartbeats"] = heartbeats
    record["api"] = space.backend.take_summary()
    with writing("appending the decision record"):
        store.append_decision(record, space.decisions_max_bytes)
    _report_disk(space)
    space.actuator.reporter.cycle_done(space.name, record)
    return record


def _within_quota(space: Space, held: dict[str, str], machinetypes) -> tuple[SpaceLimits, dict[str, str]]:
    """The cycle's limits from the cloud's quota (the space sets no processors_limit).

    A quota that cannot be read holds every creation this cycle; the rest of
    the cycle (deletes, closes) goes on."""
    try:
        limits, why = planner.within_quota(space.settings.limits, space.backend.quota())
    except VacagentError as e:
        limits, why = space.settings.limits, f"cannot read the cloud's quota: {e}"
    if why:
        held = {**{name: why for name in machinetypes}, **held}
    return limits, held


def _looked_up(space: Space, listing: list[Machine], known: dict[str, MachineRecord]) -> list[Machine]:
    """The listing, with the machines it left out that the backend finds when asked one by one
    (backends with `look_up`): a record is closed as gone only when its machine really is."""
    look_up = getattr(space.backend, "look_up", None)
    if look_up is None:
        return listing
    names = {m.name for m in listing}
    missing = [Machine(r.name, r.machinetype, MachineState.UNKNOWN, r.backend_id, r.processors)
               for name, r in known.items() if name not in names and r.listed and r.deleting_since is None]
    if not missing:
        return listing
    found = look_up(missing)
    for machine in found:
        space.actuator.reporter.machine_left_out(space.name, machine)
    return listing + found


def _feedback(space: Space, machinetype: str, now: float) -> FeedbackState:
    """The machinetype's stored feedback; an unreadable one is set aside and replaced by one probe."""
    try:
        return space.store.feedback(machinetype)
    except ValueError as e:
        why = str(e)
    try:
        where = str(space.store.quarantine_feedback(machinetype, now))
    except OSError as e:
        where = f"nowhere (could not move it: {e.strerror})"
    space.actuator.reporter.feedback_quarantined(space.name, machinetype, why, where)
    state = backoff.unknown(now, "feedback.json unreadable: probing afresh")
    with space.actuator.writing(f"saving the feedback of {machinetype}"):
        space.store.save_feedback(machinetype, state)
    return state


def _report_disk(space: Space) -> None:
    """Say when the state directory fills up or has room again: once per change, not every cycle."""
    unwritten = space.actuator.unwritten
    if bool(unwritten) != space.disk_full:
        space.disk_full = bool(unwritten)
        if unwritten:
            space.actuator.reporter.disk_full(space.name, unwritten)
        else:
            space.actuator.reporter.disk_writable(space.name)


def _heartbeat_age(into: dict[str, dict[str, float]], mt: MachineType, started: float | None,
                   heartbeat_at: float | None, endpoint_up_since: float | None, now: float) -> None:
    """Count a running machine past fizzle_seconds: its heartbeat's age, and whether it is late."""
    if started is None or now - started < mt.fizzle_seconds:
        return
    last = max(t for t in (heartbeat_at, started, endpoint_up_since) if t is not None)
    age = now - last
    entry = into.setdefault(mt.name, {"machines": 0, "late": 0, "max_age": 0.0})
    entry["machines"] += 1
    entry["late"] += age > mt.heartbeat_seconds
    entry["max_age"] = round(max(entry["max_age"], age), 3)


def _live_ledger(records: dict[str, MachineRecord], job_seconds: dict[str, float | None],
                 machinetypes: dict[str, MachineType], now: float) -> dict[str, dict[str, float]]:
    """Running totals of the machines still open after this cycle: machinetype -> phase -> processor-seconds."""
    live: dict[str, dict[str, float]] = {}
    for record in records.values():
        mt = machinetypes.get(record.machinetype)
        life = ledger.open_life(record, job_seconds.get(record.name), mt.fizzle_seconds if mt else 0.0)
        ledger.add(live.setdefault(record.machinetype, {}), ledger.seconds(ledger.spans(life, now)), record.processors)
    return {mt: {k: round(v, 3) for k, v in phases.items()} for mt, phases in live.items()}


def refusal_reason(refusal: str, state: FeedbackState | None) -> str:
    """The held reason of a machinetype whose creation the cloud refused this cycle (capacity, quota)."""
    until = f"backoff until {iso(state.backoff_until)}, " if state and state.backoff_until else ""
    return f"capacity: {refusal}; {until}the cloud's refusal, not the project's abort"


def _decision_record(space, now, views, decision, done, definition_errors, feedback, limits) -> dict[str, Any]:
    per_mt: dict[str, dict[str, int]] = {}
    gone = MachineState.GONE
    for view in views:
        if view.state is gone:
            continue
        counts = per_mt.setdefault(view.machinetype, {"machines": 0, "processors": 0})
        counts["machines"] += 1
        counts["processors"] += view.processors
        value = STATE_VALUE[view.state]
        counts[value] = counts.get(value, 0) + 1
    return {
        "time": now,
        "at": iso(now),
        "space": space.name,
        "machines_total": sum(c["machines"] for c in per_mt.values()),
        "processors_total": sum(c["processors"] for c in per_mt.values()),
        "processors_limit": limits.processors_limit,
        "machinetypes": per_mt,
        "created": done["created"],
        "create_failed": done["failed"],
        "deleted": done["deleted"],
        "closed": done["closed"],
        "held": {**decision.plan.held,
                 **{mt: refusal_reason(why, feedback.get(mt)) for mt, why in done.get("refused", {}).items()}},
        "backoff": {
            name: {"until": state.backoff_until, "consecutive_aborts": state.consecutive_aborts}
            for name, state in feedback.items()
            if state.probing or (state.backoff_until is not None and state.backoff_until > now)
        },
        "definition_errors": definition_errors,
        **_holder(space),
    }


def _holder(space: Space) -> dict[str, Any]:
    """Who decided: the lease holder and its epoch (nothing without leases)."""
    fence = space.actuator.fence
    return {"instance": fence.holder, "epoch": fence.epoch} if fence else {}


def record_stop(space: Space, now: float, why: str) -> None:
    """A decision line saying this instance stopped acting on the space (`vacagent why` shows it)."""
    fence = space.actuator.fence
    line = {"space": space.name, "at": iso(now), "stopped": why,
            "instance": fence.holder if fence else None, "epoch": fence.epoch if fence else None}
    try:
        space.store.append_decision(line, space.decisions_max_bytes)
    except OSError:  # a full or failing state directory: the "stopped acting" log line already says why
        return
