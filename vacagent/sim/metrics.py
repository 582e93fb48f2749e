"""The figures of a run, per policy and per project, computed from traces alone.

All time is counted in processor-seconds within the simulated window
[0, duration]; machines and jobs still there at the end count up to it.

- the ledger (`vacagent.ledger`, docs/ledger.md), the very definition the
  daemon writes into its accounting: every machine's life from its create
  request until the cloud no longer holds it, cut into starting, working,
  idle, lost and draining, in processor-seconds.  A simulated machine
  reports its job time exactly (each job weighted by the part of the
  machine's processors it used); one deleted while running, or failed,
  ended without a 100/200/300 message, so its run counts as lost.
- provisioned: all the ledger's phases.
- useful: the ledger's working phase.
- useful fraction = useful / provisioned.
- demand served = useful / the oracle's useful (same jobs, same window).
- wait: start - arrival of every job that arrived; a job not started by the
  end counts the wait so far (so the figure is a lower bound, and a policy
  cannot look good by never starting jobs).  Mean and 95th percentile
  (nearest rank).
- fizzle waste: provisioned time of machines that never started a job.
- share: at the samples (one per cycle) where every project has jobs
  waiting, each project's part of the processors held, against its target
  share; share accuracy = 1 - (total variation distance), averaged.
- API calls: backend requests (listing pages + creates + deletes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vacagent import ledger
from vacagent.model import ShutdownMessage
from vacagent.sim.scenario import Scenario
from vacagent.sim.trace import MachineLife, Trace


@dataclass(frozen=True)
class Figures:
    provisioned: float  # processor-seconds
    useful: float  # processor-seconds
    demand: float  # processor-seconds of job time that arrived within the window (capped at the end)
    useful_fraction: float | None
    served: float | None  # vs the oracle
    jobs: int  # arrived
    started: int
    completed: int
    wait_mean: float | None
    wait_p95: float | None
    fizzle_waste: float  # processor-seconds
    machines: int
    share: float | None = None  # project: mean part of the processors while all projects wait
    target_share: float | None = None
    phases: dict[str, float] | None = None  # processor-seconds per ledger phase (provisioned, cut up)
    share_accuracy: float | None = None  # policy total only
    api_calls: int | None = None  # policy total only
    failed_cycles: int | None = None

    def to_json(self) -> dict[str, Any]:
        def rounded(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: rounded(x) for k, x in v.items()}
            return round(v, 6) if isinstance(v, float) else v

        return {k: rounded(v) for k, v in asdict(self).items()}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def life(m: MachineLife, horizon: float) -> ledger.Life:
    """A simulated machine as the ledger sees it, at the end of the window."""
    message = ShutdownMessage.parse(m.message) if m.message else None
    ran = m.stopped - m.started if m.stopped is not None and m.started is not None else None
    return ledger.Life(created=m.created, processors=m.processors, started=m.started, ran_seconds=ran,
                       end=m.gone, ended=m.stopped is not None, code=message.code if message else None,
                       job_seconds=m.job_seconds_at(horizon))


def phases(m: MachineLife, horizon: float) -> dict[str, float]:
    """Processor-seconds per phase of one machine within [0, horizon]."""
    cut = ledger.clip(ledger.spans(life(m, horizon), horizon), 0.0, horizon)
    return {phase: s * m.processors for phase, s in ledger.seconds(cut).items()}


def shares(scenario: Scenario, trace: Trace) -> tuple[dict[str, float | None], float | None]:
    """(mean part of processors per project, share accuracy) over samples where every project waits."""
    projects = [p.name for p in scenario.projects]
    total_share = sum(p.target_share for p in scenario.projects)
    if len(projects) < 2 or total_share <= 0:
        return dict.fromkeys(projects), None
    target = {p.name: p.target_share / total_share for p in scenario.projects}
    s = trace.samples
    parts = {p: 0.0 for p in projects}
    accuracy, n = 0.0, 0
    for k in range(len(s.times)):
        if not all(s.queued[p][k] > 0 for p in projects):
            continue
        held = sum(s.processors[p][k] for p in projects)
        if held == 0:
            continue
        n += 1
        actual = {p: s.processors[p][k] / held for p in projects}
        for p in projects:
            parts[p] += actual[p]
        accuracy += 1 - 0.5 * sum(abs(actual[p] - target[p]) for p in projects)
    if n == 0:
        return dict.fromkeys(projects), None
    return {p: parts[p] / n for p in projects}, accuracy / n


def figures(scenario: Scenario, trace: Trace, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"total": Figures, "projects": {name: Figures}} for one policy; `reference`
    is the oracle's figures, for demand served."""
    horizon = trace.horizon
    names = [p.name for p in scenario.projects]
    acc = {p: dict(phases=dict.fromkeys(ledger.PHASES, 0.0), demand=0.0, fizzle=0.0, machines=0, started=0,
                   completed=0, waits=[]) for p in [*names, "*"]}
    for m in trace.machines:
        cut = phases(m, horizon)
        held = sum(cut.values())
        for key in (m.project, "*"):
            ledger.add(acc[key]["phases"], cut)
            acc[key]["machines"] += 1
            if m.jobs_started == 0:
                acc[key]["fizzle"] += held
    for j, job in enumerate(scenario.jobs):
        start, end = trace.job_start[j], trace.job_end[j]
        for key in (job.project, "*"):
            a = acc[key]
            a["demand"] += job.processors * min(job.duration, horizon - job.arrival)
            a["waits"].append((start if start is not None else horizon) - job.arrival)
            if start is not None:
                a["started"] += 1
            if end is not None:
                a["completed"] += 1
    part, accuracy = shares(scenario, trace)
    total_share = sum(p.target_share for p in scenario.projects) or 1.0

    def build(key: str, **extra: Any) -> Figures:
        a = acc[key]
        provisioned, useful = sum(a["phases"].values()), a["phases"]["working"]
        served = None
        if reference is not None:
            ref = reference["total"] if key == "*" else reference["projects"][key]
            served = _ratio(useful, ref.useful)
        return Figures(
            provisioned=provisioned, useful=useful, demand=a["demand"],
            useful_fraction=ledger.fraction(a["phases"]), served=served, phases=a["phases"],
            jobs=len(a["waits"]), started=a["started"], completed=a["completed"],
            wait_mean=sum(a["waits"]) / len(a["waits"]) if a["waits"] else None, wait_p95=_p95(a["waits"]),
            fizzle_waste=a["fizzle"], machines=a["machines"], **extra,
        )

    return {
        "total": build("*", share_accuracy=accuracy, api_calls=trace.api_calls, failed_cycles=trace.failed_cycles),
        "projects": {p.name: build(p.name, share=part[p.name], target_share=p.target_share / total_share)
                     for p in scenario.projects},
    }
