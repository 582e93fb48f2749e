#!/usr/bin/env python3
"""vacagent against Vcycle, seed by seed, on every figure at once, with the targets checked.

    python benchmarks/seeds.py                          # every shipped scenario, seeds 1-5
    python benchmarks/seeds.py --seeds 3 bursty steady  # fewer seeds, some scenarios
    python benchmarks/seeds.py --cache /tmp/vcycle      # keep (and reuse) the second policy's figures
    python benchmarks/seeds.py path/to/scenario.json    # a scenario file that is not shipped
    python benchmarks/seeds.py --demand                 # the projects also publish the demand hint

For each scenario and seed it runs both policies (and the oracle, which
demand served is measured against) on the same jobs and prints one
Markdown row: useful fraction, demand served, mean and p95 wait, fizzle
waste (processor-hours) and API calls of the first policy, each beside the
second's, the first's useful fraction as a part of the oracle's, and the
figures where a target of issue 12 is missed:

- useful fraction not lower; demand served not lower (within 0.2 points);
- mean and p95 wait not longer (within 1 minute or 5%, whichever is larger);
- fizzle waste and API calls not higher.

`--cache DIR` stores the second policy's figures per scenario and seed
(as JSON): the baseline does not change while the first policy is being
worked on, so it runs once.  The seed draws the jobs of random workload
items, boot delays and failures, and Vcycle's tie-breaks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from vacagent.sim import scenario as scenarios
from vacagent.sim.simulate import simulate

WAIT_SLACK_SECONDS = 60.0
WAIT_SLACK_PART = 0.05
SERVED_SLACK = 0.002


def misses(x: dict, y: dict) -> list[str]:
    """The targets the first policy's totals `x` miss against the second's `y`."""
    out = []
    if x["useful_fraction"] < y["useful_fraction"]:
        out.append("useful")
    if (x["served"] or 0) < (y["served"] or 0) - SERVED_SLACK:
        out.append("served")
    for key in ("wait_mean", "wait_p95"):
        slack = max(WAIT_SLACK_SECONDS, WAIT_SLACK_PART * (y[key] or 0))
        if (x[key] or 0) > (y[key] or 0) + slack:
            out.append(key.replace("wait_", "wait "))
    if x["fizzle_waste"] > y["fizzle_waste"]:
        out.append("fizzle")
    if x["api_calls"] > y["api_calls"]:
        out.append("API")
    return out


def minutes(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.1f}"


def with_demand(scenario):
    """The scenario with every project's machines also reporting `demand` (the demand hint)."""
    return replace(scenario, projects=tuple(replace(p, reports=p.reports | {"demand"}) for p in scenario.projects))


JOBS: int | None = None  # worker processes per simulation (--jobs); None: one per CPU


def run(name: str, seed: int, a: str, b: str, cache: Path | None, demand: bool = False) -> tuple[dict, dict, dict]:
    scenario = scenarios.load(name, seed)
    if demand:
        scenario = with_demand(scenario)  # Vcycle reads no report: its cached figures still hold
    cached = cache / f"{scenario.name}-{seed}-{b}.json" if cache else None
    if cached is not None and cached.is_file():
        saved = json.loads(cached.read_text())
        x = simulate(scenario, (a, "oracle"), jobs=JOBS).figures
        return x[a]["total"].to_json(), saved["total"], saved["oracle"]
    f = simulate(scenario, (a, b, "oracle"), jobs=JOBS).figures
    x, y, oracle = f[a]["total"].to_json(), f[b]["total"].to_json(), f["oracle"]["total"].to_json()
    if cached is not None:
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"total": y, "oracle": oracle}))
    return x, y, oracle


def header(a: str, b: str) -> None:
    print(f"{a} / {b} per seed: useful, served, wait mean and p95 (min), fizzle waste (processor-h), API calls")
    print()
    print("| scenario | seed | useful | served | wait mean | wait p95 | fizzle waste | API calls "
          "| useful ÷ oracle's | targets missed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")


def row(name: str, seed: int, a: str, b: str, cache: Path | None, label: str | None = None,
        demand: bool = False) -> dict:
    """Run one scenario and seed, print its Markdown row, return its figures."""
    x, y, oracle = run(name, seed, a, b, cache, demand)
    missed = misses(x, y)
    of_oracle = x["useful_fraction"] / oracle["useful_fraction"]
    print(
        f"| {label or name} | {seed} "
        f"| {100 * x['useful_fraction']:.1f} / {100 * y['useful_fraction']:.1f} "
        f"| {100 * (x['served'] or 0):.1f} / {100 * (y['served'] or 0):.1f} "
        f"| {minutes(x['wait_mean'])} / {minutes(y['wait_mean'])} "
        f"| {minutes(x['wait_p95'])} / {minutes(y['wait_p95'])} "
        f"| {x['fizzle_waste'] / 3600:,.0f} / {y['fizzle_waste'] / 3600:,.0f} "
        f"| {x['api_calls']:,} / {y['api_calls']:,} "
        f"| {of_oracle:.3f} | {', '.join(missed) or 'none'} |"
    )
    sys.stdout.flush()
    return {"scenario": label or name, "seed": seed, a: x, b: y, "oracle": oracle, "missed": missed}


def summary(rows: list[dict], started: float, out: Path | None) -> None:
    print()
    print(f"{len(rows)} runs, {sum(1 for r in rows if not r['missed'])} meet every target; "
          f"{time.monotonic() - started:.0f} s of wall time")
    if out:
        out.write_text(json.dumps(rows, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(scenarios.shipped()))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--from-seed", type=int, default=1, help="start at this seed (to resume a run)")
    parser.add_argument("--policies", default="vacagent,vcycle")
    parser.add_argument("--cache", type=Path, help="directory keeping the second policy's figures")
    parser.add_argument("--json", type=Path, help="also write every row's figures here")
    parser.add_argument("--demand", action="store_true", help="every project's machines also report demand")
    parser.add_argument("--jobs", type=int, help="worker processes per simulation (default: one per CPU)")
    args = parser.parse_args()
    global JOBS
    JOBS = args.jobs
    a, b = args.policies.split(",")
    header(a, b)
    rows, started = [], time.monotonic()
    for seed in range(args.from_seed, args.seeds + 1):  # seed by seed: an interrupted run still covers every scenario
        for name in args.names:
            rows.append(row(name, seed, a, b, args.cache, demand=args.demand))
    summary(rows, started, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
