"""The EC2 backend: a machine is one EC2 instance, on demand or spot (boto3).

Instances are tagged at launch (`TagSpecifications`: `vacagent:site`,
`vacagent:space`, `vacagent:machinetype`, `Name` = the machine's name), so
no instance of ours ever exists untagged, and they are found again by those
tags through the `describe_instances` paginator: one request per page,
never one per machine.  The create's `ClientToken` is derived from the
site, space and machine name, so a retried create (botocore's retries, or
ours after a timeout) returns the same instance instead of making a second.

The instance type is the first of the candidates (`instance_types`, or the
machinetype's own `instance_type`) that fits the machinetype (`sizing`);
their sizes are looked up once (DescribeInstanceTypes) and a listed
machine's `processors` is its type's vCPUs.

Native states map through `STATES`; an ended instance's state reason may
override the mapping through `REASONS`: a spot reclaim
(`Server.SpotInstanceTermination` / `Server.SpotInstanceShutdown`) is
`Cause.RECLAIMED`, so feedback gives it `100` and never backs off the
project for it.  A terminated instance stays visible in EC2 for about an
hour: ours (`Client.UserInitiatedShutdown`, or any we deleted) is left out
of the listing at once; one that ended by itself is listed stopped until
vacagent deletes it.  EC2's API is eventually consistent: an instance a
listing leaves out is described by id (`look_up`) before its record is
closed as gone.

Errors map through `error_kind` to `errors.py` types.  Credentials come
from boto3's standard chain (environment, shared files with an optional
`profile`, instance role); nothing here logs or stores them.

Neighbours: `base` (the protocol), `sizing` (the fit rule),
docs/backends/ec2.md (options, IAM policy, spot behaviour).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from vacagent.backends import refusals, sizing
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.errors import Permanent, Temporary
from vacagent.model import Cause, Machine, MachineState, MachineType

TAG_SITE, TAG_SPACE, TAG_MACHINETYPE = "vacagent:site", "vacagent:space", "vacagent:machinetype"

STATES = {
    "pending": MachineState.STARTING,
    "running": MachineState.RUNNING,
    "shutting-down": MachineState.DELETING,
    "terminated": MachineState.STOPPED,
    "stopping": MachineState.STOPPED,
    "stopped": MachineState.STOPPED,
}
ENDED = frozenset({"shutting-down", "terminated", "stopping", "stopped"})

# An ended instance's state reason code -> (state, cause).
REASONS: dict[str, tuple[MachineState, Cause | None]] = {
    "Server.SpotInstanceTermination": (MachineState.STOPPED, Cause.RECLAIMED),
    "Server.SpotInstanceShutdown": (MachineState.STOPPED, Cause.RECLAIMED),
    "Server.InsufficientInstanceCapacity": (MachineState.FAILED, Cause.CAPACITY),
    "Client.VolumeLimitExceeded": (MachineState.FAILED, Cause.QUOTA),
    "Server.InternalError": (MachineState.FAILED, None),
    "Client.InternalError": (MachineState.FAILED, None),
    "Client.InvalidSnapshot.NotFound": (MachineState.FAILED, None),
}
DELETED_BY_REQUEST = "Client.UserInitiatedShutdown"

CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientHostCapacity", "SpotMaxPriceTooLow",
                            "Unsupported", "InsufficientCapacity"})
QUOTA_CODES = frozenset({"InstanceLimitExceeded", "VcpuLimitExceeded", "MaxSpotInstanceCountExceeded"})
TEMPORARY_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException", "InternalError",
                             "ServiceUnavailable", "Unavailable"})
GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
FILTER_VALUES = 200  # ids per look-up request: a filter of this size EC2 accepts

_TIME_IN_REASON = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


def error_kind(code: str, status: int) -> type[Exception]:
    """The errors.py type for an EC2 error code and HTTP status."""
    return refusals.kind(code, status, CAPACITY_CODES, QUOTA_CODES, TEMPORARY_CODES)


def client_token(site: str, space: str, name: str) -> str:
    """RunInstances' idempotency key (at most 64 ASCII characters): one per machine of one site and space."""
    return "vac-" + hashlib.sha256(f"{site}/{space}/{name}".encode()).hexdigest()[:60]


def _tags(raw: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in raw.get("Tags") or ()}


