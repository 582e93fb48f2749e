"""The OpenStack backend's pure half (vacagent/backends/nova.py) and the quota rule of the planner: tables."""

import pytest

from vacagent import errors
from vacagent.backends import nova
from vacagent.model import Cause, MachineState, MachineType, Quota, SpaceLimits
from vacagent.planner import NO_PROCESSORS_LIMIT, within_quota


def server(status="ACTIVE", **kw):
    base = {"id": "u-1", "name": "mt-1", "status": status, "metadata": nova.metadata("site", "s", "mt"),
            "tags": nova.tags("site", "s", "mt"), "flavor": {"vcpus": 4, "ram": 8192},
            "OS-SRV-USG:launched_at": "2026-12-02T03:00:00.000000", "updated": "2026-12-02T04:00:00Z"}
    base.update(kw)
    return base


@pytest.mark.parametrize("status,state", [
    ("BUILD", MachineState.STARTING), ("ACTIVE", MachineState.RUNNING), ("REBOOT", MachineState.RUNNING),
    ("SHUTOFF", MachineState.STOPPED), ("ERROR", MachineState.FAILED), ("DELETED", MachineState.DELETING),
    ("SOFT_DELETED", MachineState.DELETING), ("PAUSED", MachineState.UNKNOWN), ("SHELVED", MachineState.UNKNOWN),
    ("SOMETHING_NEW", MachineState.UNKNOWN), ("", MachineState.UNKNOWN),
])
def test_nova_status_maps_to_a_machine_state(status, state):
    assert nova.to_machine(server(status)).state is state


def test_a_server_being_deleted_is_deleting_whatever_its_status():
    assert nova.to_machine(server("ACTIVE", **{"OS-EXT-STS:task_state": "deleting"})).state is MachineState.DELETING


def test_translation_reads_name_machinetype_id_flavor_vcpus_and_times():
    m = nova.to_machine(server("SHUTOFF"))
    assert (m.name, m.machinetype, m.backend_id, m.processors) == ("mt-1", "mt", "u-1", 4)
    assert m.started_at == 1796180400.0 and m.stopped_at == 1796184000.0
    assert nova.to_machine(server("ACTIVE")).stopped_at is None


@pytest.mark.parametrize("fault,cause,message", [
    ("No valid host was found. There are not enough hosts available.", Cause.CAPACITY,
     "500 No valid host was found. There are not enough hosts available."),
    ("Quota exceeded for instances: Requested 1, but already used 2 of 2 instances", Cause.QUOTA,
     "500 Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"),
    ("Build of instance x aborted: image corrupt", None, "700 Build of instance x aborted: image corrupt"),
    (None, None, "700 server in ERROR without a fault"),
])
def test_error_carries_the_fault_and_its_cause(fault, cause, message):
    m = nova.to_machine(server("ERROR", fault={"message": fault, "code": 500} if fault else None))
    assert (m.state, m.cause, m.message) == (MachineState.FAILED, cause, message)


def test_servers_without_this_sites_marks_are_not_ours():
    assert nova.is_ours(server(), "site", "s")
    assert not nova.is_ours(server(metadata=nova.metadata("other", "s", "mt")), "site", "s")
    assert not nova.is_ours(server(tags=[]), "site", "s")
    assert not nova.is_ours(server(metadata={}), "site", "s")


def test_tags_fit_novas_sixty_characters():
    long = "x" * 70
    tag = nova.tag("mt", long)
    assert len(tag) <= 60 and tag == nova.tag("mt", long) and tag != nova.tag("mt", long + "y")
    assert nova.tag("site", "lab") == "vac-site=lab"


FLAVORS = {"small": {"id": "1", "vcpus": 1, "ram": 2048}, "two": {"id": "2", "vcpus": 2, "ram": 4096},
           "two-thin": {"id": "3", "vcpus": 2, "ram": 2048}, "eight": {"id": "8", "vcpus": 8, "ram": 16384}}


