"""The daemon (`vacagent run`) with an OpenStack space against the real control plane: machines
created, fed back, deleted and accounted; capacity and quota back off with Nova's own message in
`vacagent why`; no server is ever left without a record, even after a SIGKILL mid-create."""

from __future__ import annotations

import base64
import json
import signal
import subprocess

import pytest

from vacagent.backends import nova

from daemon_helpers import accounting, open_records, start, stop_daemon, wait_for
from openstack_support import FAULTY_REGION, IMAGE

pytestmark = [pytest.mark.openstack, pytest.mark.slow]

USER_DATA = "#!/bin/sh\n# machine ##user_data_machine_hostname## of ##user_data_space##\n"


def write_site(tmp_path, cloud, project, site="lab", processors_limit=4, budget=4, flavors=("vac.1", "vac.2"),
               processors=2, region=None, backoff=300, intent_grace=60):
    (tmp_path / "work.sh").write_text(USER_DATA)
    options = cloud.options(project, flavor_names=list(flavors))
    if region:
        options["region"] = region
    limit = f"processors_limit: {processors_limit}" if processors_limit else ""
    config = tmp_path / "vacagent.yaml"
    config.write_text(f"""
site: {site}
state_dir: state
cycle_seconds: 1
endpoint: {{listen: 127.0.0.1, port: 0}}
spaces:
  cloud:
    backend: openstack
    options: {json.dumps(options)}
    {limit}
    creation_budget_processors: {budget}
    intent_grace_seconds: {intent_grace}
    shutdown_grace_seconds: 1
    delete_retry_seconds: 5
    machinetypes:
      work:
        root_image: {IMAGE}
        processors: {processors}
        user_data: work.sh
        fizzle_seconds: 0
        backoff_seconds: {backoff}
""")
    return config


class Daemons:
    """The test's daemons: started by calling, all stopped by `stop` (before the project is wiped: a
    daemon still running would replace the servers the wipe deletes, until the wipe gives up)."""

    def __init__(self, vacagent_bin, log):
        self.vacagent_bin, self.log, self.started = vacagent_bin, log, []

    def __call__(self, config):
        process = start(self.vacagent_bin, config, self.log)
        self.started.append(process)
        return process

    def stop(self):
        for process in self.started:
            stop_daemon(process)


@pytest.fixture
def daemon(tmp_path, vacagent_bin):
    daemons = Daemons(vacagent_bin, tmp_path / "daemon.log")
    yield daemons
    daemons.stop()


@pytest.fixture
def cloud(openstack_cloud):
    return openstack_cloud


def servers(cloud, project):
    return cloud.admin(project).compute.get("/servers/detail", microversion="2.52").json()["servers"]


def why(vacagent_bin, config):
    return subprocess.run([vacagent_bin, "why", "--config", str(config), "-n", "5"], capture_output=True,
                          text=True, timeout=60).stdout


def no_leak(cloud, project, state):
    """Every server has an open record with its id (and so will be fed back, deleted and accounted)."""
    records = open_records(state, "cloud")
    for server in servers(cloud, project):
        assert server["name"] in records, f"server {server['name']} has no record"
        record = json.loads((state / "spaces/cloud/machines" / server["name"] / "machine.json").read_text())
        assert record["backend_id"] in ("", server["id"])


def test_machines_get_the_flavor_tags_metadata_and_user_data_and_are_fed_back_and_accounted(
        tmp_path, cloud, daemon, vacagent_bin):
    project = cloud.project()
    try:
        config = write_site(tmp_path, cloud, project)
        daemon(config)
        def two_active():
            active = [s for s in servers(cloud, project) if s["status"] == "ACTIVE"]
            return active if len(active) == 2 else None

        made = wait_for(two_active, 180, 1)
        admin = cloud.admin(project)
        for server in made:
            assert server["flavor"]["original_name"] == "vac.2"  # 2 processors: vac.1 has too few vCPUs
            assert set(nova.tags("lab", "cloud", "work")) <= set(server["tags"])
            assert server["metadata"] == nova.metadata("lab", "cloud", "work")
            full = admin.compute.get(f"/servers/{server['id']}", microversion="2.52").json()["server"]
            user_data = base64.b64decode(full["OS-EXT-SRV-ATTR:user_data"]).decode()
            assert f"# machine {server['name']} of cloud" in user_data
            record = json.loads((tmp_path / "state/spaces/cloud/machines" / server["name"] / "machine.json").read_text())
            assert record["backend_id"] == server["id"] and record["processors"] == 2
        # A machine that shuts itself down is deleted, and its end is accounted.
        stopped = made[0]
        admin.compute.stop_server(stopped["id"])
        line = wait_for(lambda: next((a for a in accounting(tmp_path / "state")
                                      if a["machine"] == stopped["name"]), None), 180, 1)
        assert line["processors"] == 2
        wait_for(lambda: stopped["id"] not in {s["id"] for s in servers(cloud, project)}, 120, 1)
        wait_for(lambda: len(servers(cloud, project)) == 2, 120, 1)  # replaced
        no_leak(cloud, project, tmp_path / "state")
    finally:
        daemon.stop()
        cloud.wipe(project)