def _ended_at(reason: str) -> float | None:
    """EC2 puts the time of a stop or termination in StateTransitionReason: "User initiated (2026-12-02 10:00:00 GMT)"."""
    match = _TIME_IN_REASON.search(reason or "")
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def to_machine(raw: Mapping[str, Any], vcpus: Mapping[str, int], deleted: Iterable[str] = ()) -> Machine | None:
    """One described instance -> Machine; None for one whose deletion is done (ours, terminated)."""
    tags = _tags(raw)
    native = raw.get("State", {}).get("Name", "")
    reason = (raw.get("StateReason") or {}).get("Code", "")
    instance_id = raw.get("InstanceId", "")
    if native == "terminated" and (reason == DELETED_BY_REQUEST or instance_id in deleted):
        return None
    state, cause = STATES.get(native, MachineState.UNKNOWN), None
    if native in ENDED and reason in REASONS:
        state, cause = REASONS[reason]
    if instance_id in deleted and native != "terminated":
        state = MachineState.DELETING
    launched = raw.get("LaunchTime")
    started = launched.timestamp() if isinstance(launched, datetime) and native != "pending" else None
    stopped = _ended_at(raw.get("StateTransitionReason", "")) if native in ENDED else None
    return Machine(
        name=tags.get("Name", instance_id),
        machinetype=tags.get(TAG_MACHINETYPE, ""),
        state=state,
        backend_id=instance_id,
        processors=vcpus.get(raw.get("InstanceType", ""), 1),
        started_at=started,
        stopped_at=stopped if stopped is None or started is None else max(stopped, started),
        cause=cause,
    )


