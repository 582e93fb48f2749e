"""The simulated lab as a backend: the Backend protocol over one space of a `Lab`.

Like `backends.fake.FakeBackend` it counts requests (a listing costs one per
page of `page_size` machines) and fails as told; unlike it, what it lists
is the lab's machines, which boot, work and stop on their own in simulated
time.  A machine that stopped carries its shutdown message and stop time on
the listing (as a Kubernetes pod's termination message does), which the
cycle reads when joboutputs/ has none: simulated machines write no files.

Simulated machines report their job time as real ones do, in the joboutputs
file `job_seconds` (for the ledger), when the backend is given the state
store's machines directory: at every change the listing shows and whenever
a job ended, so a machine's last report lags its running job, as a real
reporter's does between two reports.

Errors are those of `errors`: `Temporary` while an `api_errors` incident
lasts, `CapacityExhausted` when the space (or what a `capacity_loss` left of
it) is full.  Neighbours: `lab` (the world), `run` (builds one per space).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from vacagent.backends.base import CreateRequest
from vacagent.errors import CapacityExhausted, Temporary
from vacagent.model import Machine, MachineState
from vacagent.sim.lab import Lab, SimMachine


class SimBackend:
    def __init__(self, lab: Lab, space: str, epoch: float):
        self.lab = lab
        self.space = space
        self.epoch = epoch  # the cycle's clock is absolute; the lab counts from 0
        self.page_size = lab.spaces[space].page_size
        self.max_user_data_bytes = 1 << 20  # simulated machines run no user_data: any fits
        self.requests_made = 0
        self.counts: Counter[str] = Counter()  # list (pages), create, delete, failed
        self._listed: dict[str, tuple[int, Machine]] = {}  # name -> (version, translation): most do not change
        self.machines_dir: Path | None = None  # where the machines' joboutputs are; None: they report nothing
        self._reported: dict[str, tuple[int, float]] = {}  # name -> (version, completed job seconds) last reported

    def _request(self, kind: str) -> None:
        self.requests_made += 1
        self.counts[kind] += 1
        if self.lab.api_fails(self.space):
            self.counts["failed"] += 1
            raise Temporary(f"{kind} in space {self.space}: simulated API error")

    def _report(self, m: SimMachine) -> None:
        """Write the machine's job_seconds when what it would report changed."""
        if self.machines_dir is None or m.life.started is None:
            return
        key = (m.version, m.life.job_seconds)
        if self._reported.get(m.life.name) == key:
            return
        self._reported[m.life.name] = key
        joboutputs = os.path.join(self.machines_dir, m.life.name, "joboutputs")
        seconds = m.life.job_seconds_at(self.lab.now if m.life.stopped is None else m.life.stopped)
        try:
            with open(os.path.join(joboutputs, "job_seconds"), "w") as f:
                f.write(f"{int(seconds)}\n")
        except FileNotFoundError:
            pass  # its record is gone (closed): nobody reads it any more

    def _machine(self, m: SimMachine) -> Machine:
        self._report(m)
        cached = self._listed.get(m.life.name)
        if cached is not None and cached[0] == m.version:
            return cached[1]
        life = m.life
        state = MachineState.DELETING if m.deleted is not None else m.state
        ended = state in (MachineState.STOPPED, MachineState.FAILED)
        machine = Machine(
            name=life.name,
            machinetype=life.project,
            state=state,
            backend_id=f"sim-{life.name}",
            processors=life.processors,
            started_at=self.epoch + life.started if life.started is not None else None,
            stopped_at=self.epoch + life.stopped if ended and life.stopped is not None else None,
            message=life.message if ended else None,
        )
        self._listed[life.name] = (m.version, machine)
        return machine

    def list_machines(self) -> list[Machine]:
        live = self.lab.live[self.space]
        for _ in range(max(1, -(-len(live) // self.page_size))):
            self._request("list")
        for name in self._listed.keys() - live.keys():
            del self._listed[name]
            self._reported.pop(name, None)
        return [self._machine(m) for m in live.values()]

    def create_machine(self, request: CreateRequest) -> Machine:
        self._request("create")
        live = self.lab.live[self.space]
        if request.name in live:
            return self._machine(live[request.name])
        processors = request.machinetype.processors
        used, capacity = self.lab.used[self.space], self.lab.capacity(self.space)
        if used + processors > capacity:
            raise CapacityExhausted(
                f"creating machine {request.name}: space {self.space} is full ({used}/{capacity} processors)"
            )
        return self._machine(self.lab.create(self.space, request.name, request.machinetype.name, processors))

    def delete_machine(self, machine: Machine) -> None:
        self._request("delete")
        m = self.lab.live[self.space].get(machine.name)
        if m is not None:  # already gone counts as success
            self.lab.delete(m)
