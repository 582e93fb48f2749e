"""Run a cycle-driven policy on a scenario: the daemon's real cycle, on simulated time.

For each space of the scenario this builds what the daemon builds
(`cycle.build`: a state store in a real state directory, the actuator, the
definitions), with a `SimBackend` instead of a cloud and the policy's
decision function in place of `planner.plan`.  Then, every `cycle_seconds`
of simulated time: the lab plays the events up to now, a sample is taken,
the machines' joboutputs reports are written (`reports`), and
`cycle.run_once(space, now)` runs for every space: listing, reconcile,
feedback, the decision, the actuator writing intent before each backend call,
the decision record.  Nothing sleeps; a fake clock carries the time.

A cycle whose listing fails (an `api_errors` incident) fails as the
daemon's would; the run goes on.  Neighbours: `lab`, `backend`,
`policies` (each cycle-driven policy is a decision function for this).
"""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path
from typing import Callable

from vacagent import cycle, errors
from vacagent.clock import FakeClock
from vacagent.config import Settings, SpaceSettings
from vacagent.model import SpaceLimits
from vacagent.report import Reporter
from vacagent.sim.backend import SimBackend
from vacagent.sim import reports
from vacagent.sim.lab import Lab
from vacagent.sim.scenario import Scenario, SpaceSpec
from vacagent.sim.trace import Trace

USER_DATA = "#!/bin/sh\n# A simulated machine: its behaviour is vacagent/sim/lab.py.\n"

Decide = Callable[..., object]  # planner.plan's signature, returning a planner.Decision
PlannerFactory = Callable[[Scenario, SpaceSpec], Decide]


def _space_settings(scenario: Scenario, spec: SpaceSpec, user_data: Path) -> SpaceSettings:
    return SpaceSettings(
        name=spec.name,
        backend="sim",
        options={},
        limits=SpaceLimits(
            processors_limit=spec.processors,
            max_machines=spec.max_machines,
            creation_budget_processors=spec.creation_budget_processors,
            max_starting_seconds=spec.max_starting_seconds,
        ),
        machinetypes={p.name: {**p.machinetype, "user_data": str(user_data)} for p in scenario.projects},
        config_file=scenario.source,
    )


def run_cycles(scenario: Scenario, policy: str, planner: PlannerFactory, workdir: Path) -> Trace:
    """Run the whole scenario; `workdir` receives the state directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    user_data = workdir / "user_data"
    user_data.write_text(USER_DATA)
    settings = Settings(site="sim", state_dir=workdir / "state", spaces={}, cycle_seconds=scenario.cycle_seconds,
                        finished_retention_days=0)
    lab = Lab(scenario, random.Random(f"{scenario.seed}:lab"))
    clock = FakeClock(scenario.start_epoch)
    serial = itertools.count(1)
    spaces, backends = [], []
    for spec in scenario.spaces:
        backend = SimBackend(lab, spec.name, scenario.start_epoch)
        space = cycle.build(settings, _space_settings(scenario, spec, user_data), Reporter(), clock, backend=backend)
        space.decide = planner(scenario, spec)
        backend.machines_dir = space.store.machines_dir
        space.actuator.names = lambda machinetype: f"{machinetype}-{next(serial):06x}"
        space.actuator.manager_hostname = "simulator"
        spaces.append(space)
        backends.append(backend)

    stores = {space.name: space.store for space in spaces}
    failed = 0
    steps = int(-(-scenario.duration // scenario.cycle_seconds))
    for step in range(steps):
        t = step * scenario.cycle_seconds
        lab.advance(t)
        lab.sample()
        reports.publish(lab, stores, scenario.start_epoch)
        clock.advance(scenario.start_epoch + t - clock.now())
        for space in spaces:
            try:
                cycle.run_once(space, clock.now())
            except errors.Temporary:
                failed += 1  # the listing failed: the daemon would log it and try next cycle
            # Finished machines' directories matter to operators, not to the simulation.
            shutil.rmtree(space.store.finished_dir, ignore_errors=True)
    lab.advance(scenario.duration)
    api: dict[str, int] = {}
    for backend in backends:
        for kind, n in backend.counts.items():
            api[kind] = api.get(kind, 0) + n
    return lab.trace(policy, api, failed)
