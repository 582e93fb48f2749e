"""The useful-time ledger: where every second of a machine's life went.  Pure.

A machine's life, from its intent (`created`) to the moment the cloud no
longer holds it (`end`; `now` for a live machine), is cut into consecutive
spans, each in exactly one phase:

    starting   created -> first seen running
    working    running a job (the machine's `job_seconds`, or the estimate below)
    idle       running without a job: the tail before a `300`, a fizzled machine's whole run
    lost       the run of a machine that ended badly (no `100`/`200`/`300` message: an abort
               with 400-699, a `700` from vacagent: stale heartbeat, wallclock, failed to start),
               and the boot of a machine that never ran
    draining   from the end of its run (its stop, or the deletion asked) until gone

The run is placed as working first, then idle (or all lost).  The figures
are machine-seconds; times `processors`, processor-seconds.  The useful
fraction of a set of machines is working ÷ all phases, in processor-seconds.

`job_seconds` is what the machine reports in its joboutputs file of that
name (seconds spent running jobs so far).  Without it, the estimate: a live
machine's run so far is working; a machine that ran less than
`fizzle_seconds` spent its whole run idle; after a `300` the last
`fizzle_seconds` of the run were idle; after a `100` or `200` the whole run
was working.  docs/ledger.md is the reference for operators.

Neighbours: `state.store` writes `accounting_fields` into each accounting
line; `cycle` keeps running totals of live machines in the decision record;
`usage` and `health` read them back; `sim.metrics` measures simulated
machines with the very same `spans`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from vacagent.model import MachineRecord, Outcome

PHASES = ("starting", "working", "idle", "lost", "draining")
NOT_LOST = frozenset({100, 200, 300})


@dataclass(frozen=True)
class Life:
    """What the ledger needs of one machine; times are seconds since the epoch."""

    created: float
    processors: int = 1
    started: float | None = None  # first seen running; None if it never ran (yet)
    ran_seconds: float | None = None  # length of its run, once it ended; None while it runs
    deleting_since: float | None = None  # deletion asked
    end: float | None = None  # no longer held by the cloud; None while it is
    ended: bool = False  # its outcome is known
    code: int | None = None  # its shutdown message code, once ended
    job_seconds: float | None = None  # reported by the machine, if it does
    fizzle_seconds: float = 0.0


@dataclass(frozen=True)
class Span:
    phase: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def lost(life: Life) -> bool:
    return life.ended and (life.started is None or life.code not in NOT_LOST)


def fizzled(life: Life) -> bool:
    """Ended, not lost, and ran less than fizzle_seconds."""
    return life.ended and not lost(life) and (life.ran_seconds or 0.0) < life.fizzle_seconds


def _working(life: Life, run: float) -> float:
    if life.job_seconds is not None:
        return min(max(0.0, life.job_seconds), run)
    if not life.ended:
        return run
    if fizzled(life):
        return 0.0
    if life.code == 300:
        return max(0.0, run - life.fizzle_seconds)
    return run


def spans(life: Life, now: float) -> tuple[Span, ...]:
    """The machine's life up to `now` (or its end), as consecutive spans; empty ones left out."""
    end = life.end if life.end is not None else now
    created = min(life.created, end)
    run_until = end
    if life.deleting_since is not None:
        run_until = min(run_until, max(life.deleting_since, created))
    if life.started is None:
        boot_end = min(run_until, end)
        cut = [("lost" if life.ended else "starting", created, boot_end), ("draining", boot_end, end)]
    else:
        started = min(max(life.started, created), end)
        if life.ran_seconds is not None:
            run_until = min(run_until, started + max(0.0, life.ran_seconds))
        run_until = max(run_until, started)
        run = run_until - started
        if lost(life):
            cut = [("starting", created, started), ("lost", started, run_until)]
        else:
            working = started + _working(life, run)
            cut = [("starting", created, started), ("working", started, working), ("idle", working, run_until)]
        cut.append(("draining", run_until, end))
    return tuple(Span(phase, a, b) for phase, a, b in cut if b > a)


def clip(cut: Iterable[Span], since: float | None, until: float | None) -> tuple[Span, ...]:
    """The parts of the spans within [since, until)."""
    lo = float("-inf") if since is None else since
    hi = float("inf") if until is None else until
    out = []
    for s in cut:
        a, b = max(s.start, lo), min(s.end, hi)
        if b > a:
            out.append(Span(s.phase, a, b))
    return tuple(out)


def seconds(cut: Iterable[Span]) -> dict[str, float]:
    """Machine-seconds per phase (every phase present)."""
    totals = dict.fromkeys(PHASES, 0.0)
    for s in cut:
        totals[s.phase] += s.seconds
    return totals


def add(totals: dict[str, float], more: Mapping[str, float], times: float = 1.0) -> None:
    for phase, value in more.items():
        totals[phase] = totals.get(phase, 0.0) + value * times


def fraction(processor_seconds: Mapping[str, float]) -> float | None:
    """working ÷ all phases; None when there is nothing."""
    total = sum(processor_seconds.values())
    return processor_seconds.get("working", 0.0) / total if total > 0 else None


def accounting_fields(life: Life, now: float) -> dict[str, object]:
    """The ledger's fields of a finished machine's accounting line."""
    cut = spans(life, now)
    machine = {k: round(v, 3) for k, v in seconds(cut).items()}
    return {
        "job_seconds": life.job_seconds,
        "fizzled": fizzled(life),
        "ledger_seconds": machine,
        "ledger_processor_seconds": {k: round(v * life.processors, 3) for k, v in machine.items()},
        "ledger_spans": [[s.phase, round(s.start, 3), round(s.end, 3)] for s in cut],
    }


def spans_from_accounting(line: Mapping[str, object]) -> tuple[Span, ...]:
    """The spans an accounting line carries (none for lines written before the ledger)."""
    raw = line.get("ledger_spans") or ()
    return tuple(Span(str(p), float(a), float(b)) for p, a, b in raw)  # type: ignore[misc]


def open_life(record: MachineRecord, job_seconds: float | None, fizzle_seconds: float = 0.0) -> Life:
    """A machine whose record is still open (live, or its end decided but not yet gone)."""
    outcome = record.outcome
    return Life(
        created=record.created,
        processors=record.processors,
        started=record.started,
        ran_seconds=outcome.ran_seconds if outcome is not None else None,
        deleting_since=record.deleting_since,
        ended=outcome is not None,
        code=outcome.code if outcome is not None else None,
        job_seconds=job_seconds,
        fizzle_seconds=fizzle_seconds,
    )


def closed_life(record: MachineRecord, outcome: Outcome, closed: float, job_seconds: float | None,
                fizzle_seconds: float = 0.0) -> Life:
    """A machine being closed at `closed` with its final outcome."""
    return replace(open_life(record, job_seconds, fizzle_seconds), ran_seconds=outcome.ran_seconds,
                   ended=True, code=outcome.code, end=closed)
