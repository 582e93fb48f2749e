#!/usr/bin/env python3
"""The OpenStack backend in the daemon's real cycle, against the real control plane.

Starts tests/openstack_controlplane.py (or attaches to one started by hand:
VACAGENT_OPENSTACK_DIR=DIR), makes a fresh project with unlimited quotas,
and runs `cycle.run_once` of one OpenStack space (machinetype of 1 processor,
flavor vac.1, networks none) in this process, as the daemon does, every
`--cycle` seconds:

- empty -> 50 ACTIVE: seconds from the first cycle until the listing shows
  50 running machines (creation budget 50: all created in the first cycle);
- steady cycles at 50 and then 500 servers (the limit raised to 500): API
  requests per cycle (listing pages + mutations, and lookups: flavors,
  images, limits) and the cycle's CPU seconds (process time) and wall time.
  The 500 are measured once listed, whether or not the fake host has booted
  them all yet (it builds a few per second at best): a listing costs the same.

    python benchmarks/openstack.py [--page-size 500] [--steady 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This file is named openstack.py: its own directory must not hide the SDK's `openstack` package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != REPO / "benchmarks"]
sys.path.insert(0, str(REPO / "tests"))

from openstack_controlplane import IMAGE, ControlPlane  # noqa: E402

from vacagent import config, cycle  # noqa: E402
from vacagent.model import MachineState  # noqa: E402
from vacagent.report import Reporter  # noqa: E402


def site(state: Path, plane: ControlPlane, project: str, page_size: int) -> Path:
    options = {"auth": plane.admin_auth(project), "region": "RegionOne", "network": "none",
               "flavor_names": ["vac.1"], "page_size": page_size}
    path = state.parent / "vacagent.yaml"
    path.write_text(f"""
site: bench
state_dir: {state}
endpoint: {{port: 0}}  # the machines' URLs; nothing boots them here
spaces:
  cloud:
    backend: openstack
    options: {json.dumps(options)}
    processors_limit: 50
    creation_budget_processors: 50
    machinetypes:
      work: {{root_image: {IMAGE}, processors: 1, fizzle_seconds: 0, user_data: {state.parent / 'work.sh'}}}
""")
    (state.parent / "work.sh").write_text("#!/bin/sh\n# ##user_data_machine_hostname##\n")
    return path


def counts(space) -> tuple[int, int]:
    inner = space.backend.inner
    return inner.requests_made, inner.lookups_made


def one(space) -> dict:
    before, cpu, wall = counts(space), time.process_time(), time.monotonic()
    record = cycle.run_once(space, time.time())
    after = counts(space)
    return {"requests": after[0] - before[0], "lookups": after[1] - before[1],
            "cpu_s": round(time.process_time() - cpu, 4), "wall_s": round(time.monotonic() - wall, 3),
            "created": sum(len(v) for v in record["created"].values())}


def running(space) -> int:
    return sum(m.state is MachineState.RUNNING for m in space.backend.inner.list_machines())


def steady(space, cycles: int, interval: float) -> dict:
    samples = []
    while len(samples) < cycles:
        sample = one(space)
        if sample["created"] == 0:
            samples.append(sample)
        time.sleep(interval)
    mean = {key: round(sum(s[key] for s in samples) / len(samples), 4) for key in ("requests", "lookups", "cpu_s",
                                                                                   "wall_s")}
    return {**mean, "requests_each": [s["requests"] for s in samples]}


def wait_until(space, condition, interval: float, t0: float) -> float:
    while not condition():
        one(space)
        time.sleep(interval)
    return round(time.monotonic() - t0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--steady", type=int, default=5, help="steady cycles measured per size")
    parser.add_argument("--cycle", type=float, default=1.0, help="seconds between cycles")
    parser.add_argument("--no-500", action="store_true", help="stop after the 50-server figures")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vacagent-bench-openstack-"))
    running_dir = os.environ.get("VACAGENT_OPENSTACK_DIR")
    plane = ControlPlane.attach(Path(running_dir)) if running_dir else ControlPlane(work / "cloud")
    t_start = time.monotonic()
    if not running_dir:
        plane.start()
    result: dict = {"control_plane_start_s": None if running_dir else round(time.monotonic() - t_start, 1)}
    root = plane.connect()
    project = root.identity.create_project(name=f"bench-{os.getpid()}", domain_id="default")
    root.identity.assign_project_role_to_user(project, root.identity.find_user("admin"),
                                              root.identity.find_role("admin"))
    try:
        settings = config.load(site(work / "state", plane, project.name, args.page_size))
        space = cycle.build(settings, settings.spaces["cloud"], Reporter())
        t0 = time.monotonic()
        result["empty_to_50_active_s"] = wait_until(space, lambda: running(space) >= 50, args.cycle, t0)
        result["steady_50"] = steady(space, args.steady, args.cycle)

        result["page_size"] = args.page_size
        if not args.no_500:
            limits = replace(space.settings.limits, processors_limit=500, creation_budget_processors=500)
            space.settings = replace(space.settings, limits=limits)
            t0 = time.monotonic()
            result["50_to_500_listed_s"] = wait_until(
                space, lambda: len(space.backend.inner.list_machines()) >= 500, args.cycle, t0)
            result["steady_500"] = steady(space, args.steady, args.cycle)
            result["active_of_500"] = running(space)
    finally:
        report(result, args)  # before the clean-up, which takes minutes and may meet a tired control plane
        try:
            admin = plane.connect(project.name)
            for server in admin.compute.servers():
                admin.compute.delete_server(server, ignore_missing=True)
            while list(admin.compute.servers()):
                time.sleep(2)
        finally:
            if not running_dir:
                plane.stop()


def report(result: dict, args) -> None:
    if args.json:
        print(json.dumps(result), flush=True)
        return
    print(f"control plane start: {result['control_plane_start_s']} s" if result["control_plane_start_s"]
          else "control plane: attached (VACAGENT_OPENSTACK_DIR)")
    print(f"empty -> 50 ACTIVE: {result.get('empty_to_50_active_s')} s")
    if "50_to_500_listed_s" in result:
        print(f"50 -> 500 listed: {result['50_to_500_listed_s']} s ({result['active_of_500']} ACTIVE when measured)")
    for size in (50, 500):
        s = result.get(f"steady_{size}")
        if s is None:
            continue
        print(f"steady cycle at {size} servers (page_size {args.page_size}): {s['requests']} requests "
              f"(each cycle: {', '.join(map(str, s['requests_each']))}) "
              f"+ {s['lookups']} lookups, {s['cpu_s'] * 1000:.1f} ms CPU, {s['wall_s'] * 1000:.0f} ms wall", flush=True)


if __name__ == "__main__":
    main()
