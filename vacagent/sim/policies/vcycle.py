"""The `vcycle` policy: Vcycle's published algorithm, as a faithful baseline.

From Vcycle's `shared.py` (github.com/projectvacuum/vcycle, `makeMachines`,
`deleteMachines` and the `Machine` constructor), per space and cycle:

- *abort*: a machine first seen stopped whose shutdown message has a code
  300-699, or that had started and ran less than `fizzle_seconds`.  Its stop
  time becomes the machinetype's `lastAbortTime` if later.  A machine that
  never started (boot failure, deleted as `700 Failed to start`) and a failed
  create are not aborts.
- *backoff*: no creation while now < lastAbortTime + backoff_seconds; the
  delay is fixed (it never grows).
- *probe*: while now < lastAbortTime + backoff_seconds + fizzle_seconds,
  create only if no machine of the machinetype is starting or running short
  of `fizzle_seconds`; each creation counts as one such machine, so exactly
  one probe.  The window ends fizzle_seconds after the backoff, whether or
  not the probe has booted and passed fizzle_seconds by then.
- *budget*: ceil(0.1 x processors_limit) processors of creation attempts per
  cycle, failed ones included.
- *choice*: among the machinetypes not held back (share > 0, their own
  `processors_limit`, `max_starting_processors`, the gates above), the one
  with the lowest sum of processors / target_share over its machines in any
  state; machinetypes are visited in random order (seeded), so ties are
  broken at random.  As in Vcycle, the machine counts are those of the
  cycle's start: every creation of a cycle goes to the same machinetype
  until a gate closes, and the space limit is checked against the start
  total (the cloud refuses what does not fit).
- *deletion*: stopped and failed machines; starting for more than 3600 s
  (`700 Failed to start`); past `max_wallclock_seconds`; stale heartbeats.
  These are vacagent's lifecycle rules too (`planner.lifecycle`), run here with
  Vcycle's 3600 s delay between two deletion attempts.

One difference stays: the simulator's actuator stops creating a machinetype
for the rest of the cycle at its first failed create, where Vcycle goes on
spending its budget on attempts that fail the same way.  Machines created
are the same; Vcycle would make more (failing) API calls.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Mapping

from vacagent.backoff import FeedbackState
from vacagent.model import Create, MachineState, MachineType, MachineView, Plan, SpaceLimits
from vacagent.planner import Decision, lifecycle
from vacagent.sim.policies import CyclePolicy

MAX_STARTING_SECONDS = 3600
DELETE_RETRY_SECONDS = 3600


def budget(processors_limit: int) -> int:
    """Vcycle's `creationsPerCycle`: int(0.9999999 + processors_limit * 0.1)."""
    return int(0.9999999 + processors_limit * 0.1)


def aborted(code: int | None, started: float | None, ran: float, fizzle_seconds: float) -> bool:
    return (code is not None and 300 <= code <= 699) or (started is not None and ran < fizzle_seconds)


class VcyclePlanner:
    """One space's Vcycle; remembers each machinetype's lastAbortTime."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.last_abort: dict[str, float] = {}

    def __call__(
        self,
        limits: SpaceLimits,
        machinetypes: Mapping[str, MachineType],
        views: list[MachineView],
        feedback: Mapping[str, FeedbackState],
        now: float,
        held: Mapping[str, str] | None = None,
    ) -> Decision:
        vlimits = replace(limits, max_starting_seconds=MAX_STARTING_SECONDS, delete_retry_seconds=DELETE_RETRY_SECONDS)
        life = lifecycle(vlimits, machinetypes, views, now)
        for view, a in life.ended:
            mt, outcome = machinetypes[view.machinetype], a.outcome
            if aborted(outcome.code, view.started, outcome.ran_seconds, mt.fizzle_seconds):
                self.last_abort[mt.name] = max(outcome.at, self.last_abort.get(mt.name, 0.0))
        held = dict(held or {})
        creates = self.make_machines(limits, machinetypes, views, now, held)
        return Decision(Plan(creates, life.deletes, life.closes, held), {}, life.assessments)

    def make_machines(
        self,
        limits: SpaceLimits,
        machinetypes: Mapping[str, MachineType],
        views: list[MachineView],
        now: float,
        held: dict[str, str],
    ) -> tuple[Create, ...]:
        live = [v for v in views if v.state is not MachineState.GONE]
        total = sum(v.processors for v in live)
        mt_total = {name: 0 for name in machinetypes}
        weighted = {name: 0.0 for name in machinetypes}
        starting = {name: 0 for name in machinetypes}
        not_passed = {name: 0 for name in machinetypes}
        for v in live:
            mt = machinetypes.get(v.machinetype)
            if mt is None:
                continue
            mt_total[mt.name] += v.processors
            if mt.target_share > 0:
                weighted[mt.name] += v.processors / mt.target_share
            booting = v.state is MachineState.STARTING and v.started is None
            if booting:
                starting[mt.name] += v.processors
            young = v.state is MachineState.RUNNING and v.started is not None and now - v.started < mt.fizzle_seconds
            if booting or young:
                not_passed[mt.name] += 1

        created = {name: 0 for name in machinetypes}
        spent = 0
        while True:
            if total >= limits.processors_limit:
                held.update({n: f"space processors_limit reached ({total})" for n in machinetypes if n not in held})
                break
            if spent >= budget(limits.processors_limit):
                held.update({n: f"creation budget of {budget(limits.processors_limit)} used" for n in machinetypes
                             if n not in held})
                break
            names = sorted(machinetypes)
            self.rng.shuffle(names)
            best = None
            for name in names:
                if name in held:
                    continue  # gates only close within a cycle: held once, held for the rest of it
                why = self._held(machinetypes[name], mt_total[name], starting[name], not_passed[name], now)
                if why:
                    held[name] = why
                    continue
                if best is None or weighted[name] < weighted[best]:
                    best = name
            if best is None:
                break
            processors = machinetypes[best].processors
            spent += processors  # attempts count, whether they succeed or not
            starting[best] += processors
            not_passed[best] += 1
            created[best] += 1
        return tuple(Create(name, n) for name, n in sorted(created.items()) if n)

    def _held(self, mt: MachineType, total: int, starting: int, not_passed: int, now: float) -> str | None:
        if mt.target_share <= 0:
            return "target_share is 0"
        if mt.processors_limit is not None and total >= mt.processors_limit:
            return f"machinetype processors_limit reached ({total})"
        if mt.max_starting_processors is not None and starting >= mt.max_starting_processors:
            return f"max_starting_processors reached ({starting})"
        last = self.last_abort.get(mt.name, 0.0)
        if now < last + mt.backoff_seconds:
            return f"backoff: {now - last:.0f}s after the last abort (backoff_seconds {mt.backoff_seconds})"
        if now < last + mt.backoff_seconds + mt.fizzle_seconds and not_passed > 0:
            return f"probe: {not_passed} machine(s) not yet past fizzle_seconds within backoff+fizzle of the last abort"
        return None


POLICY = CyclePolicy(
    name="vcycle",
    summary="Vcycle's algorithm: fixed backoff, one probe, 10% budget, lowest machines/share (random ties)",
    planner=lambda scenario, space: VcyclePlanner(random.Random(f"{scenario.seed}:vcycle:{space.name}")),
)
