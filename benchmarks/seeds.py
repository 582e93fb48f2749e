#!/usr/bin/env python3
"""Does a difference between two policies survive a change of seed?

    python benchmarks/seeds.py                      # vacagent vs vcycle, seeds 1-5, the day-or-less scenarios
    python benchmarks/seeds.py --seeds 10 bursty    # more seeds, one scenario

For each scenario and seed, runs both policies and prints, per figure, the
range over seeds of (first policy - second policy): useful-time fraction
(points), fizzle waste (%), mean wait (minutes) and API calls (%).  A range
that stays on one side of zero is a difference the seed does not explain.
The seed draws the jobs of random workload items, boot delays and failures,
and Vcycle's tie-breaks.
"""

from __future__ import annotations

import argparse
import sys

from vacagent.sim import scenario as scenarios
from vacagent.sim.simulate import simulate

DEFAULT = ["steady", "bursty", "shares", "broken_image", "boot_failures", "night_morning", "lpc_egee"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--policies", default="vacagent,vcycle")
    args = parser.parse_args()
    a, b = args.policies.split(",")
    print(f"{a} - {b}, seeds 1..{args.seeds}: [min, max] over seeds")
    print(f"{'scenario':14} {'useful (points)':>18} {'fizzle waste (%)':>18} {'wait mean (min)':>18} {'API calls (%)':>16}")
    for name in args.names:
        rows = []
        for seed in range(1, args.seeds + 1):
            f = simulate(scenarios.load(name, seed), (a, b)).figures
            x, y = f[a]["total"], f[b]["total"]
            rows.append((
                100 * (x.useful_fraction - y.useful_fraction),
                100 * (x.fizzle_waste / y.fizzle_waste - 1) if y.fizzle_waste else 0.0,
                (x.wait_mean - y.wait_mean) / 60,
                100 * (x.api_calls / y.api_calls - 1),
            ))
        cells = [f"[{min(c):+6.1f}, {max(c):+6.1f}]" for c in zip(*rows)]
        print(f"{name:14} {cells[0]:>18} {cells[1]:>18} {cells[2]:>18} {cells[3]:>16}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
