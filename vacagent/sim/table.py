"""A run's figures for people (a table) and for scripts (JSON).

The table has one line per policy, then one per policy and project; the
JSON carries the same figures unrounded, with the scenario's parameters.
Definitions of every figure: `metrics`.
"""

from __future__ import annotations

from typing import Any, Iterable

from vacagent.sim.distributions import span
from vacagent.sim.metrics import Figures
from vacagent.sim.simulate import Result


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _time(x: float | None) -> str:
    return "-" if x is None else span(x)


def _hours(x: float) -> str:
    return f"{x / 3600:,.0f} p-h"


def _rows(header: list[str], rows: list[list[str]]) -> Iterable[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:  # names left, figures right
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    yield line(header)
    for r in rows:
        yield line(r)


def describe(result: Result) -> str:
    s = result.scenario
    spaces = ", ".join(f"{sp.name} {sp.processors} processors (boot {sp.boot})" for sp in s.spaces)
    return (f"scenario {s.name}: {len(s.projects)} project(s), {len(s.jobs):,} jobs, {spaces}; "
            f"{span(s.duration)} simulated, cycle {s.cycle_seconds:g}s, seed {s.seed}")


def lines(result: Result) -> Iterable[str]:
    yield describe(result)
    yield ""
    header = ["policy", "", "useful", "served", "wait mean", "wait p95", "fizzle waste", "share acc",
              "API calls", "machines", "CPU"]
    rows = []
    for name in result.policies:
        f: Figures = result.figures[name]["total"]
        rows.append([name, "", _pct(f.useful_fraction), _pct(f.served), _time(f.wait_mean), _time(f.wait_p95),
                     _hours(f.fizzle_waste), "-" if f.share_accuracy is None else f"{f.share_accuracy:.3f}",
                     f"{f.api_calls:,}", f"{f.machines:,}", f"{result.traces[name].cpu_seconds:.1f}s"])
    yield from _rows(header, rows)
    yield ""
    header = ["policy", "project", "useful", "served", "wait mean", "wait p95", "fizzle waste", "share/target",
              "jobs done", "machines"]
    rows = []
    for name in result.policies:
        for project, f in result.figures[name]["projects"].items():
            share = "-" if f.share is None else f"{100 * f.share:.0f}%/{100 * f.target_share:.0f}%"
            rows.append([name, project, _pct(f.useful_fraction), _pct(f.served), _time(f.wait_mean),
                         _time(f.wait_p95), _hours(f.fizzle_waste), share, f"{f.completed:,}/{f.jobs:,}",
                         f"{f.machines:,}"])
    yield from _rows(header, rows)
    failed = {n: result.figures[n]["total"].failed_cycles for n in result.policies}
    if any(failed.values()):
        yield ""
        yield "cycles that failed (listing refused): " + ", ".join(f"{n} {c}" for n, c in failed.items() if c)


def to_json(result: Result) -> dict[str, Any]:
    s = result.scenario
    return {
        "scenario": {
            "name": s.name, "source": s.source, "seed": s.seed, "duration_seconds": s.duration,
            "cycle_seconds": s.cycle_seconds, "jobs": len(s.jobs),
            "spaces": {sp.name: sp.processors for sp in s.spaces},
            "projects": {p.name: p.target_share for p in s.projects},
        },
        "policies": {
            name: {
                "total": result.figures[name]["total"].to_json(),
                "projects": {p: f.to_json() for p, f in result.figures[name]["projects"].items()},
                "cpu_seconds": round(result.traces[name].cpu_seconds, 3),  # what the run cost, not a figure
            }
            for name in result.policies
        },
    }