class EC2Backend:
    max_user_data_bytes = 16384  # EC2's limit on UserData before base64

    def __init__(self, context: BackendContext):
        options = context.options
        self.context = context
        self.options = options
        space = context.space
        if not options.get("region"):
            raise refusals.option_error(space, "region", "required for backend 'ec2' (for example eu-west-2)")
        self.page_size = int(options.get("page_size", 500))
        if not 5 <= self.page_size <= 1000:
            raise refusals.option_error(space, "page_size", f"{self.page_size}: EC2 pages hold 5 to 1000 instances")
        attempts = int(options.get("max_attempts", 3))
        if attempts < 1:
            raise refusals.option_error(space, "max_attempts", f"{attempts}: at least 1 (1 means no retry)")
        self.spot = bool(options.get("spot", False))
        self.spot_max_price = options.get("spot_max_price")
        if self.spot_max_price is not None and not self.spot:
            raise refusals.option_error(space, "spot_max_price", "only with spot: true")
        timeout = float(options.get("timeout_seconds", 30))
        config = Config(
            retries={"mode": "standard", "total_max_attempts": attempts},
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        session = boto3.session.Session(profile_name=options.get("profile"), region_name=options["region"])
        self.client = session.client("ec2", endpoint_url=options.get("endpoint_url"), config=config)
        self.requests_made = 0
        # Every HTTP request, retries included, whatever the operation.
        self.client.meta.events.register("before-send.ec2", self._count)
        self.sizes: dict[str, sizing.Size] = {}
        self._deleted: set[str] = set()  # instance ids we asked to terminate, while still listed
        self._looked_up = False  # the space's candidates, once, by the first listing

    def _count(self, **_: Any) -> None:
        self.requests_made += 1

    # -- the protocol ----------------------------------------------------

    def list_machines(self) -> list[Machine]:
        try:
            if not self._looked_up:
                self._look_up_candidates()
            raws = self._describe([])
        except (ClientError, BotoCoreError) as e:
            raise self._error(f"listing space {self.context.space}", e) from e
        machines = self._machines(raws)
        self._deleted &= {raw.get("InstanceId") for raw in raws}
        return machines

    def look_up(self, machines: list[Machine]) -> list[Machine]:
        """Describe by id the instances the listing left out (base.LookingUp): EC2's API is eventually
        consistent, so a listing may miss an instance that exists.  The ids go in a filter, not in
        InstanceIds, which fails the whole request when one id is unknown; an instance EC2 no longer
        knows, or one whose deletion is done, is simply not found."""
        ids = [m.backend_id for m in machines if m.backend_id]
        raws = []
        try:
            for i in range(0, len(ids), FILTER_VALUES):
                raws.extend(self._describe([{"Name": "instance-id", "Values": ids[i : i + FILTER_VALUES]}]))
        except (ClientError, BotoCoreError) as e:
            raise self._error(f"space {self.context.space}: looking up {len(ids)} machine(s)", e) from e
        names = {m.name for m in machines}
        return [m for m in self._machines(raws) if m.name in names]

    def create_machine(self, request: CreateRequest) -> Machine:
        mt = request.machinetype
        doing = f"creating machine {request.name}"
        image = mt.extra.get("root_image")
        if not image:
            raise Permanent(f"{doing}: machinetype {mt.name}: root_image: required for EC2 (an AMI id)")
        try:
            size = self._size(mt, doing)
            response = self.client.run_instances(**self._launch(request, str(image), size.name))
        except (ClientError, BotoCoreError) as e:
            raise self._error(doing, e, image=image) from e
        vcpus = {name: s.vcpus for name, s in self.sizes.items()}
        machine = to_machine(response["Instances"][0], vcpus)
        assert machine is not None, "a new instance cannot be terminated at once"
        return machine

    def delete_machine(self, machine: Machine) -> None:
        if not machine.backend_id:
            return  # never created, or never listed: nothing to ask EC2
        try:
            self.client.terminate_instances(InstanceIds=[machine.backend_id])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in GONE_CODES:
                return
            raise self._error(f"deleting machine {machine.name} ({machine.backend_id})", e) from e
        except BotoCoreError as e:
            raise self._error(f"deleting machine {machine.name} ({machine.backend_id})", e) from e
        self._deleted.add(machine.backend_id)

    # -- helpers ---------------------------------------------------------

    def _describe(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """This site's instances in the space (and matching `filters`), through the paginator."""
        filters = [
            {"Name": f"tag:{TAG_SITE}", "Values": [self.context.site]},
            {"Name": f"tag:{TAG_SPACE}", "Values": [self.context.space]},
            *filters,
        ]
        pages = self.client.get_paginator("describe_instances").paginate(
            Filters=filters, PaginationConfig={"PageSize": self.page_size}
        )
        raws = [raw for page in pages for reservation in page["Reservations"] for raw in reservation["Instances"]]
        unknown = {raw.get("InstanceType", "") for raw in raws} - set(self.sizes) - {""}
        if unknown:
            self._look_up(sorted(unknown))
        return raws

    def _machines(self, raws: list[dict[str, Any]]) -> list[Machine]:
        vcpus = {name: size.vcpus for name, size in self.sizes.items()}
        return [m for m in (to_machine(raw, vcpus, self._deleted) for raw in raws) if m is not None]

    def _launch(self, request: CreateRequest, image: str, instance_type: str) -> dict[str, Any]:
        site, space = self.context.site, self.context.space
        tags = [
            {"Key": TAG_SITE, "Value": site},
            {"Key": TAG_SPACE, "Value": space},
            {"Key": TAG_MACHINETYPE, "Value": request.machinetype.name},
            {"Key": "Name", "Value": request.name},
        ]
        params: dict[str, Any] = {
            "ImageId": image,
            "InstanceType": instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": request.user_data,
            "ClientToken": client_token(site, space, request.name),
            # A machine that shuts itself down is gone, not a stopped instance that still costs its disks.
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [{"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")],
        }
        if self.options.get("subnet_id"):
            params["SubnetId"] = self.options["subnet_id"]
        if self.options.get("security_group_ids"):
            params["SecurityGroupIds"] = list(self.options["security_group_ids"])
        if self.options.get("key_name"):
            params["KeyName"] = self.options["key_name"]
        if self.spot:
            spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if self.spot_max_price is not None:
                spot["MaxPrice"] = str(self.spot_max_price)
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}
        return params

    def _look_up_candidates(self) -> None:
        """The first listing learns the space's candidate sizes in one request.  A bad candidate
        does not stop the listing: the create that needs it reports it (naming it) instead."""
        self._looked_up = True
        try:
            self._look_up([str(name) for name in self.options.get("instance_types") or ()])
        except ClientError:
            pass

    def _look_up(self, names: list[str]) -> None:
        """Learn the sizes of these instance types (one request per 100)."""
        for i in range(0, len(names), 100):
            described = self.client.describe_instance_types(InstanceTypes=names[i : i + 100])["InstanceTypes"]
            for t in described:
                self.sizes[t["InstanceType"]] = sizing.Size(
                    t["InstanceType"], t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"]
                )

    def _size(self, mt: MachineType, doing: str) -> sizing.Size:
        names = sizing.candidates(mt, self.options, "instance_types", "instance_type")
        if not names:
            raise Permanent(f"{doing}: no instance type: set options.instance_types of space "
                            f"{self.context.space} or instance_type of machinetype {mt.name}")
        missing = [name for name in names if name not in self.sizes]
        if missing:
            self._look_up(missing)
        sizes = [self.sizes[name] for name in names if name in self.sizes]
        size = sizing.choose(sizes, mt)
        if size is None:
            raise Permanent(f"{doing}: machinetype {mt.name}: {sizing.no_fit(mt, sizes)}")
        return size

    def _error(self, doing: str, e: Exception, image: object = None) -> Exception:
        """A boto3 failure as an errors.py type whose message says what failed and on which value."""
        if isinstance(e, ClientError):
            error = e.response.get("Error", {})
            code, text = error.get("Code", ""), error.get("Message", "")
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            kind = error_kind(code, status)
            detail = f"{code}: {text}"
            if code.startswith("InvalidAMIID") and image is not None and str(image) not in text:
                detail += f" (image {image})"
        else:
            # Bad credentials or parameters never pass; anything else (no answer, a timeout) may next time.
            kind = Permanent if isinstance(e, (NoCredentialsError, ParamValidationError)) else Temporary
            detail = f"{type(e).__name__}: {e}"
        return refusals.typed(kind, f"{doing}: {detail}")
