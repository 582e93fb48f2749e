"""Backoff of one machinetype in one space: a tiny value and three pure functions.

After an abort no machine of the machinetype is created until the backoff
expires; then exactly one *probe*; more only once a machine created after the
last escalation has run `fizzle_seconds`.  The delay doubles per consecutive
abort up to a cap (`MachineType.backoff_cap`, default 8 x backoff_seconds).

Aborts do not compound within one wave: when fifty machines find the queue
empty together, only the first escalates; the others (created before that
escalation) just keep the backoff running from their own abort time.  Only a
machine created after the escalation (the probe, or a failed creation
attempt) escalates again.

Persisted as `spaces/<space>/machinetypes/<mt>/feedback.json` by the state
store; used by `planner`.  Time is always an argument.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vacagent.model import MachineType


@dataclass(frozen=True)
class FeedbackState:
    consecutive_aborts: int = 0
    last_abort: float | None = None
    backoff_until: float | None = None
    wave_start: float | None = None  # time of the last escalation
    last_message: str | None = None  # what the last abort said, for operators

    @property
    def probing(self) -> bool:
        return self.consecutive_aborts > 0


class Gate(enum.Enum):
    OPEN = "open"
    BACKOFF = "backoff"
    PROBE = "probe"  # one probe may run (if none is running already)


def delay(machinetype: MachineType, aborts: int) -> float:
    """Backoff after `aborts` consecutive aborts (aborts >= 1)."""
    exponent = max(0, aborts - 1)
    # Cap the exponent before computing: 2**1000 is a big int, not a problem,
    # but there is no point in building it.
    return float(min(machinetype.backoff_seconds * 2 ** min(exponent, 62), machinetype.backoff_cap))


def record_abort(
    state: FeedbackState,
    machinetype: MachineType,
    at: float,
    created: float,
    message: str,
) -> FeedbackState:
    """An abort at `at` of a machine created at `created` (or a failed creation at `created == at`)."""
    escalate = state.wave_start is None or not state.probing or created >= state.wave_start
    aborts = state.consecutive_aborts + 1 if escalate else state.consecutive_aborts
    until = at + delay(machinetype, aborts)
    return FeedbackState(
        consecutive_aborts=aborts,
        last_abort=max(at, state.last_abort or at),
        backoff_until=max(until, state.backoff_until or until),
        wave_start=at if escalate else state.wave_start,
        last_message=message,
    )


def record_success(state: FeedbackState, created: float) -> FeedbackState:
    """A machine created at `created` has run past fizzle_seconds."""
    if not state.probing or state.wave_start is None or created < state.wave_start:
        return state
    return FeedbackState(last_abort=state.last_abort, last_message=state.last_message)


def gate(state: FeedbackState, now: float) -> Gate:
    if state.backoff_until is not None and now < state.backoff_until:
        return Gate.BACKOFF
    if state.probing:
        return Gate.PROBE
    return Gate.OPEN
