#!/usr/bin/env python3
"""Crash consistency of the real daemon: N random kill -9s, then one crash at each named point.

    python benchmarks/chaos.py [--kills 100] [--seed 7] [--no-crash-points]

Runs `vacagent run` on the local backend (a temporary site: 4 processors,
machines that run 4 s, 0.3 s cycles), kills it with SIGKILL at random
moments of its cycles (0.1-1.2 s after each start), then once at each
crash point of `vacagent.crashpoints` (VACAGENT_CRASH_AT), restarting it
every time; a last daemon settles and is stopped.  The host's processes
are watched throughout, the state directory after every kill
(tests/daemon_helpers.py: `chaos`, the same code as the CI test).

Prints the kills, the crash points reached, the machines created, and the
faults: leaks (a machine running with no open record), overshoots (samples
with more machines than the limit), duplicates (a machine accounted twice),
stale records (open, their machine long gone), half-done closes, and
accounting lines lost (a finished machine with no line) or unknown.  All
faults must be 0 (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from daemon_helpers import chaos, kill_site, write_site  # noqa: E402

from vacagent.crashpoints import POINTS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-crash-points", action="store_true")
    args = parser.parse_args()
    vacagent_bin = str(Path(sys.executable).parent / "vacagent")
    site = f"chaos{random.randrange(16**6):06x}.bench"
    with tempfile.TemporaryDirectory(prefix="vacagent-chaos-") as tmp:
        config = write_site(Path(tmp), site, processors_limit=4, budget=2, seconds="4", intent_grace=2)
        points = () if args.no_crash_points else sorted(POINTS)
        started = time.monotonic()
        try:
            result = chaos(vacagent_bin, config, site, args.kills, args.seed, crash_points=points,
                           log=Path(tmp) / "daemon.log")
        finally:
            kill_site(site)
        seconds = time.monotonic() - started
    faults = {k: len(result[k]) for k in ("orphans", "duplicates", "stale", "half_closed", "lost", "unknown")}
    print(f"kills                      {result['kills']}")
    print(f"crash points reached       {result['crashes']}/{len(points)}")
    print(f"machines created           {result['created']}")
    print(f"peak machines (limit 4)    {result['peak']}")
    print(f"leaks (orphans)            {faults['orphans']}")
    print(f"overshoots                 {result['overshoots']}")
    print(f"duplicates                 {faults['duplicates']}")
    print(f"stale records              {faults['stale']}")
    print(f"half-done closes           {faults['half_closed']}")
    print(f"accounting lines lost      {faults['lost']}")
    print(f"accounting lines unknown   {faults['unknown']}")
    print(f"seconds                    {seconds:.0f}")
    bad = sum(faults.values()) + result["overshoots"] + (len(points) - result["crashes"])
    for kind in faults:
        if result[kind]:
            print(f"  {kind}: {' '.join(result[kind])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
