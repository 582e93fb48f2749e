"""The simulated lab: a cloud of spaces, the projects' job queues, and machines
that behave as vacuum machines do.

A machine boots (after a delay drawn from its space's distribution, or never,
or into the cloud's ERROR state), then takes jobs one at a time from its
project's queue, first come first served.  With no job to take it waits
`idle_seconds` and stops with `300 No more work available`; when the next job
would outlive its `max_wallclock_seconds` it stops with `200 Intended work
completed ok`.  A machine of a broken image stops soon after booting with its
`500 ...` message, or never boots.  Deleting a machine kills its job, which
goes back to the head of the queue.

Discrete events: `advance(t)` plays, in time order, every arrival, boot, job
end and idle timeout up to `t`.  The backend (`backend.SimBackend`) is this
lab seen through the Backend protocol; `run` advances the lab between cycles.
Times are seconds from the start of the simulation.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque

from vacagent.model import MachineState
from vacagent.sim.scenario import Incident, Scenario
from vacagent.sim.trace import MachineLife, Samples, Trace

NO_MORE_WORK = "300 No more work available"
WORK_DONE = "200 Intended work completed ok"

_BOOT, _JOB_DONE, _IDLE, _STOP, _GONE, _CAPACITY = range(6)


class SimMachine:
    __slots__ = ("life", "state", "job", "idle_token", "wallclock_end", "fails", "broken", "deleted", "version")

    def __init__(self, life: MachineLife, fails: bool, broken: Incident | None):
        self.life = life
        self.state = MachineState.STARTING
        self.job: int | None = None  # index of the job it runs
        self.idle_token = 0  # bumped whenever it stops waiting, so stale idle timeouts are ignored
        self.wallclock_end = 0.0
        self.fails = fails
        self.broken = broken
        self.deleted: float | None = None
        self.version = 0  # bumped at every change the cloud's listing shows


class Lab:
    def __init__(self, scenario: Scenario, rng: random.Random):
        self.scenario = scenario
        self.rng = rng
        self.now = 0.0
        self.jobs = scenario.jobs
        self._next_arrival = 0
        self._events: list[tuple[float, int, int, SimMachine | None, object]] = []
        self._seq = itertools.count()
        self.projects = {p.name: p for p in scenario.projects}
        self.wallclock = {p.name: float(p.machinetype.get("max_wallclock_seconds", 86400)) for p in scenario.projects}
        self.spaces = {s.name: s for s in scenario.spaces}
        self.queues: dict[str, deque[int]] = {p: deque() for p in self.projects}
        self.idle: dict[str, dict[str, SimMachine]] = {p: {} for p in self.projects}  # oldest first
        self.live: dict[str, dict[str, SimMachine]] = {s: {} for s in self.spaces}  # listed by the cloud
        self.used = {s: 0 for s in self.spaces}  # processors held by listed machines
        self.every: list[SimMachine] = []
        self.job_start: list[float | None] = [None] * len(self.jobs)
        self.job_end: list[float | None] = [None] * len(self.jobs)
        self.lost = {p: 0.0 for p in self.projects}
        self.samples = Samples()
        # (machine, time) of each change of a machine's jobs_started since `sim.reports` last looked
        self.reported: list[tuple[SimMachine, float]] = []
        self._incidents = {kind: [i for i in scenario.incidents if i.kind == kind]
                           for kind in ("api_errors", "boot_failures", "capacity_loss", "broken_image")}
        for incident in self._incidents["capacity_loss"]:
            self._push(incident.start, _CAPACITY, None, incident)

    # -- time -------------------------------------------------------------

    def _push(self, t: float, kind: int, machine: SimMachine | None, arg: object = None) -> None:
        heapq.heappush(self._events, (t, next(self._seq), kind, machine, arg))

    def advance(self, until: float) -> None:
        """Play every event up to and including `until`."""
        events, jobs = self._events, self.jobs
        while True:
            t_event = events[0][0] if events else float("inf")
            t_job = jobs[self._next_arrival].arrival if self._next_arrival < len(jobs) else float("inf")
            if min(t_event, t_job) > until:
                break
            if t_job <= t_event:
                self.now = t_job
                self._arrive(self._next_arrival)
                self._next_arrival += 1
                continue
            t, _, kind, machine, arg = heapq.heappop(events)
            self.now = t
            self._handle(kind, machine, arg)
        self.now = until

    def _handle(self, kind: int, m: SimMachine | None, arg: object) -> None:
        if kind == _CAPACITY:
            self._lose_capacity(arg)  # type: ignore[arg-type]
        elif kind == _GONE:
            self._gone(m)
        elif m.deleted is not None:
            return  # the machine is being deleted: it does nothing more
        elif kind == _BOOT:
            self._boot(m)
        elif kind == _JOB_DONE:
            if m.job == arg:
                self.job_end[arg] = self.now
                m.life.end_job(self.now)
                m.job = None
                self._take_work(m)
        elif kind == _IDLE:
            if m.idle_token == arg and self.idle[m.life.project].pop(m.life.name, None) is not None:
                self._stop(m, NO_MORE_WORK)
        elif kind == _STOP and m.state is MachineState.RUNNING:
            self._stop(m, arg)  # type: ignore[arg-type]

    # -- incidents --------------------------------------------------------

    def _active(self, kind: str, space: str | None = None, project: str | None = None) -> list[Incident]:
        return [i for i in self._incidents[kind] if i.active(self.now)
                and (i.space is None or i.space == space) and (i.project is None or i.project == project)]

    def api_fails(self, space: str) -> bool:
        p = max((i.probability for i in self._active("api_errors", space)), default=0.0)
        return p > 0 and self.rng.random() < p

    def capacity(self, space: str) -> int:
        return min((i.processors for i in self._active("capacity_loss", space)), default=self.spaces[space].processors)

    def _lose_capacity(self, incident: Incident) -> None:
        """Hosts went away: the newest machines beyond the remaining capacity fail."""
        alive = [m for m in self.live[incident.space].values() if m.state is not MachineState.FAILED]
        held = sum(m.life.processors for m in alive)
        for m in sorted(reversed(alive), key=lambda m: m.life.created, reverse=True):  # newest first
            if held <= incident.processors:
                break
            held -= m.life.processors
            self._kill_job(m)
            self.idle[m.life.project].pop(m.life.name, None)
            m.state = MachineState.FAILED
            m.life.stopped = self.now
            m.version += 1

    # -- what the backend asks --------------------------------------------

    def create(self, space: str, name: str, project: str, processors: int) -> SimMachine:
        spec = self.spaces[space]
        p_fail = max([spec.boot_failure_probability] + [i.probability for i in self._active("boot_failures", space)])
        broken = next(iter(self._active("broken_image", project=project)), None)
        m = SimMachine(MachineLife(name, project, space, processors, self.now),
                       fails=p_fail > 0 and self.rng.random() < p_fail, broken=broken)
        self.every.append(m)
        self.live[space][name] = m
        self.used[space] += processors
        if broken is None or broken.mode != "never_boots":
            self._push(self.now + spec.boot.sample(self.rng), _BOOT, m)
        return m

    def delete(self, m: SimMachine) -> None:
        if m.deleted is not None:
            return
        m.deleted = self.now
        m.version += 1
        self._kill_job(m)
        self.idle[m.life.project].pop(m.life.name, None)
        if m.life.stopped is None:
            m.life.stopped = self.now
        delay = self.spaces[m.life.space].delete_seconds
        if delay > 0:
            self._push(self.now + delay, _GONE, m)
        else:
            self._gone(m)

    # -- machine behaviour ------------------------------------------------

    def _boot(self, m: SimMachine) -> None:
        m.version += 1
        if m.fails:
            m.state = MachineState.FAILED
            m.life.stopped = self.now
            return
        m.state = MachineState.RUNNING
        m.life.started = self.now
        self.reported.append((m, self.now))
        m.wallclock_end = self.now + self.wallclock[m.life.project]
        if m.broken is not None:
            self._push(self.now + m.broken.after_seconds, _STOP, m, m.broken.message)
        else:
            self._take_work(m)

    def _take_work(self, m: SimMachine) -> None:
        project = m.life.project
        queue = self.queues[project]
        if not queue:
            m.idle_token += 1
            self.idle[project][m.life.name] = m
            self._push(self.now + self.projects[project].idle_seconds, _IDLE, m, m.idle_token)
            return
        j = queue[0]
        if self.now + self.jobs[j].duration > m.wallclock_end:
            self._stop(m, WORK_DONE)
            return
        queue.popleft()
        m.job = j
        m.life.jobs_started += 1
        self.reported.append((m, self.now))
        m.life.start_job(self.now, self.jobs[j].processors / m.life.processors)
        self.job_start[j] = self.now
        self._push(self.now + self.jobs[j].duration, _JOB_DONE, m, j)

    def _arrive(self, j: int) -> None:
        project = self.jobs[j].project
        self.queues[project].append(j)
        self._dispatch(project)

    def _dispatch(self, project: str) -> None:
        idle, queue = self.idle[project], self.queues[project]
        while queue and idle:
            m = idle.pop(next(iter(idle)))
            m.idle_token += 1
            self._take_work(m)

    def _stop(self, m: SimMachine, message: str) -> None:
        m.state = MachineState.STOPPED
        m.life.stopped = self.now
        m.life.message = message
        m.version += 1
        self.idle[m.life.project].pop(m.life.name, None)

    def _kill_job(self, m: SimMachine) -> None:
        j = m.job
        if j is None:
            return
        m.job = None
        m.life.end_job(self.now)
        job = self.jobs[j]
        self.lost[job.project] += job.processors * (self.now - self.job_start[j])
        self.job_start[j] = None
        self.queues[job.project].appendleft(j)
        self._dispatch(job.project)

    def _gone(self, m: SimMachine) -> None:
        if self.live[m.life.space].pop(m.life.name, None) is not None:
            m.life.gone = self.now
            self.used[m.life.space] -= m.life.processors

    # -- observation -------------------------------------------------------

    def sample(self) -> None:
        counts = {p: {} for p in self.projects}
        processors = dict.fromkeys(self.projects, 0)
        for machines in self.live.values():
            for m in machines.values():
                project = m.life.project
                if m.deleted is not None or m.state in (MachineState.STOPPED, MachineState.FAILED):
                    state = "stopped"
                elif m.state is MachineState.STARTING:
                    state = "starting"
                else:
                    state = "idle" if m.job is None else "busy"
                by_state = counts[project]
                by_state[state] = by_state.get(state, 0) + 1
                processors[project] += m.life.processors
        self.samples.add(self.now, counts, processors, {p: len(q) for p, q in self.queues.items()})

    def trace(self, policy: str, api: dict[str, int], failed_cycles: int) -> Trace:
        return Trace(
            policy=policy,
            horizon=self.scenario.duration,
            machines=[m.life for m in self.every],
            job_start=self.job_start,
            job_end=self.job_end,
            lost=self.lost,
            samples=self.samples,
            api=api,
            failed_cycles=failed_cycles,
        )
