"""The real daemon on a cloud space, EC2 (moto over HTTP, tests/ec2_cloud.py) and GCE (the emulator,
tests/gce_emulator.py): it creates, lists and deletes VMs; a capacity refusal backs the machinetype
off; a spot reclaim does not; a SIGKILL while a create is in flight leaves no VM without a record."""

import json
import random
import signal
import subprocess
import time

import pytest

from cloud_site import feedback, write_site
from daemon_helpers import accounting, open_records, start, wait_for

pytestmark = pytest.mark.slow


class EC2:
    def __init__(self):
        pytest.importorskip("boto3")
        from ec2_cloud import ENVIRONMENT, IMAGE, cloud

        self.cloud, self.image, self.environment = cloud(), IMAGE, ENVIRONMENT

    def config(self, tmp_path, site):
        options = self.cloud.options(instance_types=["t3.micro", "t3.medium"], page_size=100, max_attempts=1, spot=True)
        return write_site(tmp_path, site, "ec2", options, {"root_image": self.image})

    def live(self, site) -> dict[str, dict]:
        """The site's instances that still exist (not terminated), by name: what EC2 would bill."""
        pages = self.cloud.client().get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:vacagent:site", "Values": [site]}])
        return {next(t["Value"] for t in i["Tags"] if t["Key"] == "Name"): i
                for page in pages for r in page["Reservations"] for i in r["Instances"]
                if i["State"]["Name"] != "terminated"}

    def as_launched(self, vm) -> bool:
        return vm["InstanceType"] == "t3.medium" and vm["InstanceLifecycle"] == "spot"

    def reclaim(self, vm) -> None:
        self.cloud.set_state(vm["InstanceId"], "terminated", "Server.SpotInstanceTermination")

    def refuse_next_create(self) -> None:
        self.cloud.inject("RunInstances", "InsufficientInstanceCapacity", 500,
                          message="We currently do not have sufficient t3.medium capacity in the Availability Zone")

    def slow_next_create(self, seconds: float) -> None:
        self.cloud.inject("RunInstances", None, delay=seconds)

    def creates(self) -> int:
        return self.cloud.requests["RunInstances"]

    def deletes(self) -> int:
        return self.cloud.requests["TerminateInstances"]

    def cleanup(self, site) -> None:
        self.cloud.clear_faults()
        self.cloud.forget(site)


class GCE:
    def __init__(self):
        pytest.importorskip("google.cloud.compute_v1")
        from gce_cloud import IMAGE, cloud

        self.cloud, self.image, self.environment = cloud(), IMAGE, {}

    def config(self, tmp_path, site):
        options = self.cloud.options(machine_types=["e2-small", "e2-standard-2"], page_size=100, spot=True)
        return write_site(tmp_path, site, "gce", options, {"root_image": self.image})

    def live(self, site) -> dict[str, dict]:
        from vacagent.backends.gce import label_value

        with self.cloud.emulator.lock:
            return {name: vm for (_, _, name), vm in self.cloud.emulator.instances.items()
                    if vm["labels"].get("vacagent-site") == label_value(site)}

    def as_launched(self, vm) -> bool:
        return (vm["machineType"].endswith("/e2-standard-2") and vm["scheduling"]["provisioningModel"] == "SPOT"
                and vm["metadata"]["items"][0]["key"] == "user-data")

    def reclaim(self, vm) -> None:
        self.cloud.emulator.preempt(vm["name"])

    def refuse_next_create(self) -> None:
        self.cloud.emulator.fail_next_insert("ZONE_RESOURCE_POOL_EXHAUSTED", "The zone does not have enough resources")

    def slow_next_create(self, seconds: float) -> None:
        self.cloud.emulator.inject("instances", "POST", None, delay=seconds)

    def creates(self) -> int:
        return self.cloud.requests["instances"]

    def deletes(self) -> int:
        return self.cloud.requests["instance"]

    def cleanup(self, site) -> None:
        from vacagent.backends.gce import label_value

        self.cloud.emulator.clear()
        self.cloud.forget(label_value(site))


@pytest.fixture(params=[EC2, GCE], ids=["ec2", "gce"])
def cloud(request):
    c = request.param()
    site = f"e2e-{random.randrange(16**8):08x}"
    yield c, site
    c.cleanup(site)


