#!/usr/bin/env python3
"""vacagent against Vcycle on real job logs it was not tuned on: slices of Parallel Workloads Archive traces.

    python benchmarks/heldout.py                        # every slice below, seeds 1-5
    python benchmarks/heldout.py --traces DIR --seeds 2 lcg-day5 egee-day30

Each slice becomes a scenario (written to a temporary directory, its
`swf` items pointing at the trace files in DIR, default /work/shared/traces)
in the shape of the shipped `lpc_egee`: the log's virtual organisations as
projects, one processor per machine, the site's own size, boots of 1-4
minutes, backoff_seconds and fizzle_seconds 600.  None of these slices was
looked at while the decision rules were written; the shipped `lpc_egee`
(LPC-EGEE days 85-88) was.  Rows as in `seeds.py`.

The two parallel-machine logs of the directory (SDSC-SP2, NASA-iPSC) are
left out: their jobs are up to 128 processors wide, and a vacuum machine
runs one job of its machinetype's fixed width at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import seeds

EGEE = "LPC-EGEE-2004-1.2-cln.swf.gz"
LCG = "LCG-2005-1.swf.gz"

# name -> (trace, from day, days, processors, projects: name -> groups)
SLICES = {
    "egee-day30": (EGEE, 30, 3, 140, {"vo-a": [2], "vo-c": [6], "vo-rest": [1, 3, 4, 5, 7, 8]}),
    "egee-day120": (EGEE, 120, 3, 140, {"vo-a": [2], "vo-c": [6], "vo-rest": [1, 3, 4, 5, 7, 8]}),
    "egee-day200": (EGEE, 200, 3, 140, {"vo-a": [2], "vo-c": [6], "vo-rest": [1, 3, 4, 5, 7, 8]}),
    "lcg-day5": (LCG, 5, 1, 1400, {"vo-a": [4], "vo-b": [1], "vo-c": [6]}),
}


def scenario(name: str, traces: Path, out: Path) -> Path:
    trace, start, days, processors, projects = SLICES[name]
    data = {
        "name": name,
        "description": f"{trace}, days {start}-{start + days} after its first job, on {processors} processors",
        "duration": f"{days}d",
        "machinetype": {"backoff_seconds": 600, "fizzle_seconds": 600, "max_wallclock_seconds": 8 * 86400},
        "spaces": [{"name": "lab", "processors": processors,
                    "boot_seconds": {"distribution": "uniform", "min": "1m", "max": "4m"}}],
        "projects": [
            {"name": project, "target_share": 1, "idle_seconds": "5m",
             "workload": [{"kind": "swf", "file": str(traces / trace), "groups": groups,
                           "from": f"{start}d", "to": f"{start + days}d"}]}
            for project, groups in projects.items()
        ],
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", default=list(SLICES))
    parser.add_argument("--traces", type=Path, default=Path("/work/shared/traces"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--cache", type=Path, help="directory keeping Vcycle's figures")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds.header("vacagent", "vcycle")
    rows, started = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vacagent-heldout-") as tmp:
        for name in args.names:
            path = scenario(name, args.traces, Path(tmp))
            for seed in range(1, args.seeds + 1):
                rows.append(seeds.row(str(path), seed, "vacagent", "vcycle", args.cache, label=name))
    seeds.summary(rows, started, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
