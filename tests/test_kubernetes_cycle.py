"""The daemon's real cycle on the kubernetes backend (real client, API emulator over HTTP):
how pods' outcomes become feedback when the endpoint heard nothing from them.

Time is an argument of the cycle: `now` is advanced by hand past `max_starting_seconds`,
while the pods' own times come from the emulator.
"""

from __future__ import annotations

import json
import time

import pytest

from vacagent import cycle
from vacagent.config import Settings, SpaceSettings
from vacagent.model import SpaceLimits
from vacagent.report import Reporter

import kube_emulator as kube
from daemon_helpers import accounting

NS = "lab"


@pytest.fixture
def lab(tmp_path):
    emulator = kube.KubeEmulator()
    server = kube.serve(emulator)
    (tmp_path / "kubeconfig.json").write_text(json.dumps(kube.kubeconfig(f"http://127.0.0.1:{server.server_address[1]}")))
    (tmp_path / "worker.sh").write_text("#!/bin/sh\n")
    definition = {"user_data": str(tmp_path / "worker.sh"), "root_image": "registry.example/w:1",
                  "fizzle_seconds": 60, "backoff_seconds": 100}
    space = SpaceSettings(
        name="s", backend="kubernetes", options={"kubeconfig": str(tmp_path / "kubeconfig.json"), "namespace": NS},
        limits=SpaceLimits(processors_limit=1, max_starting_seconds=600), machinetypes={"a": definition},
    )
    settings = Settings(site="site", state_dir=tmp_path / "state", spaces={"s": space})
    yield emulator, cycle.build(settings, space, Reporter()), settings.state_dir
    server.shutdown()


def first_pod(lab) -> tuple[str, float]:
    emulator, space, _ = lab
    now = time.time()
    [name] = cycle.run_once(space, now)["created"]["a"]
    return name, now


def finish(lab, now: float) -> dict:
    """Cycles until the machine is closed; its accounting line."""
    _, space, state = lab
    for step in range(5):
        cycle.run_once(space, now + step)
        if accounting(state):
            [line] = accounting(state)
            return line
    raise AssertionError("not closed")


def test_an_unschedulable_pod_fails_to_start_for_lack_of_capacity(lab):
    emulator, space, state = lab
    name, now = first_pod(lab)
    emulator.unschedulable(NS, name)
    assert cycle.run_once(space, now + 300)["deleted"] == []  # pending, within max_starting_seconds
    line = finish(lab, now + 601)
    assert (line["shutdown_message"], line["aborted"], line["cause"]) == ("700 Failed to start", True, "capacity")
    assert space.store.feedback("a").consecutive_aborts == 0  # the cluster's lack of room, not the project's abort
    # no backoff: a later cycle tries a new pod; the refused one and its Secret are gone
    assert name not in emulator.names("pods", NS) and name not in emulator.names("secrets", NS)


def test_an_image_that_cannot_be_pulled_is_a_500_abort_at_once(lab):
    emulator, space, _ = lab
    name, now = first_pod(lab)
    emulator.wait_container(NS, name, "ImagePullBackOff", 'Back-off pulling image "registry.example/w:1"')
    line = finish(lab, now + 1)
    assert line["shutdown_message"] == '500 ImagePullBackOff: Back-off pulling image "registry.example/w:1"'
    assert line["aborted"] is True
    assert cycle.run_once(space, now + 10)["held"]["a"].startswith("backoff until")


def test_a_termination_message_stands_when_the_endpoint_heard_nothing(lab):
    emulator, _, _ = lab
    name, now = first_pod(lab)
    emulator.run(NS, name)
    emulator.terminate(NS, name, 0, "300 No more work available")
    line = finish(lab, now + 120)
    assert (line["shutdown_message"], line["code"], line["aborted"]) == ("300 No more work available", 300, True)


def test_a_failed_container_without_a_code_reads_700_with_its_reason(lab):
    emulator, _, _ = lab
    name, now = first_pod(lab)
    emulator.run(NS, name)
    emulator.terminate(NS, name, 137, reason="OOMKilled")
    line = finish(lab, now + 120)
    assert line["shutdown_message"] == "700 OOMKilled (exit code 137)"


def test_a_quota_refusal_backs_off_with_the_apis_message_in_the_decision(lab):
    emulator, space, state = lab
    emulator.pods_quota = 0
    now = time.time()
    record = cycle.run_once(space, now)
    assert record["create_failed"] == ["a"]
    held = cycle.run_once(space, now + 1)["held"]["a"]
    assert "exceeded quota: compute-resources, requested: pods=1, used: pods=0, limited: pods=0" in held
    assert emulator.names("pods", NS) == set()
