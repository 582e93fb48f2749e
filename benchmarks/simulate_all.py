#!/usr/bin/env python3
"""Run every shipped scenario with every policy and print the results as Markdown.

    python benchmarks/simulate_all.py                 # all shipped scenarios (the large lab takes minutes)
    python benchmarks/simulate_all.py steady bursty   # some of them
    python benchmarks/simulate_all.py --json out.json # also keep every figure

This is how the results tables of docs/benchmarks.md are made; each table
is also what `vacagent simulate NAME` prints, in another layout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from vacagent.sim import scenario as scenarios
from vacagent.sim import table
from vacagent.sim.distributions import span
from vacagent.sim.simulate import simulate


def pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown(result) -> list[str]:
    out = [f"### {result.scenario.name}", "", table.describe(result), "",
           "| policy | useful | served | wait mean | wait p95 | fizzle waste (processor-h) | share accuracy "
           "| API calls | machines | CPU s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in result.policies:
        f = result.figures[name]["total"]
        out.append(
            f"| {name} | {pct(f.useful_fraction)} | {pct(f.served)} | "
            f"{'-' if f.wait_mean is None else span(f.wait_mean)} | "
            f"{'-' if f.wait_p95 is None else span(f.wait_p95)} | "
            f"{f.fizzle_waste / 3600:,.0f} | {'-' if f.share_accuracy is None else f'{f.share_accuracy:.3f}'} | "
            f"{f.api_calls:,} | {f.machines:,} | {result.traces[name].cpu_seconds:.1f} |")
    failed = {n: result.figures[n]["total"].failed_cycles for n in result.policies}
    if any(failed.values()):
        out += ["", "Cycles that failed (listing refused): " + ", ".join(f"{n} {c}" for n, c in failed.items() if c)]
    return out + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios (default: every shipped one)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args()
    names = args.names or list(scenarios.shipped())
    everything = {}
    for name in names:
        started = time.monotonic()
        result = simulate(scenarios.load(name))
        print(f"{name}: {time.monotonic() - started:.0f}s", file=sys.stderr)
        print("\n".join(markdown(result)))
        sys.stdout.flush()
        everything[name] = table.to_json(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
