"""Run policies on one scenario and measure them: the simulator's entry point.

`simulate(scenario, policies)` runs each policy (the oracle always, since
demand served is measured against it), each in a state directory of its
own, and returns the traces and figures.  Policies are independent runs,
so they run in parallel worker processes (`jobs`, default one per CPU);
each draws from its own seeded generators, so the figures do not depend
on how many run at once.  The state directories are temporary (in /dev/shm
when there is one: the cycle writes and fsyncs many small files, which
costs nothing there; when it has less than 4 GB free, the usual temporary
directory) unless `keep` names a directory.

Used by `command` (`vacagent simulate`), the benchmarks and the tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vacagent.clock import cpu_seconds
from vacagent.sim import metrics, policies
from vacagent.sim.scenario import Scenario
from vacagent.sim.trace import Trace

ALL = tuple(policies.REGISTRY)
SCRATCH_BYTES = 4 * 2**30  # a 10,000-machine space holds about 1 GB of small files


@dataclass
class Result:
    scenario: Scenario
    policies: tuple[str, ...]  # those asked for, in order
    traces: dict[str, Trace]  # the oracle's included
    figures: dict[str, dict[str, Any]]  # policy -> metrics.figures(...)


def _scratch() -> str | None:
    """/dev/shm if it is there with room (containers often give it 64 MB), else the usual temporary directory."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= SCRATCH_BYTES
    return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK) else None


def _run(name: str, scenario: Scenario, workdir: Path) -> Trace:
    """One policy's run (in a worker process, or here)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    started = cpu_seconds()
    trace = policies.get(name).run(scenario, workdir)
    trace.cpu_seconds = cpu_seconds() - started
    return trace


def simulate(scenario: Scenario, names: tuple[str, ...] = ALL, keep: Path | None = None,
             progress=lambda name, trace: None, jobs: int | None = None) -> Result:
    for name in names:
        policies.get(name)  # unknown names fail before anything runs
    order = [n for n in names if n != "oracle"]
    root = keep or Path(tempfile.mkdtemp(prefix="vacagent-sim-", dir=_scratch()))
    traces: dict[str, Trace] = {}
    try:
        traces["oracle"] = _run("oracle", scenario, root / "oracle")  # computed, not simulated: instant
        workers = min(jobs or os.cpu_count() or 1, len(order))
        if workers <= 1:
            for name in order:
                traces[name] = _run(name, scenario, root / name)
                progress(name, traces[name])
        else:
            with ProcessPoolExecutor(workers) as pool:
                # The static partition usually makes the most machines (the longest run): start it first.
                first = sorted(order, key=lambda name: name != "static")
                futures = {name: pool.submit(_run, name, scenario, root / name) for name in first}
                for name in order:
                    traces[name] = futures[name].result()
                    progress(name, traces[name])
        if "oracle" in names:
            progress("oracle", traces["oracle"])
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    reference = metrics.figures(scenario, traces["oracle"])
    results = {name: metrics.figures(scenario, traces[name], reference) for name in names}
    return Result(scenario, tuple(names), traces, results)
