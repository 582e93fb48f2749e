"""The real daemon on an EC2 space (moto over HTTP, tests/ec2_cloud.py): it creates, lists and
deletes instances; a capacity error backs off; a spot reclaim does not; a SIGKILL while a create is
in flight leaves no instance without a record."""

import json
import random
import signal
import subprocess
import time

import pytest

pytest.importorskip("boto3")

from cloud_site import feedback, write_site  # noqa: E402
from daemon_helpers import accounting, open_records, start, wait_for  # noqa: E402
from ec2_cloud import ENVIRONMENT, IMAGE, cloud  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def ec2(tmp_path):
    c = cloud()
    site = f"e2e-{random.randrange(16**8):08x}"
    yield c, site
    c.clear_faults()
    c.forget(site)


def instances(c, site) -> dict[str, dict]:
    """The site's instances that still exist (not terminated), by name: what EC2 would bill."""
    pages = c.client().get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:vacagent:site", "Values": [site]}])
    found = {}
    for page in pages:
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                if i["State"]["Name"] != "terminated":
                    found[{t["Key"]: t["Value"] for t in i["Tags"]}["Name"]] = i
    return found


def site_config(tmp_path, c, site, **options):
    return write_site(tmp_path, site, "ec2", c.options(instance_types=["t3.micro", "t3.medium"], page_size=100,
                                                       max_attempts=1, spot=True, **options),
                      {"root_image": IMAGE})


def stop(daemon):
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=30) == 0


def test_daemon_creates_lists_deletes_and_a_spot_reclaim_is_not_an_abort(tmp_path, ec2, vacagent_bin):
    c, site = ec2
    config = site_config(tmp_path, c, site)
    state = tmp_path / "state"
    daemon = start(vacagent_bin, config, tmp_path / "daemon.log", ENVIRONMENT)
    try:
        live = wait_for(lambda: len(instances(c, site)) == 3 and instances(c, site), timeout=60)
        assert set(live) == open_records(state, "cloud")
        assert all(i["InstanceType"] == "t3.medium" and i["InstanceLifecycle"] == "spot" for i in live.values())
        name, reclaimed = sorted(live.items())[0]
        terminations = c.requests["TerminateInstances"]
        c.set_state(reclaimed["InstanceId"], "terminated", "Server.SpotInstanceTermination")
        line = wait_for(lambda: next((a for a in accounting(state) if a["machine"] == name), None), timeout=60)
        assert line["cause"] == "reclaimed" and line["code"] == 100 and not line["aborted"]
        assert c.requests["TerminateInstances"] > terminations  # it deleted what was left of it
        # It ran less than fizzle_seconds, yet the machinetype does not back off: a replacement comes.
        wait_for(lambda: len(instances(c, site)) == 3 and name not in instances(c, site), timeout=60)
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


def test_a_capacity_error_backs_the_machinetype_off(tmp_path, ec2, vacagent_bin):
    c, site = ec2
    before = c.requests["RunInstances"]
    c.inject("RunInstances", "InsufficientInstanceCapacity", 500, count=1,
             message="We currently do not have sufficient t3.medium capacity in the Availability Zone you requested")
    config = site_config(tmp_path, c, site)
    state = tmp_path / "state"
    daemon = start(vacagent_bin, config, tmp_path / "daemon.log", ENVIRONMENT)
    try:
        fb = wait_for(lambda: feedback(state).get("consecutive_aborts") == 1 and feedback(state), timeout=60)
        assert fb["backoff_until"] > time.time() + 30
        time.sleep(2)  # several cycles: nothing more is asked of EC2 while backing off
        assert c.requests["RunInstances"] == before + 1 and instances(c, site) == {}
        assert "InsufficientInstanceCapacity" in fb["last_message"]
    finally:
        stop(daemon)


def test_sigkill_while_a_create_is_in_flight_leaves_no_instance_without_a_record(tmp_path, ec2, vacagent_bin):
    c, site = ec2
    before = c.requests["RunInstances"]
    c.inject("RunInstances", None, count=1, delay=3)  # the first launch answers late
    config = site_config(tmp_path, c, site)
    state = tmp_path / "state"
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log, ENVIRONMENT)
    wait_for(lambda: c.requests["RunInstances"] > before, timeout=60)
    daemon.kill()  # its intent is written, its launch is in flight
    daemon.wait()
    wait_for(lambda: len(instances(c, site)) >= 1, timeout=30)  # EC2 finishes the launch anyway
    daemon = start(vacagent_bin, config, log, ENVIRONMENT)
    try:
        wait_for(lambda: len(instances(c, site)) == 3, timeout=60)
        time.sleep(2)
        live, records = set(instances(c, site)), open_records(state, "cloud")
        assert live <= records, f"instances without a record: {live - records}"
        assert len(live) == 3  # the limit held: the interrupted launch was counted, not repeated
    finally:
        stop(daemon)
