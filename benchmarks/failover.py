#!/usr/bin/env python3
"""Failover and handover times of several real daemons on one state directory.

    python benchmarks/failover.py [--cycle 1] [--lease 3] [--rounds 10] [--instances 3] [--spaces 4]

Starts `--instances` `vacagent run` processes (one config file each, as
tests/test_instances_e2e.py does) sharing `--spaces` spaces on the local
backend, machines churning all along.  Then, `--rounds` times each:

- crash failover: SIGKILL the instance holding most spaces; the time until
  every space it held is held by another instance (target: lease + one cycle);
- graceful handover: SIGTERM the instance holding most spaces; the time from
  the signal until every space it held is held by another (it finishes its
  cycle first; target: one cycle).

The instance is restarted after each round, and the site is let settle back
to a fair share.  Printed: median and worst of both, and over the whole run
the machines leaked (on the host without a record, or a record without a
machine), the overshoots (a space seen above max_machines) and the actions
done under a superseded epoch (all three must be 0).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from daemon_helpers import kill_site, wait_for  # noqa: E402
from instances_helpers import (  # noqa: E402
    Fleet, LimitWatch, check_fencing, check_no_leak, holders, write_sites,
)


def busiest(fleet: Fleet, state_dir: Path, lease: float, spaces) -> tuple[str, list[str]]:
    held: dict[str, list[str]] = {}
    for space, holder in holders(state_dir, lease, spaces).items():
        if holder:
            held.setdefault(holder[0], []).append(space)
    name = max(fleet.running(), key=lambda n: (len(held.get(n, [])), n))
    return name, held.get(name, [])


def taken_over(state_dir: Path, lease: float, spaces, gone: str, since: float) -> float:
    def done():
        now = holders(state_dir, lease, spaces)
        return all(now[s] is not None and now[s][0] != gone for s in spaces)

    wait_for(done, timeout=10 * lease + 30, interval=0.005)
    return time.time() - since


def settle(fleet: Fleet, state_dir: Path, lease: float, spaces, names) -> None:
    share = {len(spaces) // len(names), -(-len(spaces) // len(names))}

    def fair():
        now = holders(state_dir, lease, spaces)
        counts = {n: 0 for n in names}
        for h in now.values():
            if h is None or h[0] not in counts:
                return False
            counts[h[0]] += 1
        return set(counts.values()) <= share

    wait_for(fair, timeout=10 * lease + 60, interval=0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycle", type=float, default=1.0, help="cycle_seconds (default 1)")
    parser.add_argument("--lease", type=float, default=None, help="lease_seconds (default 3 x cycle)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--spaces", type=int, default=4)
    args = parser.parse_args()
    lease = args.lease or 3 * args.cycle
    vacagent = shutil.which("vacagent") or str(Path(sys.executable).with_name("vacagent"))
    site = f"bench{random.randrange(10**6)}"
    names = [f"i{n}" for n in range(args.instances)]
    spaces = tuple(f"s{n}" for n in range(args.spaces))
    root = Path(tempfile.mkdtemp(prefix="vacagent-failover-"))
    configs = write_sites(root, site, names, args.cycle, lease, spaces=spaces)
    fleet = Fleet(vacagent, configs, root)
    state_dir = root / "state"
    watch = LimitWatch(site)
    watch.start()
    crash, handover = [], []
    try:
        for name in names:
            fleet.start(name)
        settle(fleet, state_dir, lease, spaces, names)
        for round_ in range(args.rounds):
            victim, mine = busiest(fleet, state_dir, lease, spaces)
            killed = fleet.kill(victim)
            crash.append(taken_over(state_dir, lease, mine, victim, killed))
            fleet.start(victim)
            settle(fleet, state_dir, lease, spaces, names)

            victim, mine = busiest(fleet, state_dir, lease, spaces)
            proc = fleet.procs.pop(victim)
            sent = time.time()
            proc.send_signal(signal.SIGTERM)
            handover.append(taken_over(state_dir, lease, mine, victim, sent))
            proc.wait(timeout=60)
            fleet.start(victim)
            settle(fleet, state_dir, lease, spaces, names)
            print(f"round {round_ + 1}: crash failover {crash[-1]:.2f}s, handover {handover[-1]:.2f}s", flush=True)
        leaked = 0
        try:
            check_no_leak(state_dir, site, spaces=spaces)
        except AssertionError as e:
            print(e)
            leaked = 1
        stale = 0
        try:
            actions = check_fencing(state_dir, fleet, spaces)
        except AssertionError as e:
            print(e)
            stale, actions = 1, 0
        worst = watch.stop()
        overshoots = sum(1 for s in spaces if worst.get(s, 0) > 2)
    finally:
        fleet.stop_all()
        kill_site(site)
    print()
    print(f"{args.instances} instances, {args.spaces} spaces, cycle_seconds {args.cycle:g}, lease_seconds {lease:g}, "
          f"{args.rounds} rounds, {actions} actions checked")
    print(f"crash failover (SIGKILL -> spaces held again): median {statistics.median(crash):.2f}s, "
          f"worst {max(crash):.2f}s (target <= {lease + args.cycle:g}s)")
    print(f"graceful handover (SIGTERM -> spaces held again): median {statistics.median(handover):.2f}s, "
          f"worst {max(handover):.2f}s (target <= {args.cycle:g}s)")
    print(f"machines leaked: {leaked}, overshoots: {overshoots}, actions under a stale epoch: {stale}")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if leaked or overshoots or stale else 0


if __name__ == "__main__":
    sys.exit(main())
