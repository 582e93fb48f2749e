"""The GCE backend: a machine is one Compute Engine VM, standard or spot (google-cloud-compute).

VMs carry labels (`vacagent-site`, `vacagent-space`, `vacagent-machinetype`,
and `vacagent-processors`, the chosen machine type's vCPUs) from their
insert, the rendered user_data as metadata `user-data` (cloud-init reads
it), and the insert's `request_id` is derived from the site, space and
machine name: GCE answers a repeated insert with the first operation, and
a taken name with 409, which counts as created when the VM is ours.

Machines are spread over the space's `zones` by their name's hash (so
a retried create goes to the same zone).  Listing is one aggregated list per cycle, filtered
by the site and space labels, paged by `page_size`.  An insert's operation
is waited on with a `ZoneOperationsClient` built with the same client
options (the client's own polling would ask the public endpoint), for at
most `operation_wait_seconds`: an insert refused late (a zone stockout, a
quota re-check) is mapped like a refusal at once.

Native statuses map through `STATUSES`; a spot VM that GCE preempted
(found by the zone's `compute.instances.preempted` operations, looked up
once per stopped spot VM) is `Cause.RECLAIMED`: feedback gives it `100` and
never backs off the project for it.

Neighbours: `base` (the protocol), `sizing` (the fit rule), `ec2` (the same
ideas on AWS), docs/backends/gce.md (options, IAM role, spot behaviour).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from typing import Iterable

import requests
from google.api_core import exceptions as gexc
from google.auth.exceptions import TransportError
from google.api_core.client_options import ClientOptions
from google.cloud import compute_v1

from vacagent.backends import refusals, sizing
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.errors import Permanent, Temporary
from vacagent.model import Cause, Machine, MachineState, MachineType

LABEL_SITE, LABEL_SPACE = "vacagent-site", "vacagent-space"
LABEL_MACHINETYPE, LABEL_PROCESSORS = "vacagent-machinetype", "vacagent-processors"
SCOPES = ["https://www.googleapis.com/auth/compute"]
PREEMPTED = "compute.instances.preempted"

STATUSES = {
    "PROVISIONING": MachineState.STARTING,
    "STAGING": MachineState.STARTING,
    "RUNNING": MachineState.RUNNING,
    "REPAIRING": MachineState.RUNNING,
    "STOPPING": MachineState.STOPPED,
    "SUSPENDING": MachineState.STOPPED,
    "SUSPENDED": MachineState.STOPPED,
    "TERMINATED": MachineState.STOPPED,
}

CAPACITY = frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                      "RESOURCE_POOL_EXHAUSTED", "resourcePoolExhausted", "STOCKOUT"})
QUOTA = frozenset({"QUOTA_EXCEEDED", "quotaExceeded"})
TEMPORARY = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RESOURCE_OPERATION_RATE_EXCEEDED",
                       "INTERNAL_ERROR", "backendError"})
# No answer at all (connection refused, timeout, the token endpoint down): the next cycle tries again.
NO_ANSWER = (requests.RequestException, TransportError)
_LABEL_VALUE = re.compile(r"[^a-z0-9_-]")


def error_kind(code: str, status: int) -> type[Exception]:
    """The errors.py type for a GCE error (an operation's error code or an HTTP error's reason) and status."""
    return refusals.kind(code, status, CAPACITY, QUOTA, TEMPORARY)


def label_value(text: str) -> str:
    """A label value for any text (GCE allows [a-z0-9_-], 63 characters): readable, and unique by a hash."""
    readable = _LABEL_VALUE.sub("_", text.lower())[:54]
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def request_id(site: str, space: str, name: str) -> str:
    """The insert's idempotency key: a UUID, one per machine of one site and space."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"vacagent:{site}/{space}/{name}"))


def _time(stamp: str) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def zone_of(instance: compute_v1.Instance) -> str:
    return instance.zone.rsplit("/", 1)[-1]


