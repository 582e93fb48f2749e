#!/usr/bin/env python3
"""Cost of one decision cycle against the number of machines in one space.

For each size (default 1,000, 10,000 and 50,000 machines) a fresh process
builds a state directory on disk (under $TMPDIR, not /dev/shm) holding that
many running machines of two machinetypes, and a `FakeBackend` listing them
in pages of 500; then it runs the daemon's real `cycle.run_once` and
measures, per kind of cycle:

- cold:   the first cycle of a new process (the store reads every record);
- steady: nothing changed since the last cycle;
- churn:  1% of the machines stopped by themselves (200, work done) since the last cycle
          (each is deleted, then closed a cycle later; the planner creates
          replacements within the creation budget).

Reported: CPU seconds (process time) of the cycle, the peak of Python
allocations during one steady cycle (tracemalloc), the process's peak RSS,
and the backend requests the cycle made next to listing pages + mutations,
which must be equal: requests grow with pages, never with machines.

    python benchmarks/cycle_scale.py            # 1k, 10k, 50k
    python benchmarks/cycle_scale.py 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from vacagent import cycle
from vacagent.backends.base import BackendContext
from vacagent.backends.fake import FakeBackend, FakeMachine
from vacagent.clock import FakeClock
from vacagent.config import Settings, SpaceSettings
from vacagent.model import MachineRecord, MachineState, SpaceLimits
from vacagent.report import Reporter
from vacagent.state.store import record_to_json

T0 = 1_900_000_000.0
PAGE = 500


def build(n: int, root: Path) -> tuple[cycle.Space, FakeBackend, FakeClock]:
    user_data = root / "user_data"
    user_data.write_text("#!/bin/sh\n")
    clock = FakeClock(T0)
    definition = {"user_data": str(user_data), "fizzle_seconds": 600, "backoff_seconds": 600}
    space_settings = SpaceSettings(
        name="big", backend="fake", options={"page_size": PAGE},
        limits=SpaceLimits(processors_limit=n), machinetypes={"a": definition, "b": definition},
    )
    settings = Settings(site="bench", state_dir=root / "state", spaces={"big": space_settings})
    backend = FakeBackend(BackendContext("bench", "big", settings.state_dir, space_settings.options, clock))
    space = cycle.build(settings, space_settings, Reporter(), clock, backend=backend)
    # Setup, not measured: n machines that have run for an hour, written as the
    # store writes them (without the fsyncs, which would only make setup slow).
    started = T0 - 3600
    for i in range(n):
        name, mt = f"m{i:06d}", "ab"[i % 2]
        record = MachineRecord(name=name, space="big", machinetype=mt, processors=1, created=started - 60,
                               backend_id=f"fake-{name}", state="running", started=started, listed=True)
        directory = space.store.machine_dir(name)
        (directory / "joboutputs").mkdir(parents=True)
        (directory / "machine.json").write_text(json.dumps(record_to_json(record)))
        backend.machines[name] = FakeMachine(name, mt, 1, started - 60, "", MachineState.RUNNING, started)
    return space, backend, clock


def measure(space: cycle.Space, backend: FakeBackend, clock: FakeClock) -> dict:
    before, calls = backend.requests_made, len(backend.calls)
    listed = len(backend.machines)
    cpu = time.process_time()
    record = cycle.run_once(space, clock.now())
    cpu = time.process_time() - cpu
    created = sum(len(v) for v in record["created"].values())
    mutations = created + len(record["create_failed"]) + len(record["deleted"])
    pages = max(1, -(-listed // PAGE))
    listing_requests = sum(1 for method, _ in backend.calls[calls:] if method == "list")
    clock.advance(60)
    return {"cpu_seconds": round(cpu, 4), "requests": backend.requests_made - before,
            "listing_pages_plus_mutations": pages + mutations, "listing_requests": listing_requests,
            "listed": listed, "created": created, "deleted": len(record["deleted"]),
            "closed": len(record["closed"])}


def one_size(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vacagent-bench-") as tmp:
        space, backend, clock = build(n, Path(tmp))
        out = {"machines": n, "cold": measure(space, backend, clock)}
        out["steady"] = measure(space, backend, clock)
        for name in list(backend.machines)[: n // 100]:
            backend.stop(name, "200 Intended work completed ok")
        out["churn"] = measure(space, backend, clock)
        out["after_churn"] = measure(space, backend, clock)  # the deleted machines are closed
        tracemalloc.start()
        measure(space, backend, clock)
        out["steady_peak_alloc_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[1000, 10_000, 50_000])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a worker process measuring one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one)))
        return 0
    results = []
    for n in args.sizes:  # one process per size, so that peak RSS is that size's own
        done = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(done.stdout))
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    print(f"{'machines':>9} {'cold':>7} {'steady':>7} {'churn':>7} {'closing':>8} {'alloc MB':>9} {'RSS MB':>7}"
          f"  requests per cycle (steady, churn, closing) = pages + mutations")
    for r in results:
        cycles = [r[k] for k in ("steady", "churn", "after_churn")]
        requests = ", ".join(f"{c['requests']}={c['listing_pages_plus_mutations']}" for c in cycles)
        ok = all(c["requests"] == c["listing_pages_plus_mutations"] for c in [r["cold"], *cycles])
        print(f"{r['machines']:>9,} {r['cold']['cpu_seconds']:>6.3f}s {r['steady']['cpu_seconds']:>6.3f}s "
              f"{r['churn']['cpu_seconds']:>6.3f}s {r['after_churn']['cpu_seconds']:>7.3f}s "
              f"{r['steady_peak_alloc_mb']:>9} {r['peak_rss_mb']:>7}  {requests} {'ok' if ok else 'MISMATCH'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
