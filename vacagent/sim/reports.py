"""What simulated machines report through joboutputs, written where the endpoint writes it.

A real machine sends `jobs_started` (0 when its job agent starts looking,
then the count of jobs started) and may send `demand` (its project's jobs
waiting) to the endpoint, which writes them into the machine's
`joboutputs/` stamped with its own clock (docs/machine-protocol.md).
Simulated machines run no reporter, so after the lab has played a cycle's
events `publish` writes the same files, stamped with the simulated time,
for the projects whose scenario entry lists them in `reports`.  The cycle
then reads them through `store.outputs`, as the daemon does.

Neighbours: `lab` (notes the machines whose count changed), `run` (calls
`publish` before each cycle).
"""

from __future__ import annotations

import os
from typing import Mapping

from vacagent.model import MachineState
from vacagent.sim.lab import Lab
from vacagent.state.store import DEMAND, JOBS_STARTED, SpaceStore


def _write(store: SpaceStore, machine: str, key: str, value: int, at: float) -> None:
    path = os.path.join(store.machine_dir(machine), "joboutputs", key)
    try:
        with open(path, "w") as f:
            f.write(f"{value}\n")
    except FileNotFoundError:
        return  # its record is already closed
    os.utime(path, (at, at))


def publish(lab: Lab, stores: Mapping[str, SpaceStore], epoch: float) -> None:
    """Write the reports of the machines that changed since the last call, and each project's demand."""
    latest = {}  # the last change of each machine, stamped with when it happened
    for m, t in lab.reported:
        latest[m.life.name] = (m, t)
    lab.reported.clear()
    for m, t in latest.values():
        life = m.life
        if m.deleted is None and "jobs_started" in lab.projects[life.project].reports:
            _write(stores[life.space], life.name, JOBS_STARTED, life.jobs_started, epoch + t)
    now = epoch + lab.now
    for name, project in lab.projects.items():
        if "demand" not in project.reports or lab.now >= project.demand_until:
            continue
        reporter = next((m for machines in lab.live.values() for m in machines.values()
                         if m.life.project == name and m.state is MachineState.RUNNING and m.deleted is None), None)
        if reporter is not None:
            _write(stores[reporter.life.space], reporter.life.name, DEMAND, len(lab.queues[name]), now)
