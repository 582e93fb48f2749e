"""A scenario file -> a frozen `Scenario`: the lab, its projects and their jobs, its incidents.

The file is JSON, checked against `scenario.schema.json` (reference:
docs/scenarios.md); then the checks a schema cannot make (names that must
exist, jobs that must fit their project's machines, machinetype keys) run
here.  Every problem is reported as `FILE: KEY: reason`, all at once.

A scenario is named by a path, or by the name of one shipped with the
package (`vacagent simulate --list`).  The jobs are generated at load time
from the seed, so every policy of one run sees exactly the same jobs.
Neighbours: `workload` (items -> jobs), `lab` and `policies` (use it).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from vacagent import definitions
from vacagent.errors import ConfigError
from vacagent.schema import violations
from vacagent.sim import workload
from vacagent.sim.distributions import Distribution, seconds
from vacagent.sim.workload import Job

DEFAULT_START = "2030-01-07T00:00:00Z"
DEFAULT_BROKEN_MESSAGE = "500 Broken image: the job agent cannot start"
SHIPPED = resources.files("vacagent.sim") / "scenarios"


class ScenarioError(ConfigError):
    """A scenario that cannot be run: the message names file, key and reason."""


def schema() -> dict[str, Any]:
    return json.loads((resources.files("vacagent.sim") / "scenario.schema.json").read_text())


@dataclass(frozen=True)
class SpaceSpec:
    name: str
    processors: int
    boot: Distribution
    delete_seconds: float = 0.0
    boot_failure_probability: float = 0.0
    page_size: int = 500
    max_machines: int | None = None
    creation_budget_processors: int | None = None
    max_starting_seconds: int = 3600


@dataclass(frozen=True)
class ProjectSpec:
    name: str
    target_share: float
    processors: int
    idle_seconds: float
    machinetype: Mapping[str, Any]  # the machinetype's keys, without user_data (the simulator adds it)
    reports: frozenset[str] = frozenset({"jobs_started"})  # joboutputs its machines write (sim.reports)
    demand_until: float = float("inf")  # its demand reports stop then


@dataclass(frozen=True)
class Incident:
    kind: str  # api_errors, boot_failures, capacity_loss, broken_image
    start: float
    end: float
    space: str | None = None  # None: every space
    project: str | None = None
    probability: float = 1.0
    processors: int = 0
    mode: str = "stops"
    after_seconds: float = 60.0
    message: str = DEFAULT_BROKEN_MESSAGE

    def active(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: str
    seed: int
    duration: float
    cycle_seconds: float
    start_epoch: float
    spaces: tuple[SpaceSpec, ...]
    projects: tuple[ProjectSpec, ...]
    incidents: tuple[Incident, ...] = ()
    jobs: tuple[Job, ...] = field(default=(), repr=False)  # sorted by arrival

    @property
    def processors(self) -> int:
        return sum(s.processors for s in self.spaces)


def shipped() -> dict[str, str]:
    """Name -> description of the scenarios shipped with vacagent."""
    out = {}
    for entry in sorted(SHIPPED.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            out[entry.name.removesuffix(".json")] = json.loads(entry.read_text()).get("description", "")
    return out


def locate(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = SHIPPED / f"{name_or_path.removesuffix('.json')}.json"
    if "/" not in name_or_path and candidate.is_file():
        return Path(str(candidate))
    known = ", ".join(shipped())
    raise ScenarioError(f"{name_or_path}: no such file, nor a shipped scenario (shipped: {known})")


def load(name_or_path: str, seed: int | None = None) -> Scenario:
    path = locate(name_or_path)
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
    except ValueError as e:
        raise ScenarioError(f"{path}: not valid JSON: {e}") from None
    problems = [f"{path}: {key}: {reason}" for key, reason in violations(raw, schema())]
    if problems:
        raise ScenarioError("\n".join(problems))
    return _build(raw, path, seed)


def _build(raw: dict[str, Any], path: Path, seed: int | None) -> Scenario:
    problems: list[str] = []

    def problem(key: str, reason: str) -> None:
        problems.append(f"{path}: {key}: {reason}")

    duration = seconds(raw["duration"])
    if duration <= 0:
        problem("duration", "must be more than 0")
    spaces = tuple(_space(s) for s in raw["spaces"])
    projects = tuple(_project(p, raw.get("machinetype", {}), path, i, problem) for i, p in enumerate(raw["projects"]))
    for key, names in (("spaces", [s.name for s in spaces]), ("projects", [p.name for p in projects])):
        for name in {n for n in names if names.count(n) > 1}:
            problem(key, f"name {name!r} is used twice")
    incidents = tuple(_incident(x, duration, spaces, projects, i, problem)
                      for i, x in enumerate(raw.get("incidents", [])))

    seed = raw.get("seed", 1) if seed is None else seed
    jobs: list[Job] = []
    for i, (spec, project) in enumerate(zip(raw["projects"], projects)):
        for j, item in enumerate(spec.get("workload", [])):
            key = f"projects.{i}.workload.{j}"
            rng = random.Random(f"{seed}:{project.name}:{j}")
            try:
                new = list(workload.generate(item, project.name, project.processors, duration, path.parent, rng))
            except workload.WorkloadError as e:
                problem(key, str(e))
                continue
            wide = next((job for job in new if job.processors > project.processors), None)
            if wide is not None:
                problem(key, f"a job at {wide.arrival:.0f}s needs {wide.processors} processors; "
                             f"the project's machines have {project.processors} (projects.{i}.processors)")
            wallclock = project.machinetype.get("max_wallclock_seconds", 86400)
            long = [job for job in new if job.duration > wallclock]
            if long:
                problem(key, f"{len(long)} job(s) last longer than the machines' max_wallclock_seconds "
                             f"({wallclock}s), the first at {long[0].arrival:.0f}s ({long[0].duration:.0f}s): "
                             "no machine could run them (cap the durations with \"max\", or raise "
                             "max_wallclock_seconds)")
            jobs.extend(new)
    if problems:
        raise ScenarioError("\n".join(problems))
    start = datetime.fromisoformat(raw.get("start_time", DEFAULT_START).replace("Z", "+00:00"))
    return Scenario(
        name=raw.get("name", path.name.removesuffix(".json")),
        description=raw.get("description", ""),
        source=str(path),
        seed=seed,
        duration=duration,
        cycle_seconds=float(raw.get("cycle_seconds", 60)),
        start_epoch=start.replace(tzinfo=start.tzinfo or timezone.utc).timestamp(),
        spaces=spaces,
        projects=projects,
        incidents=incidents,
        jobs=tuple(sorted(jobs, key=lambda job: (job.arrival, job.project))),
    )


def _space(raw: Mapping[str, Any]) -> SpaceSpec:
    return SpaceSpec(
        name=raw["name"],
        processors=raw["processors"],
        boot=Distribution.parse(raw.get("boot_seconds", 120)),
        delete_seconds=seconds(raw.get("delete_seconds", 0)),
        boot_failure_probability=raw.get("boot_failure_probability", 0.0),
        page_size=raw.get("page_size", 500),
        max_machines=raw.get("max_machines"),
        creation_budget_processors=raw.get("creation_budget_processors"),
        max_starting_seconds=round(seconds(raw.get("max_starting_seconds", 3600))),
    )


def _project(raw: Mapping[str, Any], defaults: Mapping[str, Any], path: Path, i: int, problem) -> ProjectSpec:
    name = raw["name"]
    keys = {**defaults, **raw.get("machinetype", {})}
    for reserved in ("processors", "target_share", "user_data"):
        if reserved in keys:
            where = f"projects.{i}.machinetype" if reserved in raw.get("machinetype", {}) else "machinetype"
            problem(f"{where}.{reserved}", "set by the simulator (use the project's own key, if any)")
    mt = {**keys, "processors": raw.get("processors", 1), "target_share": raw.get("target_share", 1.0)}
    try:
        definitions.build(name, {**mt, "user_data": "simulated"}, {k: f"{path}: projects.{i}" for k in mt})
    except ConfigError as e:
        problem(f"projects.{i}.machinetype", str(e))
    return ProjectSpec(
        name=name,
        target_share=float(mt["target_share"]),
        processors=mt["processors"],
        idle_seconds=seconds(raw.get("idle_seconds", 300)),
        machinetype=mt,
        reports=frozenset(raw.get("reports", ["jobs_started"])),
        demand_until=seconds(raw["demand_until"]) if "demand_until" in raw else float("inf"),
    )


def _incident(raw, duration, spaces, projects, i, problem) -> Incident:
    key = f"incidents.{i}"
    start, end = seconds(raw.get("start", 0)), seconds(raw.get("end", duration))
    if end <= start:
        problem(f"{key}.end", f"must be after start ({start:.0f}s)")
    if "space" in raw and raw["space"] not in {s.name for s in spaces}:
        problem(f"{key}.space", f"no space {raw['space']!r} in this scenario")
    if "project" in raw and raw["project"] not in {p.name for p in projects}:
        problem(f"{key}.project", f"no project {raw['project']!r} in this scenario")
    if raw["kind"] == "capacity_loss" and "space" not in raw and len(spaces) > 1:
        problem(f"{key}.space", "required when the scenario has several spaces")
    return Incident(
        kind=raw["kind"],
        start=start,
        end=end,
        space=raw.get("space") or (spaces[0].name if raw["kind"] == "capacity_loss" else None),
        project=raw.get("project"),
        probability=raw.get("probability", 1.0),
        processors=raw.get("processors", 0),
        mode=raw.get("mode", "stops"),
        after_seconds=seconds(raw.get("after_seconds", 60)),
        message=raw.get("message", DEFAULT_BROKEN_MESSAGE),
    )
