"""The OpenStack backend against the real services (tests/openstack_controlplane.py): what the
conformance suite does not cover: the cloud's own feedback (No valid host, Nova's late quota
re-check, GET /limits), what a create sends, credentials (application credential, clouds.yaml,
a bad password) and that the token never reaches a disk or a log."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from vacagent import errors
from vacagent.backends import nova
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.openstack import OpenStackBackend
from vacagent.clock import SystemClock
from vacagent.model import Cause, MachineState, MachineType, Quota

from daemon_helpers import wait_for
from openstack_support import IMAGE

pytestmark = pytest.mark.openstack


@pytest.fixture
def cloud(openstack_cloud):
    return openstack_cloud


@pytest.fixture
def project(cloud):
    name = cloud.project()
    yield name
    cloud.wipe(name)


def make(cloud, project, tmp_path, site="site", **options):
    return OpenStackBackend(BackendContext(site, "s", tmp_path, cloud.options(project, **options), SystemClock()))


def mt(processors=1, **extra):
    return MachineType("mt", processors=processors, extra={"root_image": IMAGE, **extra})


def listed(backend, name, predicate=lambda m: True, timeout=120):
    return wait_for(lambda: next((m for m in backend.list_machines() if m.name == name and predicate(m)), None),
                timeout, interval=0.3)


def test_create_sends_flavor_image_user_data_tags_metadata_key_and_zone(cloud, project, tmp_path):
    admin = cloud.admin(project)
    admin.compute.create_keypair(name=f"key-{project}")  # keypairs belong to the user, not the project
    backend = make(cloud, project, tmp_path, key_name=f"key-{project}", availability_zones=["nova"],
                   security_groups=["default"])
    machine = backend.create_machine(CreateRequest("mt-create", mt(2), "#!/bin/sh\necho hello mt-create\n"))
    assert machine.processors == 2  # the flavor's vCPUs
    server = admin.compute.get(f"/servers/{machine.backend_id}", microversion="2.52").json()["server"]
    assert server["flavor"]["original_name"] == "vac.2"
    assert server["image"]["id"] == admin.image.find_image(IMAGE).id
    assert set(server["tags"]) == set(nova.tags("site", "s", "mt"))
    assert server["metadata"] == {"vacagent_site": "site", "vacagent_space": "s", "vacagent_machinetype": "mt"}
    assert server["key_name"] == f"key-{project}" and server["OS-EXT-AZ:availability_zone"] == "nova"
    assert base64.b64decode(server["OS-EXT-SRV-ATTR:user_data"]) == b"#!/bin/sh\necho hello mt-create\n"
    running = listed(backend, "mt-create", lambda m: m.state is MachineState.RUNNING)
    assert running.processors == 2 and running.started_at is not None


def test_a_flavor_too_big_for_any_host_fails_with_no_valid_host_as_capacity(cloud, project, tmp_path):
    backend = make(cloud, project, tmp_path, flavor_names=["vac.huge"])
    backend.create_machine(CreateRequest("mt-huge", mt(2), "x"))  # Nova accepts it, then finds no host
    failed = listed(backend, "mt-huge", lambda m: m.state is MachineState.FAILED)
    assert failed.cause is Cause.CAPACITY and failed.message.startswith("500 No valid host was found")


def test_accepted_then_refused_by_novas_quota_recheck_is_a_quota_end(cloud, tmp_path):
    # Nova counts an instance once its cell has it (after scheduling): two creates in a row both pass
    # the API's check of an instances quota of 1, and the conductor's re-check fails one (or both).
    project = cloud.project(quotas={"instances": 1})
    try:
        backend = make(cloud, project, tmp_path)
        backend.list_machines()
        for name in ("mt-late1", "mt-late2"):
            backend.create_machine(CreateRequest(name, mt(), "x"))
        def settled():
            machines = backend.list_machines()
            return len(machines) == 2 and all(m.state is not MachineState.STARTING for m in machines) and machines

        failed = [m for m in wait_for(settled, 120, 0.3) if m.state is MachineState.FAILED]
        assert failed
        assert all(m.cause is Cause.QUOTA and "Quota exceeded for instances" in m.message for m in failed)
    finally:
        cloud.wipe(project)


def test_a_quota_refusal_on_create_is_quota_exceeded(cloud, tmp_path):
    project = cloud.project(quotas={"instances": 1})
    try:
        backend = make(cloud, project, tmp_path)
        backend.list_machines()
        backend.create_machine(CreateRequest("mt-q1", mt(), "x"))
        # Nova counts an instance once its cell has it: until then a second create passes the API's
        # check and fails the late re-check (the test above).
        listed(backend, "mt-q1", lambda m: m.state is MachineState.RUNNING)
        with pytest.raises(errors.QuotaExceeded, match="creating machine mt-q2: HTTP 403: Quota exceeded"):
            backend.create_machine(CreateRequest("mt-q2", mt(), "x"))
    finally:
        cloud.wipe(project)


def test_quota_is_the_projects_limits_less_what_other_servers_use(cloud, tmp_path):
    project = cloud.project(quotas={"cores": 10, "instances": 4})
    try:
        backend = make(cloud, project, tmp_path)
        backend.create_machine(CreateRequest("mt-mine", mt(2), "x"))
        admin = cloud.admin(project)
        admin.compute.create_server(name="not-vacagent", flavor_id=admin.compute.find_flavor("vac.1").id,
                                    image_id=admin.image.find_image(IMAGE).id, networks="none")
        listed(backend, "mt-mine")
        # cores: 10 less the other server's 1; instances: 4 less 1. Ours count as ours, not as used.
        assert wait_for(lambda: backend.quota() == Quota(processors=9, machines=3), 60)
        cloud.root.compute.update_quota_set(cloud.project_id(project), cores=-1, instances=-1)
        assert backend.quota() == Quota(None, None)
    finally:
        cloud.wipe(project)


def test_application_credential_authenticates(cloud, project, tmp_path):
    admin = cloud.admin(project)
    user = admin.identity.find_user("admin")
    credential = admin.identity.create_application_credential(user, name=f"vacagent-{project}")
    options = cloud.options(project)
    options["auth"] = {"auth_url": cloud.plane.auth_url, "application_credential_id": credential.id,
                       "application_credential_secret": credential.secret}
    backend = OpenStackBackend(BackendContext("site", "s", tmp_path, options, SystemClock()))
    backend.create_machine(CreateRequest("mt-appcred", mt(), "x"))
    assert listed(backend, "mt-appcred")


def test_a_cloud_named_in_clouds_yaml(cloud, project, tmp_path):
    auth = cloud.auth(project)
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  lab:\n    region_name: RegionOne\n    auth:\n" +
                      "".join(f"      {k}: {v}\n" for k, v in auth.items()))
    options = {"cloud": "lab", "clouds_file": str(clouds), "network": "none", "flavor_names": ["vac.1"]}
    backend = OpenStackBackend(BackendContext("site", "s", tmp_path, options, SystemClock()))
    assert backend.list_machines() == []
    with pytest.raises(errors.ConfigError, match="options.cloud: .*nowhere"):
        OpenStackBackend(BackendContext("site", "s", tmp_path, {**options, "cloud": "nowhere"}, SystemClock()))


def test_wrong_credentials_are_a_configuration_error(cloud, project, tmp_path):
    options = cloud.options(project)
    options["auth"] = {**options["auth"], "password": "wrong"}
    backend = OpenStackBackend(BackendContext("site", "s", tmp_path, options, SystemClock()))
    with pytest.raises(errors.ConfigError, match="refused the space's credentials"):
        backend.list_machines()


def test_a_network_name_must_name_exactly_one_network(cloud, project, tmp_path):
    backend = make(cloud, project, tmp_path, network="no-such-net")
    with pytest.raises(errors.Permanent, match="0 networks named 'no-such-net'"):
        backend.create_machine(CreateRequest("mt-net", mt(), "x"))


def test_the_token_is_never_written_or_logged(cloud, project, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    backend = make(cloud, project, tmp_path)
    backend.list_machines()
    backend.create_machine(CreateRequest("mt-token", mt(), "x"))
    token = backend.conn.session.get_token()
    assert token and len(token) > 20
    assert token not in caplog.text
    caches = [tmp_path, Path.home() / ".cache" / "openstack", Path.home() / ".config" / "openstack"]
    for path in (p for root in caches if root.exists() for p in root.rglob("*")):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_validate_online_names_a_missing_image_and_a_flavor_that_does_not_fit(cloud, project, tmp_path, capsys):
    from vacagent import cli

    options = cloud.options(project, flavor_names=["vac.1"])
    (tmp_path / "work.sh").write_text("#!/bin/sh\n")
    config = tmp_path / "vacagent.yaml"
    config.write_text(f"""
