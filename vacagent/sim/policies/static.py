"""The `static` policy: each project owns a fixed partition, kept full; no feedback.

The space's `processors_limit` is split in proportion to target shares
(largest remainders get the odd processors).  Every cycle, each machinetype
is topped up to its partition at once (no creation budget, no backoff, no
probe), as a lab with fixed per-project quotas and machines restarted as
soon as they stop.  Machines still end by vacagent's lifecycle rules
(`planner.lifecycle`), and behave as every simulated machine does: with no
work they stop after `idle_seconds` and are replaced at the next cycle.
"""

from __future__ import annotations

import math
from typing import Mapping

from vacagent.backoff import FeedbackState
from vacagent.model import Create, MachineState, MachineType, MachineView, Plan, SpaceLimits
from vacagent.planner import Decision, lifecycle
from vacagent.sim.policies import CyclePolicy


def partition(processors_limit: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Processors per machinetype, in proportion to shares, summing to at most the limit."""
    total = sum(s for s in shares.values() if s > 0)
    if total <= 0:
        return {name: 0 for name in shares}
    exact = {name: processors_limit * max(s, 0) / total for name, s in shares.items()}
    out = {name: math.floor(x) for name, x in exact.items()}
    spare = processors_limit - sum(out.values())
    for name in sorted(exact, key=lambda n: (out[n] - exact[n], n))[:spare]:
        out[name] += 1
    return out


def plan(
    limits: SpaceLimits,
    machinetypes: Mapping[str, MachineType],
    views: list[MachineView],
    feedback: Mapping[str, FeedbackState],
    now: float,
    held: Mapping[str, str] | None = None,
) -> Decision:
    life = lifecycle(limits, machinetypes, views, now)
    held = dict(held or {})
    shares = {name: mt.target_share for name, mt in machinetypes.items() if name not in held}
    parts = partition(limits.processors_limit, shares)
    in_use = {name: 0 for name in machinetypes}
    for v in views:
        if v.state is not MachineState.GONE and v.machinetype in in_use:
            in_use[v.machinetype] += v.processors  # machines being deleted hold their processors until gone
    creates = []
    for name, part in sorted(parts.items()):
        n = (part - in_use[name]) // machinetypes[name].processors
        if n > 0:
            creates.append(Create(name, n))
        held[name] = f"partition of {part} processors {'filled' if n > 0 else 'full'}"
    return Decision(Plan(tuple(creates), life.deletes, life.closes, held), {}, life.assessments)


POLICY = CyclePolicy(
    name="static",
    summary="fixed partition by target share, refilled every cycle, no feedback",
    planner=lambda scenario, space: plan,
)
