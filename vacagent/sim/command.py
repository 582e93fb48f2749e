"""`vacagent simulate`: load a scenario, run the policies, print the table, draw the plot.

`cli` defines the arguments and imports this module only when the command
runs, so the daemon never loads the simulator (nor matplotlib, which only
`--plot` needs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vacagent.sim import scenario as scenarios
from vacagent.sim import table
from vacagent.sim.simulate import ALL, simulate


def policy_names(values: list[str] | None) -> tuple[str, ...]:
    """`--policy a --policy b,c` -> ("a", "b", "c"); none given: all, in the usual order."""
    if not values:
        return ALL
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise ValueError(f"no policy {', '.join(map(repr, unknown))} (known: {', '.join(ALL)})")
    return tuple(dict.fromkeys(names))


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, description in scenarios.shipped().items():
            print(f"{name:16} {description}")
        return 0
    if not args.scenario:
        print("vacagent simulate: give a SCENARIO (a file, or a shipped name: see --list)", file=sys.stderr)
        return 2
    try:
        names = policy_names(args.policy)
        scenario = scenarios.load(args.scenario, args.seed)
    except (ValueError, scenarios.ScenarioError) as e:
        print(f"vacagent simulate: {e}", file=sys.stderr)
        return 2
    if args.plot:
        from vacagent.sim import plot  # matplotlib: only now, and only if installed

        plot.check()

    def progress(name: str, trace) -> None:
        if not args.quiet:
            print(f"simulate: {scenario.name}: {name} done ({trace.cpu_seconds:.1f}s CPU)", file=sys.stderr)

    result = simulate(scenario, names, args.keep_state, progress, args.jobs)
    try:
        if args.json:
            json.dump(table.to_json(result), sys.stdout, indent=1)
            print()
        else:
            for line in table.lines(result):
                print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `vacagent simulate ... | head`: the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.plot:
        plot.draw(result, args.plot)
        if not args.quiet:
            print(f"simulate: plot written to {args.plot}", file=sys.stderr)
    return 0
