"""The GCE backend beyond the conformance suite: its tables (pure), and what it sends to Compute
Engine (google-cloud-compute over HTTP to tests/gce_emulator.py): labels, user-data, request ids,
spot scheduling, the operation wait on our own endpoint, preemption."""

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.clock import SystemClock
from vacagent.errors import CapacityExhausted, ConfigError, Permanent, QuotaExceeded, Temporary
from vacagent.model import Cause, MachineState, MachineType

compute_v1 = pytest.importorskip("google.cloud.compute_v1")
from vacagent.backends.gce import GCEBackend, error_kind, label_value, request_id, to_machine  # noqa: E402

from backends import GCEDriver  # noqa: E402


@pytest.mark.parametrize("code,status,kind", [
    ("ZONE_RESOURCE_POOL_EXHAUSTED", 503, CapacityExhausted),
    ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", 0, CapacityExhausted),
    ("QUOTA_EXCEEDED", 403, QuotaExceeded),
    ("quotaExceeded", 403, QuotaExceeded),
    ("rateLimitExceeded", 403, Temporary),
    ("", 429, Temporary),
    ("backendError", 500, Temporary),
    ("forbidden", 403, Permanent),
    ("invalid", 400, Permanent),
    ("notFound", 404, Permanent),
])
def test_errors_map_to_what_the_caller_does_next(code, status, kind):
    assert error_kind(code, status) is kind


def vm(status="RUNNING", **kw):
    return compute_v1.Instance(
        name="mt-1", id=77, status=status, zone="https://compute.googleapis.com/compute/v1/projects/p/zones/z-a",
        labels={"vacagent-machinetype": "mt", "vacagent-processors": "4"},
        last_start_timestamp="2026-12-02T10:00:00.000-00:00", last_stop_timestamp="2026-12-02T10:05:00.000-00:00",
        **kw)


@pytest.mark.parametrize("status,expected", [
    ("PROVISIONING", MachineState.STARTING), ("STAGING", MachineState.STARTING),
    ("RUNNING", MachineState.RUNNING), ("STOPPING", MachineState.STOPPED),
    ("TERMINATED", MachineState.STOPPED), ("SUSPENDED", MachineState.STOPPED), ("NEW_THING", MachineState.UNKNOWN),
])
def test_statuses_translate(status, expected):
    m = to_machine(vm(status))
    assert (m.state, m.backend_id, m.processors, m.machinetype, m.cause) == (expected, "z-a/mt-1", 4, "mt", None)


def test_preempted_deleted_and_times():
    m = to_machine(vm("TERMINATED"), preempted={"77"})
    assert m.cause is Cause.RECLAIMED and m.stopped_at - m.started_at == 300
    assert to_machine(vm("RUNNING"), preempted={"77"}).cause is None  # a reclaim counts once it stopped
    assert to_machine(vm("STOPPING"), deleted={"mt-1"}).state is MachineState.DELETING


def test_label_values_are_valid_and_distinct_and_request_ids_stable():
    a, b = label_value("lab.example.org"), label_value("lab_example_org")
    assert a != b and len(a) <= 63 and all(ch.islower() or ch.isdigit() or ch in "_-" for ch in a)
    assert request_id("s", "g", "mt-1") == request_id("s", "g", "mt-1") != request_id("s", "g", "mt-2")


@pytest.mark.parametrize("options,key", [({"zones": ["a"]}, "project"), ({"project": "p"}, "zones"),
                                         ({"project": "p", "zones": ["a"], "page_size": 501}, "page_size"),
                                         ({"project": "p", "zones": ["a"], "credentials_file": "/nonexistent.json"},
                                          "credentials_file")])
def test_bad_options_name_the_key(options, key, tmp_path):
    with pytest.raises(ConfigError, match=f"options.{key}"):
        GCEBackend(BackendContext("site", "g", tmp_path, options, SystemClock()))


@pytest.fixture
def driver(tmp_path):
    d = GCEDriver(tmp_path)
    yield d
    d.cleanup()


