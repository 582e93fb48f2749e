"""End to end on Kubernetes: the real daemon (a `vacagent run` process) with its endpoint, the
kubernetes backend through the real client, and the API emulator in this process, where a
small kubelet starts pods and plays their workers: each reads its token from its Secret and
its URLs from its environment, and reports to the endpoint over HTTP, as a container would.

Two projects share one namespace: `proj-idle`'s workers find no work (`300`), `proj-busy`'s
run until deleted.  Then an eviction, then SIGKILL and a restart.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import kube_emulator as kube
from daemon_helpers import accounting, open_records, start, wait_for
from vacagent.state.atomic import read_json

pytestmark = pytest.mark.slow
NS = "shared"
LIMIT = 6


class Kubelet(threading.Thread):
    """Starts pending pods and plays their workers: idle ones report 300 and exit, busy ones run on."""

    def __init__(self, emulator: kube.KubeEmulator):
        super().__init__(name="kubelet", daemon=True)
        self.emulator = emulator
        self.stop = threading.Event()
        self.reported: set[str] = set()
        self.failures: list[str] = []

    def _report(self, name: str, pod: dict) -> None:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        secret = self.emulator.get("secrets", NS, name)
        token = base64.b64decode(secret["data"]["token"]).decode()
        put = urllib.request.Request(f"{env['JOBOUTPUTS']}/shutdown_message", data=b"300 No more work available",
                                     method="PUT", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(put, timeout=10) as response:
            assert response.status == 204

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.emulator.start_pending(NS)
            for name in sorted(self.emulator.names("pods", NS) - self.reported):
                pod = self.emulator.get("pods", NS, name)
                if pod is None or pod["status"].get("phase") != "Running" or "deletionTimestamp" in pod["metadata"]:
                    continue
                if pod["metadata"]["labels"]["vacagent.io/machinetype"] == "proj-idle":
                    try:
                        self._report(name, pod)
                        self.emulator.terminate(NS, name, 0)
                    except Exception as e:  # noqa: BLE001 - the test asserts there were none
                        self.failures.append(f"{name}: {e!r}")
                    self.reported.add(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def site(tmp_path: Path, url: str) -> Path:
    kubeconfig = tmp_path / "kubeconfig.json"
    kubeconfig.write_text(json.dumps(kube.kubeconfig(url, NS)))
    (tmp_path / "worker.sh").write_text("#!/bin/sh\n# the worker: runs ##user_data_machinetype## jobs\n")
    config = tmp_path / "vacagent.yaml"
    config.write_text(f"""
site: k8s.test
state_dir: state
cycle_seconds: 0.5
endpoint: {{listen: 127.0.0.1, port: {free_port()}}}  # fixed: the pods keep their URLs across the restart
spaces:
  lab:
    backend: kubernetes
    options: {{kubeconfig: kubeconfig.json, namespace: {NS}, page_size: 4}}  # relative to this file
    processors_limit: {LIMIT}
    creation_budget_processors: 2
    shutdown_grace_seconds: 0
    intent_grace_seconds: 5
    delete_retry_seconds: 2
    machinetypes:
      proj-idle:
        root_image: docker://registry.example/idle:1
        user_data: worker.sh
        container_command: /bin/sh /var/run/vacagent/user_data
        target_share: 1
        fizzle_seconds: 30
        backoff_seconds: 4
      proj-busy:
        root_image: docker://registry.example/busy:1
        user_data: worker.sh
        container_command: [/bin/sh, /var/run/vacagent/user_data]
        target_share: 1
        processors_limit: {LIMIT - 2}  # leaves room for proj-idle's probes
        fizzle_seconds: 1
        backoff_seconds: 60
""")
    return config


def live(emulator: kube.KubeEmulator, machinetype: str) -> list[str]:
    return sorted(n for n in emulator.names("pods", NS)
                  if (p := emulator.get("pods", NS, n)) and p["metadata"]["labels"]["vacagent.io/machinetype"] == machinetype
                  and "deletionTimestamp" not in p["metadata"] and p["status"].get("phase") in ("Pending", "Running"))


def feedback(state: Path, machinetype: str) -> dict:
    path = state / "spaces" / "lab" / "machinetypes" / machinetype / "feedback.json"
    return read_json(path) if path.exists() else {}


def test_two_projects_share_a_namespace_by_their_outcomes(tmp_path, vacagent_bin):
    emulator = kube.KubeEmulator(termination_seconds=1)
    server = kube.serve(emulator)
    kubelet = Kubelet(emulator)
    kubelet.start()
    config = site(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    state = tmp_path / "state"
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    try:
        # proj-idle's workers report 300 through the endpoint: it backs off, then probes one at a time.
        wait_for(lambda: feedback(state, "proj-idle").get("consecutive_aborts", 0) >= 2, 60)
        idle_lines = wait_for(lambda: [x for x in accounting(state) if x["machinetype"] == "proj-idle"], 30)
        assert all(line["code"] == 300 and line["aborted"] for line in idle_lines)
        # proj-busy's pods run: it takes its share of the namespace, and more (to its own limit)
        # while proj-idle finds nothing to do.
        wait_for(lambda: len(live(emulator, "proj-busy")) == LIMIT - 2, 60)
        for _ in range(20):
            assert len(live(emulator, "proj-idle")) <= 1  # a single probe while backing off
            assert len(live(emulator, "proj-busy")) + len(live(emulator, "proj-idle")) <= LIMIT
            time.sleep(0.1)
        assert feedback(state, "proj-busy").get("consecutive_aborts", 0) == 0

        # The lab evicts a busy pod: no backoff, and its accounting says the lab ended it.
        victim = live(emulator, "proj-busy")[0]
        emulator.evict(NS, victim)
        line = wait_for(lambda: next((x for x in accounting(state) if x["machine"] == victim), None), 30)
        assert line["cause"] == "reclaimed" and line["aborted"] is False
        assert feedback(state, "proj-busy").get("consecutive_aborts", 0) == 0
        assert kubelet.failures == []

        # SIGKILL, then a restart: nothing leaks, nothing is lost.
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(10)
        daemon = start(vacagent_bin, config, log)
        wait_for(lambda: log.read_bytes().count(b"spaces started") == 2, 30)
        time.sleep(8)  # more than intent_grace_seconds, several cycles

        def consistent():
            pods = emulator.names("pods", NS)
            secrets = emulator.names("secrets", NS)
            records = open_records(state)
            return pods <= records and records <= pods and secrets <= pods and (pods, records)

        pods, records = wait_for(consistent, 30)
        assert pods and pods == records
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except Exception:  # noqa: BLE001 - kill what does not stop
                daemon.kill()
        kubelet.stop.set()
        server.shutdown()
    assert b"Traceback" not in log.read_bytes(), log.read_text()[-3000:]
