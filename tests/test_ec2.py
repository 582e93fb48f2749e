"""The EC2 backend beyond the conformance suite: its tables (pure), and what it sends to EC2
(boto3 over HTTP to moto, tests/ec2_cloud.py): tags, user data, client token, spot, retries."""

import base64
from datetime import datetime, timezone

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.clock import SystemClock
from vacagent.errors import CapacityExhausted, ConfigError, Permanent, QuotaExceeded, Temporary
from vacagent.model import Cause, MachineState, MachineType

pytest.importorskip("boto3")
from vacagent.backends.ec2 import EC2Backend, client_token, error_kind, to_machine  # noqa: E402

from backends import EC2Driver  # noqa: E402

LAUNCHED = datetime(2026, 12, 2, 10, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("code,status,kind", [
    ("InsufficientInstanceCapacity", 500, CapacityExhausted),  # a 500, but the code decides
    ("SpotMaxPriceTooLow", 400, CapacityExhausted),
    ("Unsupported", 400, CapacityExhausted),
    ("InstanceLimitExceeded", 400, QuotaExceeded),
    ("VcpuLimitExceeded", 400, QuotaExceeded),
    ("MaxSpotInstanceCountExceeded", 400, QuotaExceeded),
    ("RequestLimitExceeded", 503, Temporary),
    ("SomethingNew", 502, Temporary),
    ("InvalidAMIID.NotFound", 400, Permanent),
    ("InvalidParameterValue", 400, Permanent),
    ("UnauthorizedOperation", 403, Permanent),
])
def test_error_codes_map_to_what_the_caller_does_next(code, status, kind):
    assert error_kind(code, status) is kind


def raw(state="running", reason="", transition="", **kw):
    return {"InstanceId": "i-1", "InstanceType": "m5.large", "LaunchTime": LAUNCHED,
            "State": {"Name": state}, "StateReason": {"Code": reason}, "StateTransitionReason": transition,
            "Tags": [{"Key": "Name", "Value": "mt-1"}, {"Key": "vacagent:machinetype", "Value": "mt"}], **kw}


@pytest.mark.parametrize("state,reason,expected,cause", [
    ("pending", "", MachineState.STARTING, None),
    ("running", "", MachineState.RUNNING, None),
    ("shutting-down", "", MachineState.DELETING, None),
    ("stopped", "Client.UserInitiatedShutdown", MachineState.STOPPED, None),
    ("terminated", "Client.InstanceInitiatedShutdown", MachineState.STOPPED, None),
    ("terminated", "Server.SpotInstanceTermination", MachineState.STOPPED, Cause.RECLAIMED),
    ("shutting-down", "Server.SpotInstanceTermination", MachineState.STOPPED, Cause.RECLAIMED),
    ("stopped", "Server.SpotInstanceShutdown", MachineState.STOPPED, Cause.RECLAIMED),
    ("terminated", "Server.InsufficientInstanceCapacity", MachineState.FAILED, Cause.CAPACITY),
    ("terminated", "Client.VolumeLimitExceeded", MachineState.FAILED, Cause.QUOTA),
    ("running", "Server.SpotInstanceTermination", MachineState.RUNNING, None),  # a reason counts once it ended
    ("rebooting-into-space", "", MachineState.UNKNOWN, None),
])
def test_native_state_and_reason_translate(state, reason, expected, cause):
    m = to_machine(raw(state, reason), {"m5.large": 2})
    assert (m.state, m.cause, m.processors, m.name, m.machinetype) == (expected, cause, 2, "mt-1", "mt")


def test_a_terminated_instance_we_deleted_is_not_listed_and_one_that_ended_by_itself_is():
    assert to_machine(raw("terminated", "Client.UserInitiatedShutdown"), {}) is None
    assert to_machine(raw("terminated", "Server.SpotInstanceTermination"), {}, deleted={"i-1"}) is None
    assert to_machine(raw("shutting-down", "Server.SpotInstanceTermination"), {}, {"i-1"}).state is MachineState.DELETING


def test_start_and_stop_times_come_from_the_launch_time_and_the_transition_reason():
    m = to_machine(raw("terminated", "Client.InstanceInitiatedShutdown",
                       "Service initiated (2026-12-02 10:05:00 GMT)"), {})
    assert m.started_at == LAUNCHED.timestamp() and m.stopped_at == LAUNCHED.timestamp() + 300
    assert to_machine(raw("pending"), {}).started_at is None


def test_client_token_is_stable_per_site_space_and_name_and_fits_ec2s_limit():
    token = client_token("lab.example.org", "aws", "mt-" + "x" * 60)
    assert token == client_token("lab.example.org", "aws", "mt-" + "x" * 60) and len(token) <= 64
    assert token != client_token("other.example.org", "aws", "mt-" + "x" * 60)


@pytest.mark.parametrize("options,key", [({}, "region"), ({"region": "x", "page_size": 2}, "page_size"),
                                         ({"region": "x", "spot_max_price": "0.1"}, "spot_max_price"),
                                         ({"region": "x", "max_attempts": 0}, "max_attempts")])
def test_bad_options_name_the_key(options, key, tmp_path):
    with pytest.raises(ConfigError, match=f"options.{key}"):
        EC2Backend(BackendContext("site", "aws", tmp_path, options, SystemClock()))


@pytest.fixture
def driver(tmp_path):
    d = EC2Driver(tmp_path)
    yield d
    d.cleanup()


def backend(driver, **options):
    context = BackendContext(driver.site, "s", driver.tmp, driver.cloud.options(**options), SystemClock())
    return EC2Backend(context)


def described(driver, instance_id):
    return driver.cloud.client().describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def test_launch_is_tagged_carries_user_data_and_a_client_token_and_picks_the_first_fitting_type(driver):
    b = backend(driver, instance_types=["t3.micro", "t3.medium", "m5.large"])
    mt = MachineType("mt", processors=2, mb_per_processor=3000, extra={"root_image": driver.image})
    m = b.create_machine(CreateRequest("mt-tagged", mt, "#cloud-config\nruncmd: [true]\n"))
    raw = described(driver, m.backend_id)
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags == {"vacagent:site": driver.site, "vacagent:space": "s", "vacagent:machinetype": "mt",
                    "Name": "mt-tagged"}
    assert raw["InstanceType"] == "m5.large"  # t3.medium has 2 vCPUs but only 4096 MB < 2 x 3000
    assert raw["ClientToken"] == client_token(driver.site, "s", "mt-tagged")
    user_data = driver.cloud.client().describe_instance_attribute(InstanceId=m.backend_id, Attribute="userData")
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == "#cloud-config\nruncmd: [true]\n"
    assert m.processors == 2


def test_no_fitting_type_is_permanent_and_names_the_candidates(driver):
    b = backend(driver, instance_types=["t3.micro"])
    mt = MachineType("mt", processors=4, extra={"root_image": driver.image})
    with pytest.raises(Permanent, match=r"t3.micro \(2 vCPUs, 1024 MB\)"):
        b.create_machine(CreateRequest("mt-nofit", mt, ""))


def test_bad_image_is_permanent_and_names_the_image(driver):
    b = backend(driver, instance_types=["t3.medium"])
    mt = MachineType("mt", processors=2, extra={"root_image": "ami-0badbad0"})
    with pytest.raises(Permanent, match="ami-0badbad0"):
        b.create_machine(CreateRequest("mt-badami", mt, ""))


def test_spot_launch_asks_for_the_spot_market_with_the_max_price(driver):
    seen = []
    b = backend(driver, instance_types=["t3.medium"], spot=True, spot_max_price="0.05")
    b.client.meta.events.register("before-parameter-build.ec2.RunInstances", lambda params, **_: seen.append(params))
    mt = MachineType("mt", processors=2, extra={"root_image": driver.image})
    m = b.create_machine(CreateRequest("mt-spot", mt, ""))
    assert described(driver, m.backend_id)["InstanceLifecycle"] == "spot"
    market = seen[0]["InstanceMarketOptions"]
    assert market["MarketType"] == "spot" and market["SpotOptions"]["MaxPrice"] == "0.05"


def test_network_options_reach_the_launch(driver):
    client = driver.cloud.client()
    vpc = client.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = client.create_security_group(GroupName=f"g-{driver.site}", Description="d", VpcId=vpc)["GroupId"]
    client.create_key_pair(KeyName=f"k-{driver.site}")
    b = backend(driver, instance_types=["t3.medium"], subnet_id=subnet, security_group_ids=[group],
                key_name=f"k-{driver.site}")
    m = b.create_machine(CreateRequest("mt-net", MachineType("mt", processors=2,
                                                             extra={"root_image": driver.image}), ""))
    raw = described(driver, m.backend_id)
    assert raw["SubnetId"] == subnet and raw["KeyName"] == f"k-{driver.site}"
    assert [g["GroupId"] for g in raw["SecurityGroups"]] == [group]


def test_throttling_is_retried_by_the_configured_retries_and_every_attempt_is_counted(driver):
    b = backend(driver, instance_types=["t3.medium"], max_attempts=3)
    b.list_machines()
    before = b.requests_made
    driver.cloud.inject("RunInstances", "RequestLimitExceeded", 503, count=2)
    b.create_machine(CreateRequest("mt-retry", MachineType("mt", processors=2,
                                                           extra={"root_image": driver.image}), ""))
    assert b.requests_made - before == 3
    assert [m.name for m in b.list_machines()] == ["mt-retry"]


def test_a_spot_reclaim_is_listed_as_reclaimed_then_gone_once_deleted(driver):
    m = driver.backend.create_machine(driver.request("mt-reclaimed"))
    driver.cloud.set_state(m.backend_id, "terminated", "Server.SpotInstanceTermination")
    listed = {x.name: x for x in driver.backend.list_machines()}["mt-reclaimed"]
    assert listed.state is MachineState.STOPPED and listed.cause is Cause.RECLAIMED
    assert listed.stopped_at is not None
    driver.backend.delete_machine(listed)
    assert driver.backend.list_machines() == []


def test_an_instance_left_out_of_a_listing_is_found_when_looked_up(driver):
    """EC2 is eventually consistent: a listing may leave out a live instance, and the cycle must not close
    its record.  Looked up by id (a filter: InstanceIds would fail the request on the gone one)."""
    hidden = driver.backend.create_machine(driver.request("mt-hidden"))
    gone = driver.backend.create_machine(driver.request("mt-gone"))
    assert {m.name for m in driver.backend.list_machines()} == {"mt-hidden", "mt-gone"}
    driver.backend.delete_machine(gone)
    driver.cloud.hide(hidden.backend_id)
    assert driver.backend.list_machines() == []  # the gone one is done, the hidden one left out
    before = driver.backend.requests_made
    (found,) = driver.backend.look_up([hidden, gone])
    assert (found.name, found.backend_id, found.state) == ("mt-hidden", hidden.backend_id, MachineState.RUNNING)
    assert driver.backend.requests_made == before + 1  # one request for both
    assert driver.backend.look_up([]) == []