site: lab
state_dir: state
endpoint: {{port: 0}}
spaces:
  cloud:
    backend: openstack
    options: {json.dumps(options)}
    machinetypes:
      good: {{root_image: {IMAGE}, processors: 1, user_data: work.sh}}
      no-image: {{root_image: no-such-image, processors: 1, user_data: work.sh}}
      too-big: {{root_image: {IMAGE}, processors: 8, user_data: work.sh}}
""")
    assert cli.main(["validate", "--online", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "machinetype no-image: root_image: no active image 'no-such-image' in Glance" in out
    assert "machinetype too-big: no usable flavor (vac.1: 1 vCPUs, outside 8-8)" in out
    assert "machinetype good" not in out


def test_a_server_left_out_of_a_listing_is_found_when_looked_up(cloud, project, tmp_path):
    """A listing that leaves a live server out (Nova's, across cells and build requests) must not
    close its record: the cycle asks for it alone.  Here the proxy answers one listing with nothing."""
    backend = make(cloud, project, tmp_path, faulty=True)
    made = backend.create_machine(CreateRequest("mt-hidden", mt(), "#!/bin/sh\n"))
    listed(backend, "mt-hidden")
    gone = backend.create_machine(CreateRequest("mt-gone", mt(), "#!/bin/sh\n"))
    listed(backend, "mt-gone")
    admin = cloud.admin(project)
    admin.compute.delete_server(gone.backend_id)
    admin.compute.wait_for_delete(admin.compute.get_server(gone.backend_id), wait=60)
    cloud.proxy.inject("GET", r"/servers/detail", 200, {"servers": []})
    assert backend.list_machines() == []
    before = backend.requests_made
    (found,) = backend.look_up([made, gone])
    assert (found.name, found.backend_id) == ("mt-hidden", made.backend_id)
    assert backend.requests_made == before + 2  # one GET per machine asked for; the deleted one is a 404