def to_machine(instance: compute_v1.Instance, deleted: Iterable[str] = (), preempted: Iterable[str] = ()) -> Machine:
    """One listed VM -> Machine.  `deleted`: names whose deletion we asked for; `preempted`: VM ids GCE preempted."""
    labels = instance.labels
    state = STATUSES.get(instance.status, MachineState.UNKNOWN)
    if instance.name in deleted:
        state = MachineState.DELETING
    cause = Cause.RECLAIMED if state is not MachineState.RUNNING and str(instance.id) in preempted else None
    started = _time(instance.last_start_timestamp) if state is not MachineState.STARTING else None
    stopped = _time(instance.last_stop_timestamp) if instance.status == "TERMINATED" else None
    try:
        processors = int(labels.get(LABEL_PROCESSORS, "1"))
    except ValueError:
        processors = 1
    return Machine(
        name=instance.name,
        machinetype=labels.get(LABEL_MACHINETYPE, ""),
        state=state,
        backend_id=f"{zone_of(instance)}/{instance.name}",
        processors=processors,
        started_at=started,
        stopped_at=stopped if stopped is None or started is None else max(stopped, started),
        cause=cause,
    )


def _credentials(options, space: str):
    import google.auth
    from google.oauth2 import service_account

    path = options.get("credentials_file")
    try:
        if path:
            return service_account.Credentials.from_service_account_file(path, scopes=SCOPES)
        credentials, _ = google.auth.default(scopes=SCOPES)
        return credentials
    except (OSError, ValueError, google.auth.exceptions.DefaultCredentialsError) as e:
        key = "credentials_file" if path else "credentials_file (absent: application default credentials)"
        raise refusals.option_error(space, key, f"cannot load credentials: {e}") from e


