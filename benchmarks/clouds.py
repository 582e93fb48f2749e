#!/usr/bin/env python3
"""Steady cycles of an EC2 and a GCE space: API requests and CPU seconds per cycle, at 100 and 2,000 VMs.

Each cloud is its test double, served from threads of this process over
real HTTP: EC2 is moto's server behind the fault layer (tests/ec2_cloud.py),
GCE the Compute emulator (tests/gce_emulator.py); the backends use the real
SDKs (boto3, google-cloud-compute).  The space holds N running VMs of this
site at its processors limit; a first cycle adopts them (setup), then the
daemon's real `cycle.run_once` runs steady cycles, where nothing changes.

Reported per steady cycle (median of 5): the requests the backend made
(`requests_made`), the requests the cloud served (counted by the fault layer
or the emulator), and CPU seconds of the thread running the cycle
(`time.thread_time()`: vacagent and the SDK, not the cloud's own threads).

    python benchmarks/clouds.py                 # 100 and 2,000 VMs, pages of 500
    python benchmarks/clouds.py 2000 --page-size 100 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from vacagent import cycle  # noqa: E402
from vacagent.clock import SystemClock  # noqa: E402
from vacagent.config import Settings, SpaceSettings  # noqa: E402
from vacagent.model import SpaceLimits  # noqa: E402
from vacagent.report import Reporter  # noqa: E402

SITE, SPACE = "bench.site", "burst"


def ec2(n: int, page_size: int):
    import ec2_cloud

    cloud = ec2_cloud.cloud()
    cloud.populate(SITE, SPACE, n)
    options = cloud.options(instance_types=["t3.medium"], page_size=page_size)
    return "ec2", options, ec2_cloud.IMAGE, lambda: sum(cloud.requests.values()), lambda: cloud.forget(SITE)


def gce(n: int, page_size: int):
    import gce_cloud

    from vacagent.backends.gce import label_value

    cloud = gce_cloud.cloud()
    labels = {"vacagent-site": label_value(SITE), "vacagent-space": label_value(SPACE),
              "vacagent-machinetype": "mt", "vacagent-processors": "2"}
    zones = cloud.options()["zones"]
    for k, zone in enumerate(zones):
        cloud.emulator.populate(gce_cloud.PROJECT, zone, n // len(zones) + (k < n % len(zones)), labels,
                                prefix=f"mt-{k}-")
    options = cloud.options(machine_types=["e2-standard-2"], page_size=page_size)
    return ("gce", options, gce_cloud.IMAGE, lambda: sum(cloud.requests.values()),
            lambda: cloud.forget(labels["vacagent-site"]))


def run(cloud, n: int, page_size: int) -> dict:
    backend_name, options, image, served, forget = cloud(n, page_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "worker.sh").write_text("#cloud-config\n")
        definition = {"user_data": str(root / "worker.sh"), "root_image": image, "processors": 2,
                      "fizzle_seconds": 600, "backoff_seconds": 600}
        space_settings = SpaceSettings(name=SPACE, backend=backend_name, options=options,
                                       limits=SpaceLimits(processors_limit=2 * n), machinetypes={"mt": definition})
        settings = Settings(site=SITE, state_dir=root / "state", spaces={SPACE: space_settings})
        space = cycle.build(settings, space_settings, Reporter(), SystemClock())
        backend = space.backend
        for _ in range(2):  # adopt every VM, then settle
            record = cycle.run_once(space, time.time())
        assert record["machines_total"] == n and not record["created"], record

        def steady() -> tuple[float, int, int]:
            requests, before = backend.requests_made, served()
            cpu = time.thread_time()
            record = cycle.run_once(space, time.time())
            cpu = time.thread_time() - cpu
            assert record["machines_total"] == n and not record["created"] and not record["deleted"], record
            return cpu, backend.requests_made - requests, served() - before

        cycles = [steady() for _ in range(5)]
    forget()
    return {"cloud": backend_name, "vms": n, "page_size": page_size, "pages": -(-n // page_size),
            "cpu_seconds": round(statistics.median(c for c, _, _ in cycles), 3),
            "requests": [r for _, r, _ in cycles], "served": [s for _, _, s in cycles]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 2000])
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(cloud, n, args.page_size) for cloud in (ec2, gce) for n in args.sizes]
    if args.json:
        print(json.dumps(results))
        return
    for r in results:
        print(f"{r['cloud']}: {r['vms']} VMs, pages of {r['page_size']} ({r['pages']} pages): steady cycle "
              f"{r['cpu_seconds']:.3f} CPU s, requests {r['requests']} (served {r['served']})")


if __name__ == "__main__":
    main()
