"""Classify one machine: what it is doing, whether it must go, and how it ended.

Pure: `assess(view, machinetype, limits, now)` reads nothing but its
arguments.  The rules, in the order they apply:

1. stopped or failed (backend), or gone (no longer listed)  -> finished
2. a shutdown message left more than `shutdown_grace_seconds` ago -> finished
   (the machine said it is done; give it a moment to exit by itself)
   A machine the backend never confirmed and never listed ends as `never
   created`: vacagent's own failure, never the project's abort.
3. starting for longer than `max_starting_seconds`     -> `700 Failed to start`
4. running longer than `max_wallclock_seconds`          -> `700 Exceeded max_wallclock_seconds`
5. heartbeat configured, machine past `fizzle_seconds`, heartbeat older than
   `heartbeat_seconds` (or missing, when heartbeat_seconds is 0)
                                                         -> `700 Heartbeat not updated`
   Heartbeats are counted from no earlier than the view's
   `endpoint_up_since`, when the endpoint that takes them last came up: a
   machine is never blamed for heartbeats the endpoint was not there to take
   (Vac does the same).

An *abort* is a machine that ended with a code 300-699, or that ran less than
`fizzle_seconds` whatever its code unless it reported a job started
(`jobs_started` > 0: a short run that did work is not a fizzle), and unless the platform says it reclaimed the
machine (spot reclaim, preemption, eviction: `Cause.RECLAIMED`): its short
run is never the project's abort, and it reads `100` when the machine left
no message (a 3xx-6xx message of its own still counts).
An end the platform puts down to capacity or quota is an abort in the
outcome (the machine did no work), with the cause kept; the planner does not
back the machinetype off for it (the cloud had no room: `backoff.record_refusal`).  A machine's own shutdown message always
stands: vacagent's message is used only when the machine left none.

Neighbours: `planner` turns assessments into a Plan; `backoff` turns aborts
and successes into the machinetype's feedback state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from vacagent.model import (
    EXCEEDED_WALLCLOCK,
    RECLAIMED_BY_HOST,
    Cause,
    FAILED_TO_START,
    HEARTBEAT_STALE,
    MACHINETYPE_GONE,
    NEVER_CREATED,
    STOPPED_EARLY,
    STOPPED_SILENTLY,
    MachineState,
    MachineType,
    MachineView,
    Outcome,
    ShutdownMessage,
    SpaceLimits,
)


class Verdict(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"  # ended by itself: delete what is left and record the outcome
    EXPIRED = "expired"  # vacagent ends it: delete with our message


_ENDING = frozenset({Verdict.FINISHED, Verdict.EXPIRED})
_ENDED = frozenset({MachineState.STOPPED, MachineState.FAILED, MachineState.GONE})  # enum attribute access is slow


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    ran: float  # seconds it has run (0 if it never started)
    passed_fizzle: bool = False
    ours: ShutdownMessage | None = None  # our message, if we end it and it left none
    outcome: Outcome | None = None  # set for FINISHED and EXPIRED

    @property
    def ends(self) -> bool:
        return self.verdict in _ENDING


def is_abort(code: int | None, ran: float, fizzle_seconds: float, found_work: bool = False) -> bool:
    return (code is not None and 300 <= code <= 699) or (ran < fizzle_seconds and not found_work)


def _ran(view: MachineView, until: float) -> float:
    if view.started is None:
        return 0.0
    return max(0.0, until - view.started)


def assess(
    view: MachineView,
    machinetype: MachineType | None,
    limits: SpaceLimits,
    now: float,
) -> Assessment:
    own = ShutdownMessage.parse(view.shutdown_message) if view.shutdown_message else None
    fizzle = machinetype.fizzle_seconds if machinetype else 0

    reclaimed = view.cause is Cause.RECLAIMED

    def end(verdict: Verdict, ran: float, ours: ShutdownMessage | None, reason: str, at: float) -> Assessment:
        if reclaimed and (ours is None or ours is FAILED_TO_START):
            ours = RECLAIMED_BY_HOST
        standing = own or ours
        outcome = Outcome(
            message=str(standing) if standing else "",
            code=standing.code if standing else None,
            ran_seconds=round(ran, 3),
            # A reclaimed machine is never blamed for its short run; only its own 3xx-6xx still counts.
            aborted=is_abort(standing.code if standing else None, ran, 0 if reclaimed else fizzle,
                             bool(view.jobs_started)),
            reason=reason,
            at=at,
            cause=view.cause.value if view.cause is not None else None,
        )
        return Assessment(verdict, ran, ours=None if own else ours, outcome=outcome)

    if view.state in _ENDED:
        at = view.stopped if view.stopped is not None else now
        ran = _ran(view, at)
        never_ran = view.started is None and view.state in (MachineState.FAILED, MachineState.GONE)
        if never_ran and view.unconfirmed and view.state is MachineState.GONE and own is None:
            # vacagent's own failure (it stopped before the backend saw the create): not the project's abort.
            return Assessment(Verdict.FINISHED, 0.0, outcome=Outcome("", None, 0.0, False, NEVER_CREATED, at))
        ours = FAILED_TO_START if never_ran else None
        if view.state is MachineState.STOPPED and own is None and not reclaimed:
            ours = STOPPED_SILENTLY if ran >= fizzle or view.jobs_started else STOPPED_EARLY
        return end(Verdict.FINISHED, ran, ours, view.state.value, at)

    if own is not None and view.shutdown_message_at is not None:
        if now - view.shutdown_message_at >= limits.shutdown_grace_seconds:
            return end(Verdict.FINISHED, _ran(view, view.shutdown_message_at), None, "shutdown message", now)

    if machinetype is None:
        return end(Verdict.EXPIRED, _ran(view, now), MACHINETYPE_GONE, str(MACHINETYPE_GONE), now)

    if view.state is not MachineState.RUNNING:
        # STARTING, DELETING and UNKNOWN all count from the intent time.
        if view.started is None and now - view.created > limits.max_starting_seconds:
            return end(Verdict.EXPIRED, 0.0, FAILED_TO_START, str(FAILED_TO_START), now)
        if view.started is None:
            return Assessment(Verdict.STARTING, 0.0)

    ran = _ran(view, now)
    if ran > machinetype.max_wallclock_seconds:
        return end(Verdict.EXPIRED, ran, EXCEEDED_WALLCLOCK, str(EXCEEDED_WALLCLOCK), now)

    passed_fizzle = ran >= fizzle
    if machinetype.heartbeat_file and passed_fizzle:
        if machinetype.heartbeat_seconds > 0:
            last = view.heartbeat_at if view.heartbeat_at is not None else view.started
            if view.endpoint_up_since is not None and (last is None or last < view.endpoint_up_since):
                last = view.endpoint_up_since
            stale = last is None or now - last > machinetype.heartbeat_seconds
        else:
            stale = view.heartbeat_at is None  # Vcycle: 0 means the file must only exist
        if stale:
            return end(Verdict.EXPIRED, ran, HEARTBEAT_STALE, str(HEARTBEAT_STALE), now)

    return Assessment(Verdict.RUNNING, ran, passed_fizzle=passed_fizzle)


def with_own_message(outcome: Outcome, message: str | None, fizzle_seconds: float) -> Outcome:
    """The outcome once the machine's own shutdown message is known: it always wins over
    vacagent's, even when it arrived after the cycle decided (between its read and the delete)."""
    own = ShutdownMessage.parse(message) if message else None
    if own is None or str(own) == outcome.message:
        return outcome
    reclaimed = outcome.cause == Cause.RECLAIMED.value
    aborted = is_abort(own.code, outcome.ran_seconds, 0 if reclaimed else fizzle_seconds)
    return replace(outcome, message=str(own), code=own.code, aborted=aborted)
