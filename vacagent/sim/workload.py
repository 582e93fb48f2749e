"""Job arrivals of one project: the workload items of a scenario -> jobs.

Items (see docs/scenarios.md):

- `steady`: a Poisson stream, `jobs_per_hour` between `start` and `end`;
- `burst`:  `jobs` jobs at `at`, evenly spread over `over`;
- `jobs`:   inline `[arrival_seconds, processors, duration_seconds]` rows;
- `csv`:    the same rows from a CSV file;
- `swf`:    a slice of a Standard Workload Format trace (`swf`).

Empty periods are simply times no item covers.  Random items draw from a
`random.Random` seeded by the scenario seed, the project and the item's
position, so editing one item never changes another's jobs.

Used by `scenario` at load time, so that a bad CSV row is reported with the
scenario; the jobs feed `lab` (every cycle-driven policy) and the oracle.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple

from vacagent.sim import swf
from vacagent.sim.distributions import Distribution, seconds

MIN_JOB_SECONDS = 1.0


class Job(NamedTuple):
    arrival: float  # seconds from the start of the simulation
    project: str
    processors: int
    duration: float


class WorkloadError(ValueError):
    """A workload item that cannot give jobs; the message names where."""


def generate(
    item: Mapping[str, Any], project: str, processors: int, horizon: float, base: Path, rng: random.Random
) -> Iterator[Job]:
    """The jobs of one item that arrive before `horizon`."""
    kind = item["kind"]
    if kind == "steady":
        yield from _steady(item, project, processors, horizon, rng)
    elif kind == "burst":
        yield from _burst(item, project, processors, horizon, rng)
    elif kind == "jobs":
        for arrival, width, duration in item["jobs"]:
            if arrival < horizon:
                yield Job(float(arrival), project, width, float(duration))
    elif kind == "csv":
        yield from _csv(base / item["file"], project, seconds(item.get("offset", 0)), horizon)
    else:
        yield from _swf(item, base, project, horizon)


def _steady(item, project, processors, horizon, rng) -> Iterator[Job]:
    start = seconds(item.get("start", 0))
    end = min(seconds(item["end"]) if "end" in item else horizon, horizon)
    rate = item["jobs_per_hour"] / 3600.0
    durations = Distribution.parse(item["duration"])
    width = item.get("processors", processors)
    t = start + rng.expovariate(rate)
    while t < end:
        yield Job(t, project, width, max(MIN_JOB_SECONDS, durations.sample(rng)))
        t += rng.expovariate(rate)


def _burst(item, project, processors, horizon, rng) -> Iterator[Job]:
    at, over, count = seconds(item["at"]), seconds(item.get("over", 0)), item["jobs"]
    durations = Distribution.parse(item["duration"])
    width = item.get("processors", processors)
    for i in range(count):
        t = at + over * i / count
        if t < horizon:
            yield Job(t, project, width, max(MIN_JOB_SECONDS, durations.sample(rng)))


def _csv(path: Path, project: str, offset: float, horizon: float) -> Iterator[Job]:
    try:
        f = open(path, newline="")
    except OSError as e:
        raise WorkloadError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        for number, row in enumerate(csv.reader(f), 1):
            if not row or row[0].lstrip().startswith("#"):
                continue
            try:
                arrival, width, duration = float(row[0]), int(row[1]), float(row[2])
            except (ValueError, IndexError):
                if number == 1 and not _number(row[0]):
                    continue  # a header line
                raise WorkloadError(
                    f"{path}:{number}: want arrival_seconds,processors,duration_seconds, got {','.join(row)!r}"
                ) from None
            if arrival < 0 or width < 1 or duration <= 0:
                raise WorkloadError(f"{path}:{number}: arrival must be >= 0, processors >= 1, duration > 0")
            if arrival + offset < horizon:
                yield Job(arrival + offset, project, width, duration)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _swf(item, base: Path, project: str, horizon: float) -> Iterator[Job]:
    path = base / item["file"]
    if not path.is_file():
        raise WorkloadError(f"{path}: no such trace file")
    groups = set(item["groups"]) if "groups" in item else None
    offset = seconds(item.get("offset", 0))
    try:
        for at, width, duration in swf.jobs(path, groups, seconds(item.get("from", 0)), seconds(item["to"])):
            if at + offset < horizon:
                yield Job(at + offset, project, width, duration)
    except swf.TraceError as e:
        raise WorkloadError(str(e)) from None