def test_a_flavor_too_big_backs_off_with_novas_no_valid_host(tmp_path, cloud, daemon, vacagent_bin):
    project = cloud.project()
    try:
        config = write_site(tmp_path, cloud, project, flavors=("vac.huge",), processors=2, budget=2)
        daemon(config)
        said = wait_for(lambda: "No valid host was found" in why(vacagent_bin, config) and why(vacagent_bin, config),
                        180, 1)
        assert "backoff until" in said
        feedback = json.loads((tmp_path / "state/spaces/cloud/machinetypes/work/feedback.json").read_text())
        assert feedback["backoff_until"] and "No valid host was found" in feedback["last_message"]
        wait_for(lambda: servers(cloud, project) == [], 120, 1)  # the ERROR server is deleted, not left
    finally:
        daemon.stop()
        cloud.wipe(project)


def test_an_instances_quota_of_two_gives_two_machines_and_a_quota_backoff(tmp_path, cloud, daemon, vacagent_bin):
    project = cloud.project(quotas={"instances": 2})
    try:
        config = write_site(tmp_path, cloud, project, processors_limit=10, budget=10, flavors=("vac.1",),
                            processors=1)
        daemon(config)
        wait_for(lambda: "Quota exceeded" in why(vacagent_bin, config), 180, 1)
        wait_for(lambda: [s["status"] for s in servers(cloud, project)] == ["ACTIVE", "ACTIVE"], 180, 1)
        feedback = json.loads((tmp_path / "state/spaces/cloud/machinetypes/work/feedback.json").read_text())
        assert feedback["backoff_until"] and "Quota exceeded" in feedback["last_message"]
        no_leak(cloud, project, tmp_path / "state")
    finally:
        daemon.stop()
        cloud.wipe(project)


def test_without_processors_limit_the_projects_quota_limits(tmp_path, cloud, daemon, vacagent_bin):
    project = cloud.project(quotas={"instances": 3, "cores": 20})
    try:
        config = write_site(tmp_path, cloud, project, processors_limit=None, budget=10, flavors=("vac.1",),
                            processors=1)
        daemon(config)
        wait_for(lambda: len(servers(cloud, project)) == 3, 180, 1)
        said = wait_for(lambda: "max_machines reached (3/3)" in why(vacagent_bin, config)
                        and why(vacagent_bin, config), 120, 1)
        assert "Quota exceeded" not in said  # planned within the quota: never refused
        last = json.loads((tmp_path / "state/decisions/cloud.jsonl").read_text().splitlines()[-1])
        assert last["processors_limit"] == 20
        no_leak(cloud, project, tmp_path / "state")
    finally:
        daemon.stop()
        cloud.wipe(project)


@pytest.mark.parametrize("when", ["before-the-request", "request-in-flight"])
def test_sigkill_between_intent_and_create_leaves_no_server_without_a_record(when, tmp_path, cloud, daemon):
    project = cloud.project()
    try:
        config = write_site(tmp_path, cloud, project, processors_limit=1, budget=1, flavors=("vac.1",),
                            processors=1, region=FAULTY_REGION, intent_grace=15)
        cloud.proxy.inject("POST", r"/servers$", delay=5)  # a create reaches nova 5 s after it is sent
        first = daemon(config)
        state = tmp_path / "state"
        if when == "before-the-request":
            wait_for(lambda: open_records(state, "cloud"), 60, 0.02)  # the intent is written
        else:
            wait_for(lambda: ("POST", "/v2.1/servers") in cloud.proxy.arrived, 60, 0.02)  # the create is sent
        first.send_signal(signal.SIGKILL)
        first.wait()
        daemon(config)
        # Either nova made the server after the daemon died, and the record of the intent adopts it,
        # or it never came, and the record is closed after intent_grace_seconds: one machine, all recorded.
        wait_for(lambda: [s["status"] for s in servers(cloud, project)] == ["ACTIVE"], 120, 1)
        name = servers(cloud, project)[0]["name"]
        wait_for(lambda: json.loads((state / "spaces/cloud/machines" / name / "machine.json").read_text())["listed"],
                 60, 1)
        no_leak(cloud, project, state)
        wait_for(lambda: open_records(state, "cloud") == {name}, 60, 1)
        assert len(servers(cloud, project)) == 1
    finally:
        daemon.stop()
        cloud.wipe(project)