@pytest.mark.parametrize("processors,extra,candidates,chosen", [
    (2, {}, ["small", "two"], "two"),  # 1 vCPU is outside 2-2
    (2, {}, ["two-thin", "two"], "two"),  # 2048 MB does not cover 2 x 2048
    (8, {"min_processors": 1}, ["eight", "two"], "eight"),  # the first that fits, in the candidates' order
    (8, {"min_processors": 1}, ["two", "eight"], "two"),
    (1, {"flavor_names": ["small"]}, ["two"], "small"),  # the machinetype's own candidates come first
    (1, {"flavor_name": "nope, small"}, [], "small"),  # Vcycle's comma-separated flavor_name
])
def test_flavor_choice(processors, extra, candidates, chosen):
    mt = MachineType("mt", processors=processors, extra=extra)
    flavor = nova.choose_flavor(mt, nova.flavor_candidates(mt, candidates), FLAVORS)
    assert flavor is FLAVORS[chosen]


def test_no_usable_flavor_is_permanent_and_says_why_for_each_candidate():
    mt = MachineType("mt", processors=4)
    with pytest.raises(errors.Permanent, match=r"missing: not found; two: 2 vCPUs, outside 4-4"):
        nova.choose_flavor(mt, ["missing", "two"], FLAVORS)
    with pytest.raises(errors.Permanent, match="no flavor_names"):
        nova.choose_flavor(mt, [], FLAVORS)


def test_zones_are_spread_by_this_spaces_machines():
    assert nova.choose_zone([], ["a"]) is None
    assert nova.choose_zone(["a", "b"], []) == "a"
    assert nova.choose_zone(["a", "b"], ["a", "a", "b"]) == "b"
    assert nova.choose_zone(["a", "b"], ["a", "b", "elsewhere"]) == "a"


@pytest.mark.parametrize("status,text,retry_after,kind,delay", [
    (403, "Quota exceeded for cores: Requested 2, but already used 0 of 1 cores", None, errors.QuotaExceeded, None),
    (413, "Quota exceeded", None, errors.QuotaExceeded, None),
    (403, "Policy doesn't allow os_compute_api:servers:create to be performed.", None, errors.Permanent, None),
    (401, "The request you have made requires authentication.", None, errors.ConfigError, None),
    (429, "slow down", "7", errors.Temporary, 7.0),
    (503, "unavailable", None, errors.Temporary, 30.0),
    (500, "boom", "soon", errors.Temporary, 30.0),
    (400, "Image 1234 could not be found.", None, errors.Permanent, None),
])
def test_http_failures_map_to_what_the_caller_does_next(status, text, retry_after, kind, delay):
    error = nova.error_for("creating machine mt-1", status, text, retry_after)
    assert type(error) is kind and str(error).startswith("creating machine mt-1")
    if delay is not None:
        assert error.delay == delay


def test_error_text_reads_novas_bodies():
    assert nova.error_text({"forbidden": {"message": "Quota exceeded", "code": 403}}) == "Quota exceeded"
    assert nova.error_text({"message": "plain"}) == "plain"
    assert nova.error_text("<html>") == "<html>"


LIMITS = SpaceLimits(processors_limit=0, max_machines=None, creation_budget_processors=5)


@pytest.mark.parametrize("configured_machines,quota,processors,machines,why", [
    (None, Quota(40, 10), 40, 10, None),
    (5, Quota(40, 10), 40, 5, None),  # the configuration's max_machines still holds
    (None, Quota(40, None), 40, None, None),  # maxTotalInstances -1
    (None, Quota(None, 10), 0, 10, NO_PROCESSORS_LIMIT),  # maxTotalCores -1 and no processors_limit: hold
    (None, Quota(0, 0), 0, 0, None),
])
def test_quota_stands_in_for_processors_limit(configured_machines, quota, processors, machines, why):
    limits = SpaceLimits(0, configured_machines, 5)
    effective, reason = within_quota(limits, quota)
    assert (effective.processors_limit, effective.max_machines, reason) == (processors, machines, why)
    assert effective.creation_budget_processors == 5


def test_an_unknown_option_is_a_configuration_error_naming_it(tmp_path):
    from vacagent.backends.base import BackendContext
    from vacagent.backends.openstack import OpenStackBackend

    with pytest.raises(errors.ConfigError, match="space s: options.flavours: not an option of the openstack"):
        OpenStackBackend(BackendContext("site", "s", tmp_path, {"auth": {}, "flavours": ["m1"]}))
    with pytest.raises(errors.ConfigError, match="set `cloud`"):
        OpenStackBackend(BackendContext("site", "s", tmp_path, {}))
