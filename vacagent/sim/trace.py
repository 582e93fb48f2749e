"""What one policy did in one run: machine lives, job starts and ends, samples over time.

Every policy produces a `Trace`, the cycle-driven ones from the simulated
`lab`, the oracle from its schedule; `metrics` computes every figure from
traces alone and `plot` draws them, so all policies are measured the same way.
Times are seconds from the start of the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Machine states in samples and plots, in stacking order.
STATES = ("busy", "idle", "starting", "stopped")


@dataclass(slots=True)
class MachineLife:
    name: str
    project: str
    space: str
    processors: int
    created: float
    started: float | None = None  # booted
    stopped: float | None = None  # stopped by itself, failed, or deleted
    gone: float | None = None  # no longer holds its processors (None: still there at the end)
    jobs_started: int = 0
    message: str | None = None  # its shutdown message, if it left one
    # What the machine would report as job_seconds (the ledger's working time): seconds of jobs ended
    # or killed, each weighted by the part of the machine's processors the job used...
    job_seconds: float = 0.0
    job_since: float | None = None  # ...plus the job running since then, if any
    job_weight: float = 1.0  # that job's part of the processors

    def start_job(self, t: float, weight: float) -> None:
        self.job_since, self.job_weight = t, weight

    def end_job(self, t: float) -> None:
        if self.job_since is not None:
            self.job_seconds += (t - self.job_since) * self.job_weight
            self.job_since = None

    def job_seconds_at(self, t: float) -> float:
        running = (t - self.job_since) * self.job_weight if self.job_since is not None and t > self.job_since else 0.0
        return self.job_seconds + running


@dataclass
class Samples:
    """Taken once a cycle, before the policy acts."""

    times: list[float] = field(default_factory=list)
    machines: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # project -> state -> counts
    processors: dict[str, list[int]] = field(default_factory=dict)  # project -> processors held
    queued: dict[str, list[int]] = field(default_factory=dict)  # project -> jobs waiting

    def add(self, t: float, counts: dict[str, dict[str, int]], processors: dict[str, int],
            queued: dict[str, int]) -> None:
        self.times.append(t)
        for project, by_state in counts.items():
            series = self.machines.setdefault(project, {s: [] for s in STATES})
            for state in STATES:
                series[state].append(by_state.get(state, 0))
            self.processors.setdefault(project, []).append(processors.get(project, 0))
            self.queued.setdefault(project, []).append(queued.get(project, 0))


@dataclass
class Trace:
    policy: str
    horizon: float
    machines: list[MachineLife]
    job_start: list[float | None]  # by index in Scenario.jobs; None: not running nor done at the end
    job_end: list[float | None]  # None: not finished by the end
    lost: dict[str, float]  # project -> processor-seconds of work on jobs killed with their machine
    samples: Samples
    api: dict[str, int]  # "list" (pages), "create", "delete", "failed" (requests that failed)
    failed_cycles: int = 0
    cpu_seconds: float = 0.0

    @property
    def api_calls(self) -> int:
        return self.api.get("list", 0) + self.api.get("create", 0) + self.api.get("delete", 0)
