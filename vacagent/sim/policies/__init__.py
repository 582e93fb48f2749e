"""Policies the simulator compares, behind one small interface.

A policy is an object with a `name`, a one-line `summary` and
`run(scenario, workdir) -> Trace`.  Most are *cycle-driven*: a decision
function with `planner.plan`'s signature, run by `sim.run` inside the
daemon's real cycle (`CyclePolicy`); a new one is one module that defines
`POLICY`, plus a line in `REGISTRY`.

- `vacagent`: the daemon's own planner, feedback and backoff.
- `vcycle`:   Vcycle's published algorithm (a faithful baseline).
- `static`:   a fixed partition by target share, kept full, no feedback.
- `oracle`:   an upper bound that knows the future (not cycle-driven).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vacagent.sim import run
from vacagent.sim.scenario import Scenario
from vacagent.sim.trace import Trace

REGISTRY = {
    "vacagent": "vacagent.sim.policies.vacagent",
    "vcycle": "vacagent.sim.policies.vcycle",
    "static": "vacagent.sim.policies.static",
    "oracle": "vacagent.sim.policies.oracle",
}


class Policy(Protocol):
    name: str
    summary: str

    def run(self, scenario: Scenario, workdir: Path) -> Trace: ...


@dataclass(frozen=True)
class CyclePolicy:
    name: str
    summary: str
    planner: run.PlannerFactory  # (scenario, space) -> decision function, one per space

    def run(self, scenario: Scenario, workdir: Path) -> Trace:
        return run.run_cycles(scenario, self.name, self.planner, workdir)


def get(name: str) -> Policy:
    try:
        module = REGISTRY[name]
    except KeyError:
        raise KeyError(f"no policy {name!r} (known: {', '.join(REGISTRY)})") from None
    return importlib.import_module(module).POLICY
