#!/usr/bin/env python3
"""One cycle over 5,000 pods in one namespace: API requests and CPU seconds per cycle.

The kubernetes backend talks HTTP through the official client to the API
emulator (tests/kube_emulator.py), which serves from threads of this
process; CPU is measured with `time.thread_time()` of the thread running
the cycle, so the emulator's own work is not counted.  The namespace holds
N running pods of this site (two machinetypes, each with its Secret) and
the state directory their N records, as after a day of running.

Reported, for the daemon's real `cycle.run_once`:
- cold:   the first cycle of a new process (the store reads every record);
- steady: a cycle where nothing changed (median of 5);
and for the backend's listing alone (`list_machines`), next to the same
pages read through the client's model classes (`V1PodList`), which is what
the backend avoids by reading the JSON itself.  Requests are counted by
the backend (`requests_made`) and checked against what the emulator served.

    python benchmarks/kubernetes.py            # 5,000 pods, pages of 500
    python benchmarks/kubernetes.py 2000 --page-size 250 --json
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
# This script's own directory would shadow the `kubernetes` package with this very file.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT / "tests"))

import kube_emulator as kube  # noqa: E402 - the emulator lives with the tests

from vacagent import cycle  # noqa: E402
from vacagent.backends import kubernetes_pods as pods  # noqa: E402
from vacagent.clock import SystemClock  # noqa: E402
from vacagent.config import Settings, SpaceSettings  # noqa: E402
from vacagent.model import MachineRecord, SpaceLimits  # noqa: E402
from vacagent.report import Reporter  # noqa: E402
from vacagent.state.store import record_to_json  # noqa: E402

NS, SITE, SPACE = "bench", "bench.site", "big"


def populate(emulator: kube.KubeEmulator, state: Path, n: int) -> None:
    """n running pods with their Secrets, and their records, written directly (setup, not measured)."""
    now = time.time()
    for i in range(n):
        name, mt = f"m{i:06d}", "ab"[i % 2]
        labels = {**pods.identity(SITE, SPACE), pods.MACHINETYPE: mt, pods.PROCESSORS: "1"}
        pod = emulator.put("pods", NS, {"metadata": {"name": name, "labels": labels}, "spec": {
            "containers": [{"name": "worker", "image": "registry.example/worker:1"}], "restartPolicy": "Never",
            "volumes": [{"name": "vacagent", "secret": {"secretName": name}}]}})
        emulator.put("secrets", NS, {"metadata": {"name": name, "labels": labels, "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod["metadata"]["uid"]}]},
            "data": {"token": "dG9rZW4=", "user_data": "IyEvYmluL3NoCg=="}})
        emulator.run(NS, name)
        record = MachineRecord(name=name, space=SPACE, machinetype=mt, processors=1, created=now - 3600,
                               backend_id=pod["metadata"]["uid"], state="running", started=now - 3500, listed=True)
        directory = state / "spaces" / SPACE / "machines" / name
        (directory / "joboutputs").mkdir(parents=True)
        (directory / "machine.json").write_text(json.dumps(record_to_json(record)))


def build(url: str, root: Path, n: int, page_size: int) -> cycle.Space:
    kubeconfig = root / "kubeconfig.json"
    kubeconfig.write_text(json.dumps(kube.kubeconfig(url, NS)))
    (root / "worker.sh").write_text("#!/bin/sh\n")
    definition = {"user_data": str(root / "worker.sh"), "root_image": "registry.example/worker:1",
                  "fizzle_seconds": 600, "backoff_seconds": 600}
    space_settings = SpaceSettings(
        name=SPACE, backend="kubernetes",
        options={"kubeconfig": str(kubeconfig), "namespace": NS, "page_size": page_size},
        limits=SpaceLimits(processors_limit=n), machinetypes={"a": definition, "b": definition},
    )
    settings = Settings(site=SITE, state_dir=root / "state", spaces={SPACE: space_settings})
    return cycle.build(settings, space_settings, Reporter(), SystemClock())


def timed(action) -> tuple[float, object]:
    cpu = time.thread_time()
    result = action()
    return time.thread_time() - cpu, result


def run(n: int, page_size: int) -> dict:
    emulator = kube.KubeEmulator()
    server = kube.serve(emulator)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        populate(emulator, root / "state", n)
        space = build(url, root, n, page_size)
        backend = space.backend
        out: dict = {"pods": n, "page_size": page_size, "pages": -(-n // page_size)}

        def cycle_once() -> tuple[float, int, int, dict]:
            requests, served = backend.requests_made, sum(emulator.requests.values())
            cpu, record = timed(lambda: cycle.run_once(space, time.time()))
            return cpu, backend.requests_made - requests, sum(emulator.requests.values()) - served, record

        cpu, requests, served, record = cycle_once()
        assert record["machines_total"] == n, record
        assert not record["created"] and not record["deleted"], record
        out["cold"] = {"cpu_seconds": round(cpu, 3), "requests": requests, "served": served}
        steady = [cycle_once() for _ in range(5)]
        out["steady"] = {"cpu_seconds": round(statistics.median(c for c, *_ in steady), 3),
                         "requests": [r for _, r, *_ in steady], "served": [s for _, _, s, _ in steady]}

        listings = [timed(backend.list_machines) for _ in range(3)]
        out["list_machines_cpu_seconds"] = round(statistics.median(c for c, _ in listings), 3)

        def with_models() -> int:
            count, token = 0, None
            while True:
                page = backend.api.list_namespaced_pod(NS, label_selector=backend.selector, limit=page_size,
                                                       _continue=token)
                count += len(page.items)
                token = page.metadata.var_continue
                if not token:
                    return count

        models = [timed(with_models) for _ in range(3)]
        assert models[0][1] == n
        out["client_models_listing_cpu_seconds"] = round(statistics.median(c for c, _ in models), 3)
    server.shutdown()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pods", nargs="?", type=int, default=5000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.pods, args.page_size)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['pods']} pods, pages of {result['page_size']} ({result['pages']} pages)")
    for kind in ("cold", "steady"):
        r = result[kind]
        print(f"  {kind:7} cycle: {r['cpu_seconds']:.3f} CPU s, requests {r['requests']} (served {r['served']})")
    print(f"  list_machines alone: {result['list_machines_cpu_seconds']:.3f} CPU s; the same pages through the "
          f"client's models: {result['client_models_listing_cpu_seconds']:.3f} CPU s")


if __name__ == "__main__":
    main()
