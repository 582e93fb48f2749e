"""The `oracle`: what a clairvoyant lab could do with the same capacity. An upper bound.

It knows every arrival and never guesses, so it is computed, not simulated
through the cycle.  Its rules:

- Capacity is one pool: the processors of every space (less any
  `capacity_loss` while it lasts; machines it already holds are not killed).
  Each job runs on a machine of its project's size, one job at a time, as
  in the lab.  A machine holds its processors from its boot to its deletion.
- For each job, a machine is found B before the job arrives, B being the
  smallest mean boot delay of the spaces: a machine of its project whose
  current job ends before the arrival (the one ending last, so that it
  idles least; at most B), else a new one, booted at once if the pool has
  room, so that it is ready exactly at arrival.  Otherwise the job waits,
  and waiting jobs are served earliest first as room appears (first fit: a
  project whose machines do not fit does not block others), by a machine
  of their project that ends its job, else by a new machine.  No machine of
  a broken image is booted while the image is broken.
- A machine with no job to take when its job ends is deleted at once.
- No fizzles, idle_seconds, boot failures, API errors or backoff.

So it bounds from above the work a policy can do with the lab and the
useful-time fraction it can reach.  It is a greedy schedule, not a proven
optimum: first come, first served is not the order that minimises mean
wait, and preferring a project's own waiting job (to save a boot) is not
fair share.  Its API calls are its creates and deletes; it lists nothing.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from pathlib import Path

from vacagent.sim.lab import WORK_DONE
from vacagent.sim.scenario import Scenario
from vacagent.sim.trace import STATES, MachineLife, Samples, Trace


class Oracle:
    name = "oracle"
    summary = "clairvoyant upper bound: a machine booted ahead for each job, kept for the next, no waste"

    def run(self, scenario: Scenario, workdir: Path) -> Trace:
        return schedule(scenario)


POLICY = Oracle()


def _capacity(scenario: Scenario, t: float) -> int:
    total = 0
    for space in scenario.spaces:
        losses = [i.processors for i in scenario.incidents
                  if i.kind == "capacity_loss" and i.space == space.name and i.active(t)]
        total += min(losses, default=space.processors)
    return total


def schedule(scenario: Scenario) -> Trace:
    jobs, horizon = scenario.jobs, scenario.duration
    boot = min(space.boot.mean for space in scenario.spaces)
    size = {p.name: p.processors for p in scenario.projects}
    broken = [(i.project, i.start, i.end) for i in scenario.incidents if i.kind == "broken_image"]
    wakeups = sorted({t for _, _, t in broken}
                     | {t for i in scenario.incidents if i.kind == "capacity_loss" for t in (i.start, i.end)})
    waiting: dict[str, deque[int]] = {p: deque() for p in size}  # jobs with no machine yet
    free_at: dict[str, list[tuple[float, int]]] = {p: [] for p in size}  # running, not yet promised: (end, id)
    machines: dict[int, MachineLife] = {}
    promised: dict[int, int] = {}  # machine id -> the job it takes next
    ends: list[tuple[float, int, int]] = []  # (job end, job, machine id)
    job_start: list[float | None] = [None] * len(jobs)
    job_end: list[float | None] = [None] * len(jobs)
    lives: list[MachineLife] = []
    held = 0  # processors held by machines
    asked = 0  # jobs looked after so far, in arrival order

    def run(j: int, mid: int, start: float) -> None:
        if start < horizon:
            job_start[j] = start
        machines[mid].jobs_started += 1
        end = start + jobs[j].duration
        heapq.heappush(ends, (end, j, mid))
        bisect.insort(free_at[jobs[j].project], (end, mid))

    def boot_for(j: int, t: float) -> None:
        nonlocal held
        project = jobs[j].project
        machine = MachineLife(f"{project}-{len(lives) + 1:06x}", project, "pool", size[project], t, started=t + boot)
        lives.append(machine)
        machines[len(lives)] = machine
        held += size[project]
        run(j, len(lives), max(jobs[j].arrival, t + boot))

    def serve(t: float) -> None:
        while True:
            room = _capacity(scenario, t) - held
            ready = [p for p, q in waiting.items() if q and size[p] <= room
                     and not any(p == b and start <= t < end for b, start, end in broken)]
            if not ready:
                return
            project = min(ready, key=lambda p: (jobs[waiting[p][0]].arrival, p))
            boot_for(waiting[project].popleft(), t)

    while True:
        t_ask = max(0.0, jobs[asked].arrival - boot) if asked < len(jobs) else float("inf")
        t_end = ends[0][0] if ends else float("inf")
        t = min(t_ask, t_end, wakeups[0] if wakeups else float("inf"))
        if t > horizon:
            break
        while ends and ends[0][0] == t:
            _, j, mid = heapq.heappop(ends)
            job_end[j] = t
            machine = machines[mid]
            machine.job_seconds += jobs[j].duration * jobs[j].processors / machine.processors
            if mid in promised:
                following = promised.pop(mid)
                run(following, mid, max(t, jobs[following].arrival))
                continue
            free_at[machine.project].remove((t, mid))
            if waiting[machine.project]:
                following = waiting[machine.project].popleft()
                run(following, mid, max(t, jobs[following].arrival))
            else:
                machine.stopped = machine.gone = t
                machine.message = WORK_DONE
                held -= machine.processors
        while asked < len(jobs) and max(0.0, jobs[asked].arrival - boot) == t:
            j, asked = asked, asked + 1
            ending = free_at[jobs[j].project]
            k = bisect.bisect_right(ending, (jobs[j].arrival, float("inf"))) - 1
            if k >= 0:  # a machine of its project ends its job before this one arrives: promise it
                promised[ending.pop(k)[1]] = j
            else:
                waiting[jobs[j].project].append(j)
        while wakeups and wakeups[0] <= t:
            wakeups.pop(0)
        if t < horizon:  # a machine booted at the very end would do nothing in the window
            serve(t)

    for _, j, mid in ends:  # running at the end of the window
        if job_start[j] is not None:
            machines[mid].start_job(job_start[j], jobs[j].processors / machines[mid].processors)
    samples = _samples(scenario, lives, job_start, job_end)
    deleted = sum(1 for m in lives if m.gone is not None)
    return Trace("oracle", horizon, lives, job_start, job_end, {p: 0.0 for p in size}, samples,
                 {"create": len(lives), "delete": deleted})


def _samples(scenario: Scenario, lives: list[MachineLife], job_start, job_end) -> Samples:
    """Machines per state and queue length at each cycle time, from the schedule's intervals."""
    step, horizon = scenario.cycle_seconds, scenario.duration
    count = int(-(-horizon // step))
    projects = [p.name for p in scenario.projects]
    delta = {p: {s: [0] * (count + 1) for s in (*STATES, "queued")} for p in projects}

    def add(project: str, state: str, a: float, b: float | None) -> None:
        first = max(0, int(-(-a // step)))  # the first sample time >= a
        last = count if b is None else min(count, int(-(-b // step)))  # the first sample time >= b
        if first < last:
            delta[project][state][first] += 1
            delta[project][state][last] -= 1

    for j, job in enumerate(scenario.jobs):
        add(job.project, "queued", job.arrival, job_start[j])
        if job_start[j] is not None:
            add(job.project, "busy", job_start[j], job_end[j])
    for m in lives:
        add(m.project, "starting", m.created, m.started)
        add(m.project, "idle", m.started, m.gone)  # minus busy below: what is left is kept-alive gaps
    samples = Samples()
    totals = {p: {s: 0 for s in delta[p]} for p in projects}
    sizes = {p.name: p.processors for p in scenario.projects}
    for k in range(count):
        counts, processors, queued = {}, {}, {}
        for p in projects:
            for s in delta[p]:
                totals[p][s] += delta[p][s][k]
            on = totals[p]
            counts[p] = {"busy": on["busy"], "idle": on["idle"] - on["busy"], "starting": on["starting"]}
            processors[p] = sizes[p] * (on["idle"] + on["starting"])
            queued[p] = on["queued"]
        samples.add(k * step, counts, processors, queued)
    return samples