class GCEBackend:
    max_user_data_bytes = 256 * 1024  # GCE's limit on one metadata value

    def __init__(self, context: BackendContext):
        options = context.options
        self.context = context
        self.options = options
        space = context.space
        for key in ("project", "zones"):
            if not options.get(key):
                raise refusals.option_error(space, key, "required for backend 'gce'")
        self.project = str(options["project"])
        self.zones = [str(z) for z in options["zones"]]
        self.page_size = int(options.get("page_size", 500))
        if not 1 <= self.page_size <= 500:
            raise refusals.option_error(space, "page_size", f"{self.page_size}: GCE pages hold 1 to 500 VMs")
        self.wait_seconds = float(options.get("operation_wait_seconds", 30))
        self.timeout = float(options.get("timeout_seconds", 30))
        self.spot = bool(options.get("spot", False))
        client_options = ClientOptions(api_endpoint=options["api_endpoint"]) if options.get("api_endpoint") else None
        credentials = _credentials(options, space)
        made = dict(credentials=credentials, client_options=client_options, transport="rest")
        self.instances = compute_v1.InstancesClient(**made)
        self.operations = compute_v1.ZoneOperationsClient(**made)
        self.machine_types = compute_v1.MachineTypesClient(**made)
        self.requests_made = 0
        self.sizes: dict[str, sizing.Size] = {}
        self._deleted: set[str] = set()  # names we asked to delete, while still listed
        self._preempted: dict[str, bool] = {}  # stopped spot VM id -> did GCE preempt it?
        self._looked_up = False  # the space's candidate sizes, once, by the first listing
        self._site, self._space = label_value(context.site), label_value(context.space)

    # -- the protocol ----------------------------------------------------

    def list_machines(self) -> list[Machine]:
        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project,
            filter=f'(labels.{LABEL_SITE} = "{self._site}") AND (labels.{LABEL_SPACE} = "{self._space}")',
            max_results=self.page_size,
        )
        found: list[compute_v1.Instance] = []
        if not self._looked_up:
            self._look_up_candidates()
        try:
            pager = self.instances.aggregated_list(request=request, timeout=self.timeout)
            for page in pager.pages:
                self.requests_made += 1
                for scoped in page.items.values():
                    found.extend(scoped.instances)
            self._learn_preemptions(found)
        except (gexc.GoogleAPICallError, *NO_ANSWER) as e:
            raise self._error(f"listing space {self.context.space}", e) from e
        names = {i.name for i in found}
        self._deleted &= names
        self._preempted = {k: v for k, v in self._preempted.items() if k in {str(i.id) for i in found}}
        preempted = {k for k, v in self._preempted.items() if v}
        return [to_machine(i, self._deleted, preempted) for i in found]

    def create_machine(self, request: CreateRequest) -> Machine:
        mt = request.machinetype
        doing = f"creating machine {request.name}"
        image = mt.extra.get("root_image")
        if not image:
            raise Permanent(f"{doing}: machinetype {mt.name}: root_image: required for GCE (an image URL, "
                            "e.g. projects/debian-cloud/global/images/family/debian-12)")
        zone = self._zone(request.name)
        try:
            size = self._size(mt, zone, doing)
            self.requests_made += 1
            insert = compute_v1.InsertInstanceRequest(
                project=self.project, zone=zone, instance_resource=self._instance(request, str(image), zone, size),
                request_id=request_id(self.context.site, self.context.space, request.name))
            op = self.instances.insert_unary(request=insert, timeout=self.timeout)
            self._wait(op, zone, doing)
        except gexc.Conflict:
            return self._existing(request.name, zone, doing)
        except (gexc.GoogleAPICallError, *NO_ANSWER) as e:
            raise self._error(doing, e, f" (image {image}, zone {zone})") from e
        return Machine(request.name, mt.name, MachineState.STARTING, f"{zone}/{request.name}", size.vcpus)

    def delete_machine(self, machine: Machine) -> None:
        if "/" not in machine.backend_id:
            return  # never listed with a zone: nothing to ask GCE
        zone, name = machine.backend_id.split("/", 1)
        try:
            self.requests_made += 1
            self.instances.delete_unary(project=self.project, zone=zone, instance=name, timeout=self.timeout)
        except gexc.NotFound:
            return
        except (gexc.GoogleAPICallError, *NO_ANSWER) as e:
            raise self._error(f"deleting machine {machine.name} ({machine.backend_id})", e) from e
        self._deleted.add(name)

    # -- helpers ---------------------------------------------------------

    def _instance(self, request: CreateRequest, image: str, zone: str, size: sizing.Size) -> compute_v1.Instance:
        labels = {LABEL_SITE: self._site, LABEL_SPACE: self._space,
                  LABEL_MACHINETYPE: request.machinetype.name, LABEL_PROCESSORS: str(size.vcpus)}
        nic = compute_v1.NetworkInterface(network=str(self.options.get("network", "global/networks/default")))
        if self.options.get("subnetwork"):
            nic.subnetwork = str(self.options["subnetwork"])
        instance = compute_v1.Instance(
            name=request.name,
            machine_type=f"zones/{zone}/machineTypes/{size.name}",
            labels=labels,
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key="user-data", value=request.user_data)]),
            disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True,
                                           initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=image))],
            network_interfaces=[nic],
            # A machine that ends is not restarted by GCE: vacagent decides what runs next.
            scheduling=compute_v1.Scheduling(automatic_restart=False, on_host_maintenance="TERMINATE"),
        )
        if self.spot:
            # STOP, not DELETE: the preempted VM stays listed, so its reclaim is seen and accounted.
            instance.scheduling.provisioning_model = "SPOT"
            instance.scheduling.instance_termination_action = "STOP"
        if self.options.get("service_account"):
            instance.service_accounts = [compute_v1.ServiceAccount(
                email=str(self.options["service_account"]), scopes=["https://www.googleapis.com/auth/cloud-platform"])]
        return instance

    def _zone(self, name: str) -> str:
        """Machines spread evenly over the zones by their name's hash: a retried create of a name
        goes where the first went (GCE's request_id and 409 are per zone), even after a restart."""
        return self.zones[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(self.zones)]

    def _wait(self, op: compute_v1.Operation, zone: str, doing: str) -> None:
        """Until the insert is done (or operation_wait_seconds); a late refusal raises as one at once would."""
        deadline = self.context.clock.monotonic() + self.wait_seconds
        while op.status != compute_v1.Operation.Status.DONE and self.context.clock.monotonic() < deadline:
            self.requests_made += 1
            op = self.operations.wait(project=self.project, zone=zone, operation=op.name, timeout=self.timeout)
        errors = list(op.error.errors) if op.error else []
        if errors:
            code, message = errors[0].code, errors[0].message
            raise refusals.typed(error_kind(code, op.http_error_status_code), f"{doing}: {code}: {message}")

    def _existing(self, name: str, zone: str, doing: str) -> Machine:
        """A taken name: ours (a retried create) counts as created; anyone else's is refused."""
        self.requests_made += 1
        try:
            instance = self.instances.get(project=self.project, zone=zone, instance=name, timeout=self.timeout)
        except gexc.GoogleAPICallError as e:
            raise self._error(doing, e) from e
        if instance.labels.get(LABEL_SITE) != self._site or instance.labels.get(LABEL_SPACE) != self._space:
            raise Permanent(f"{doing}: the name is taken in zone {zone} by a VM of another site or space")
        return to_machine(instance, self._deleted)

    def _learn_preemptions(self, found: list[compute_v1.Instance]) -> None:
        """Which newly stopped spot VMs GCE preempted: one operations listing per zone that has any."""
        new = [i for i in found if i.status == "TERMINATED" and i.scheduling.provisioning_model == "SPOT"
               and str(i.id) not in self._preempted]
        for zone in sorted({zone_of(i) for i in new}):
            request = compute_v1.ListZoneOperationsRequest(project=self.project, zone=zone,
                                                           filter=f'operationType = "{PREEMPTED}"')
            ids = set()
            for page in self.operations.list(request=request, timeout=self.timeout).pages:
                self.requests_made += 1
                ids.update(str(op.target_id) for op in page.items)
            for instance in new:
                if zone_of(instance) == zone:
                    self._preempted[str(instance.id)] = str(instance.id) in ids

    def _look_up_candidates(self) -> None:
        """The first listing learns the space's candidate sizes.  A bad candidate does not stop the
        listing: the create that needs it reports it (naming it) instead."""
        self._looked_up = True
        for name in [str(n) for n in self.options.get("machine_types") or ()]:
            try:
                self._look_up(name, self.zones[0])
            except (gexc.GoogleAPICallError, *NO_ANSWER):
                pass

    def _look_up(self, name: str, zone: str) -> None:
        self.requests_made += 1
        found = self.machine_types.get(project=self.project, zone=zone, machine_type=name, timeout=self.timeout)
        self.sizes[name] = sizing.Size(name, found.guest_cpus, found.memory_mb)

    def _size(self, mt: MachineType, zone: str, doing: str) -> sizing.Size:
        names = sizing.candidates(mt, self.options, "machine_types", "machine_type")
        if not names:
            raise Permanent(f"{doing}: no machine type: set options.machine_types of space "
                            f"{self.context.space} or machine_type of machinetype {mt.name}")
        for name in names:
            if name not in self.sizes:
                try:
                    self._look_up(name, zone)
                except gexc.NotFound as e:
                    raise Permanent(f"{doing}: machine type {name} does not exist in zone {zone}") from e
        sizes = [self.sizes[name] for name in names]
        size = sizing.choose(sizes, mt)
        if size is None:
            raise Permanent(f"{doing}: machinetype {mt.name}: {sizing.no_fit(mt, sizes)}")
        return size

    def _error(self, doing: str, e: Exception, detail: str = "") -> Exception:
        if not isinstance(e, gexc.GoogleAPICallError):
            return refusals.typed(Temporary, f"{doing}: no answer: {type(e).__name__}: {e}")
        reasons = [x.get("reason", "") for x in (e.errors or []) if isinstance(x, dict)]
        reason = reasons[0] if reasons else (e.reason or "")
        kind = error_kind(reason, int(e.code or 0))
        return refusals.typed(kind, f"{doing}: {e.code} {reason}: {e.message}{detail if kind is Permanent else ''}")
