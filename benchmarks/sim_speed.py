#!/usr/bin/env python3
"""How fast the simulator runs: 24 simulated hours of a 500-processor lab.

    python benchmarks/sim_speed.py            # the shipped `steady` scenario
    python benchmarks/sim_speed.py bursty

Runs each cycle-driven policy alone, in this process, one after the other
(CPU and wall seconds each, with the number of cycles and machines), then
the whole `vacagent simulate` command as a user runs it (all four
policies, in parallel worker processes), and reports its wall time.  The
target is under 30 s per policy.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from vacagent.sim import scenario as scenarios
from vacagent.sim.simulate import simulate


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "steady"
    s = scenarios.load(name)
    print(f"scenario {name}: {s.processors} processors, {s.duration / 3600:g} h simulated, "
          f"{int(s.duration // s.cycle_seconds)} cycles, {len(s.jobs):,} jobs")
    for policy in ("vacagent", "vcycle", "static"):
        started = time.monotonic()
        result = simulate(s, (policy,), jobs=1)
        wall = time.monotonic() - started
        trace = result.traces[policy]
        print(f"  {policy:9} {wall:6.1f} s wall, {trace.cpu_seconds:6.1f} s CPU, {len(trace.machines):,} machines")
    started = time.monotonic()
    vacagent = Path(sys.executable).parent / "vacagent"
    subprocess.run([str(vacagent), "simulate", name, "-q"], check=True, capture_output=True)
    print(f"  vacagent simulate {name} (all policies, parallel workers): {time.monotonic() - started:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
