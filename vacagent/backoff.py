"""Backoff and ramp of one machinetype in one space: a tiny value and pure functions.

After an abort no machine of the machinetype is created until the backoff
expires; then exactly one *probe*; more once the evidence says machines
find work.  How long the backoff lasts depends on what the abort says
(`Kind`):

- `EMPTY_QUEUE` (`300 No more work available`): the project had nothing to
  do; cheap to probe again.  `backoff_seconds` (or the cap, if lower),
  never longer, however long the quiet spell or how many probes found
  nothing.
- `FAILURE` (400-699, a 700 after starting, a run shorter than
  `fizzle_seconds`, a failed creation): `backoff_seconds`, doubling up to
  the cap (`MachineType.backoff_cap`: `max_backoff_seconds`, default
  8 x backoff_seconds).
- `NO_START` (the machine never started: the cloud's ERROR, `700 Failed to
  start`): twice `FAILURE`'s delay, up to the same cap.

The escalation decays with time: for every `backoff_seconds` that passed
between the end of the last backoff and a new abort, one consecutive
abort is forgotten, so a quiet spell is not a run of failures.

Aborts do not compound within one wave: when fifty machines find the queue
empty together, only the first escalates; the others (created before that
escalation) just keep the backoff running from their own abort time.  Only a
machine created after the escalation (the probe, or a failed creation
attempt) escalates again.

A creation the cloud refused for capacity or quota (`record_refusal`: the
create call refused with `CapacityExhausted`/`QuotaExceeded`, or a machine
it accepted and then ended with the `capacity`/`quota` cause, such as Nova's
"No valid host") is not an abort: the cloud had no room, the project is not
at fault.  The machinetype waits `backoff_seconds` (`Kind.CAPACITY`; never
doubled, however often the cloud refuses), so that a full cloud is asked
once per backoff rather than every cycle; the abort count and wave stay as
they were, so a probing machinetype probes again afterwards at the same
escalation; a ramp shrinks to what fitted.

Success ends the backoff at once: a machine that reports it started a job
after the last abort (`record_found_work`), or a machine
created after the last escalation that ran `fizzle_seconds`
(`record_success`, for machines that report nothing).  Found work also
starts a *ramp*: `ramp` machines may be created next cycle, doubling each
cycle while the wave's machines keep finding work (the planner decides).

Persisted as `spaces/<space>/machinetypes/<mt>/feedback.json` by the state
store; used by `planner` and `actuate`.  Time is always an argument.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from vacagent.model import MachineType


class Kind(str, enum.Enum):
    """What an abort says about the machinetype, from the mildest."""

    EMPTY_QUEUE = "empty_queue"
    FAILURE = "failure"
    NO_START = "no_start"
    CAPACITY = "capacity"  # not an abort: the cloud refused for capacity or quota (`record_refusal`)


def kind_of(code: int | None, started: bool) -> Kind:
    """The kind of an abort by its shutdown code and whether the machine ever started."""
    if not started:
        return Kind.NO_START
    if code == 300:
        return Kind.EMPTY_QUEUE
    return Kind.FAILURE


@dataclass(frozen=True)
class FeedbackState:
    consecutive_aborts: int = 0
    last_abort: float | None = None
    backoff_until: float | None = None
    wave_start: float | None = None  # time of the last escalation
    last_message: str | None = None  # what the last abort said, for operators
    kind: str | None = None  # Kind.value of the last abort
    ramp: int = 0  # machines the ramp allows next cycle (0: no ramp)

    @property
    def probing(self) -> bool:
        return self.consecutive_aborts > 0


class Gate(enum.Enum):
    OPEN = "open"
    BACKOFF = "backoff"
    PROBE = "probe"  # one probe may run (if none is running already)


def delay(machinetype: MachineType, aborts: int, kind: Kind = Kind.FAILURE) -> float:
    """Backoff after `aborts` consecutive aborts (aborts >= 1), the last of `kind`."""
    exponent = min(max(0, aborts - 1), 62)  # 2**1000 is a big int: no point building it
    base, cap = float(machinetype.backoff_seconds), float(machinetype.backoff_cap)
    if kind is Kind.EMPTY_QUEUE:
        cap = min(cap, base)
    elif kind is Kind.NO_START:
        base = 2 * base
    return min(base * 2**exponent, cap)


def decayed(state: FeedbackState, machinetype: MachineType, at: float) -> int:
    """Consecutive aborts still remembered at `at`: one forgotten per backoff_seconds after the backoff ended."""
    if state.backoff_until is None or at <= state.backoff_until or machinetype.backoff_seconds <= 0:
        return state.consecutive_aborts
    return max(0, state.consecutive_aborts - int((at - state.backoff_until) // machinetype.backoff_seconds))


def record_abort(
    state: FeedbackState,
    machinetype: MachineType,
    at: float,
    created: float,
    message: str,
    kind: Kind = Kind.FAILURE,
) -> FeedbackState:
    """An abort at `at` of a machine created at `created` (or a failed creation at `created == at`)."""
    escalate = state.wave_start is None or not state.probing or created >= state.wave_start
    remembered = decayed(state, machinetype, at)
    aborts = remembered + 1 if escalate else max(1, remembered)
    until = at + delay(machinetype, aborts, kind)
    return FeedbackState(
        consecutive_aborts=aborts,
        last_abort=max(at, state.last_abort or at),
        backoff_until=max(until, state.backoff_until or until),
        wave_start=at if escalate else state.wave_start,
        last_message=message,
        kind=kind.value,
    )


def record_refusal(
    state: FeedbackState, machinetype: MachineType, at: float, message: str, made: int = 0
) -> FeedbackState:
    """The cloud refused a creation at `at` for capacity or quota, after `made` machines of the machinetype
    were created that cycle: not the project's abort.  A backoff of `backoff_seconds` (capped, never
    doubled), unless a longer one already runs; the count and wave stay as they were; a ramp shrinks to
    what fitted (at least one machine), so that it does not grow while the cloud creates nothing."""
    ramp = min(state.ramp, max(1, made))
    until = at + delay(machinetype, 1, Kind.EMPTY_QUEUE)
    if state.backoff_until is not None and state.backoff_until >= until:
        return replace(state, ramp=ramp)
    return replace(state, backoff_until=until, last_message=message, kind=Kind.CAPACITY.value, ramp=ramp)


def _ended(state: FeedbackState, ramp: int) -> FeedbackState:
    return FeedbackState(last_abort=state.last_abort, last_message=state.last_message, kind=state.kind, ramp=ramp)


def record_success(state: FeedbackState, created: float) -> FeedbackState:
    """A machine created at `created` has run past fizzle_seconds."""
    if not state.probing or state.wave_start is None or created < state.wave_start:
        return state
    return _ended(state, 0)


def record_found_work(state: FeedbackState, at: float) -> FeedbackState:
    """A machine reports it started a job at `at` (its report's time, or when it booted if unknown): ends
    the backoff and starts a ramp if that was after the last abort (the work was there after the abort)."""
    if not state.probing or state.last_abort is None or at < state.last_abort:
        return state
    return _ended(state, 2)


def unknown(now: float, why: str) -> FeedbackState:
    """The state to start from when the stored one cannot be read: one probe, as after an
    abort at `now` (neither a fresh start that floods a broken project nor a long backoff)."""
    return FeedbackState(consecutive_aborts=1, last_abort=now, wave_start=now, last_message=why)


# feedback.json's fields: what each must be, and how it is said when it is not.
_FIELDS = {
    "consecutive_aborts": ("count", lambda v: isinstance(v, int) and v >= 0),
    "ramp": ("count", lambda v: isinstance(v, int) and v >= 0),
    "last_abort": ("time", lambda v: isinstance(v, (int, float))),
    "backoff_until": ("time", lambda v: isinstance(v, (int, float))),
    "wave_start": ("time", lambda v: isinstance(v, (int, float))),
    "last_message": ("text", lambda v: isinstance(v, str)),
    "kind": ("kind", lambda v: v in {k.value for k in Kind}),
}


def from_dict(data: dict) -> FeedbackState:
    """A stored state; ValueError naming the first field that is not what it must be.
    Absent or null fields (an older vacagent's file) take their defaults."""
    fields = {}
    for key, (what, valid) in _FIELDS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not valid(value):
            raise ValueError(f"{key}: {value!r} is not a {what}")
        fields[key] = float(value) if what == "time" else value
    return FeedbackState(**fields)


def gate(state: FeedbackState, now: float) -> Gate:
    if state.backoff_until is not None and now < state.backoff_until:
        return Gate.BACKOFF
    if state.probing:
        return Gate.PROBE
    return Gate.OPEN