def backend(driver, **options):
    return GCEBackend(BackendContext(driver.site, "s", driver.tmp, driver.cloud.options(**options), SystemClock()))


def test_insert_carries_labels_user_data_request_id_spot_and_the_first_fitting_type(driver):
    b = backend(driver, machine_types=["e2-small", "e2-standard-2", "n2-standard-4"], spot=True,
                service_account="worker@p.iam.gserviceaccount.com", subnetwork="regions/europe-west2/subnetworks/lab")
    mt = MachineType("mt", processors=4, mb_per_processor=2048, extra={"root_image": driver.image})
    m = b.create_machine(CreateRequest("mt-labelled", mt, "#cloud-config\nruncmd: [true]\n"))
    (key, raw), = [(k, i) for k, i in driver.emulator.instances.items() if k[2] == "mt-labelled"]
    assert m.backend_id == f"{key[1]}/mt-labelled" and m.processors == 4
    assert raw["labels"] == {**driver.labels, "vacagent-processors": "4"}
    assert raw["machineType"].endswith("/n2-standard-4")  # e2-highcpu-4 is not a candidate; e2-* are too small
    assert raw["metadata"]["items"] == [{"key": "user-data", "value": "#cloud-config\nruncmd: [true]\n"}]
    assert raw["scheduling"]["provisioningModel"] == "SPOT" and raw["scheduling"]["instanceTerminationAction"] == "STOP"
    assert raw["serviceAccounts"][0]["email"] == "worker@p.iam.gserviceaccount.com"
    assert raw["networkInterfaces"][0]["subnetwork"] == "regions/europe-west2/subnetworks/lab"
    ops = [o for o in driver.emulator.operations.values() if o["targetId"] == raw["id"]]
    assert request_id(driver.site, "s", "mt-labelled") in driver.emulator.by_request_id
    assert ops[0]["status"] == "DONE" and driver.emulator.requests["wait"] >= 1  # waited on our own endpoint


def test_machines_spread_over_the_zones(driver):
    for i in range(12):
        driver.backend.create_machine(driver.request(f"mt-spread-{i}"))
    zones = {m.backend_id.split("/")[0] for m in driver.backend.list_machines()}
    assert zones == set(driver.backend.zones)


def test_a_late_stockout_names_the_zones_answer(driver):
    driver.emulator.fail_next_insert("ZONE_RESOURCE_POOL_EXHAUSTED", "The zone 'projects/p/zones/z' does not have "
                                     "enough resources available to fulfill the request.")
    with pytest.raises(CapacityExhausted, match="ZONE_RESOURCE_POOL_EXHAUSTED: The zone"):
        driver.backend.create_machine(driver.request("mt-stockout"))
    assert driver.backend.list_machines() == []


def test_bad_image_and_machine_type_are_permanent_and_named(driver):
    with pytest.raises(Permanent, match="no-such-image"):
        driver.inject("create", "bad-image")
        driver.backend.create_machine(driver.request("mt-badimage"))
    with pytest.raises(Permanent, match="n9-imaginary-4"):
        driver.inject("create", "bad-machine-type")
        driver.backend.create_machine(driver.request("mt-badtype"))


def test_a_preemption_is_looked_up_once_per_stopped_vm(driver):
    m = driver.backend.create_machine(driver.request("mt-preempted"))
    driver.wait(lambda: driver.backend.list_machines())
    driver.emulator.preempt("mt-preempted")
    before = driver.backend.requests_made
    listed = driver.backend.list_machines()[0]
    assert listed.cause is Cause.RECLAIMED and listed.state is MachineState.STOPPED
    assert driver.backend.requests_made - before == 2  # the page, and the zone's preemptions
    before = driver.backend.requests_made
    assert driver.backend.list_machines()[0].cause is Cause.RECLAIMED
    assert driver.backend.requests_made - before == 1
    driver.backend.delete_machine(m)
    driver.wait(lambda: driver.backend.list_machines() == [])