def stop(daemon):
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0


def test_daemon_creates_lists_deletes_and_a_spot_reclaim_is_not_an_abort(tmp_path, cloud, vacagent_bin):
    c, site = cloud
    config = c.config(tmp_path, site)
    state = tmp_path / "state"
    daemon = start(vacagent_bin, config, tmp_path / "daemon.log", c.environment)
    try:
        live = wait_for(lambda: len(c.live(site)) == 3 and c.live(site), timeout=60)
        assert set(live) == open_records(state, "cloud")
        assert all(c.as_launched(vm) for vm in live.values())
        name, reclaimed = sorted(live.items())[0]
        deletes = c.deletes()
        c.reclaim(reclaimed)
        line = wait_for(lambda: next((a for a in accounting(state) if a["machine"] == name), None), timeout=60)
        assert line["cause"] == "reclaimed" and line["code"] == 100 and not line["aborted"]
        assert c.deletes() > deletes  # it deleted what was left of it
        # It ran less than fizzle_seconds, yet the machinetype does not back off: a replacement comes.
        wait_for(lambda: len(c.live(site)) == 3 and name not in c.live(site), timeout=60)
        assert feedback(state).get("consecutive_aborts", 0) == 0
    finally:
        stop(daemon)
    status = subprocess.run([vacagent_bin, "status", "--config", str(config), "--json"],
                            capture_output=True, text=True, check=True)
    burst = json.loads(status.stdout)["spaces"][0]["machinetypes"]["burst"]
    assert burst["reclaimed_last_week"] == 1 and burst["reclaim_rate"] == 1.0
    text = subprocess.run([vacagent_bin, "status", "--config", str(config)], capture_output=True, text=True).stdout
    assert "reclaimed 1/1 (100%)" in text
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_a_capacity_refusal_backs_the_machinetype_off_without_counting_an_abort(tmp_path, cloud, vacagent_bin):
    """The cloud's refusal is not the project's abort, but the full cloud is not asked again every cycle."""
    c, site = cloud
    before = c.creates()
    c.refuse_next_create()
    state = tmp_path / "state"
    config = c.config(tmp_path, site)
    daemon = start(vacagent_bin, config, tmp_path / "daemon.log", c.environment)
    try:
        fb = wait_for(lambda: feedback(state).get("kind") == "capacity" and feedback(state), timeout=60)
        assert fb["backoff_until"] > time.time() + 30 and fb.get("consecutive_aborts", 0) == 0
        time.sleep(2)  # several cycles: nothing more is asked of the cloud while backing off
        assert c.creates() == before + 1 and c.live(site) == {}
        assert "RESOURCE_POOL_EXHAUSTED" in fb["last_message"] or "InsufficientInstanceCapacity" in fb["last_message"]
        decisions = [json.loads(line) for line in (state / "decisions" / "cloud.jsonl").read_text().splitlines()]
        (held,) = [d["held"]["burst"] for d in decisions if d.get("create_failed")][:1]
        assert held.startswith("capacity: create refused") and "backoff until" in held
        text = subprocess.run([vacagent_bin, "status", "--config", str(config)], capture_output=True, text=True).stdout
        assert "(the cloud refused: capacity or quota)" in text
    finally:
        stop(daemon)


def test_sigkill_while_a_create_is_in_flight_leaves_no_vm_without_a_record(tmp_path, cloud, vacagent_bin):
    c, site = cloud
    before = c.creates()
    c.slow_next_create(3)  # the first create answers late
    config = c.config(tmp_path, site)
    state = tmp_path / "state"
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log, c.environment)
    wait_for(lambda: c.creates() > before, timeout=60)
    daemon.kill()  # its intent is written, its create is in flight
    daemon.wait()
    wait_for(lambda: len(c.live(site)) >= 1, timeout=30)  # the cloud finishes the create anyway
    daemon = start(vacagent_bin, config, log, c.environment)
    try:
        wait_for(lambda: len(c.live(site)) == 3, timeout=60)
        time.sleep(2)
        live, records = set(c.live(site)), open_records(state, "cloud")
        assert live <= records, f"VMs without a record: {live - records}"
        assert len(live) == 3  # the limit held: the interrupted create was counted, not repeated
    finally:
        stop(daemon)
