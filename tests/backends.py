"""Drivers that let one conformance suite (test_conformance.py) run against every backend.

A driver builds a backend on a fresh space, makes create requests for
machines that run until deleted or exit by themselves, and waits for the
backend to show a condition (real backends need real time to act).

A new backend passes the suite by adding one driver class to DRIVERS.  Every
driver has: `name`, `backend`, `request(name)`, `let_exit(name)`,
`wait(predicate)`, `other(site, space)` (a backend on another site or space
of the same cloud) and `cleanup()`.  Optional abilities, each of which adds
that driver to the tests that need it (never a skip):

- `PAGE_SIZE` and `populate(n)`: put n of this site's machines into the
  space cheaply (through the cloud or its emulator); the suite checks that
  listing them costs ceil(n / PAGE_SIZE) requests.  n is `POPULATE` if the
  driver sets it (a real cloud too slow for 1,200), else 1,200.
- `STATES` ({native state id: MachineState, or `Native(state, cause,
  message)` to check the platform's cause and shutdown message too}) and
  `force_state(name, native)`: put a created machine into that native
  state; the suite checks the listing maps it.
- `ERRORS` ({case id: (operation, expected error type or None for success)})
  and `inject(operation, case)`: make the next `operation` ("create" or
  "delete") fail the way the cloud does for that case; the suite checks the
  backend raises the expected typed error (or succeeds).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.fake import FakeBackend
from vacagent.backends.local import LocalBackend
from vacagent.clock import FakeClock, SystemClock
from vacagent.errors import CapacityExhausted, ConfigError, NotFound, Permanent, QuotaExceeded, Temporary
from vacagent.model import Cause, MachineState, MachineType
from vacagent.state.atomic import read_json

from conftest import T0
from daemon_helpers import wait_for
from openstack_controlplane import IMAGE

MT = MachineType(name="mt", processors=2)


@dataclass(frozen=True)
class Native:
    """What a native state must be listed as: the state, the platform's cause, and the start of
    the platform's shutdown message (None: no message)."""

    state: MachineState
    cause: Cause | None = None
    message: str | None = None


class FakeDriver:
    name = "fake"
    PAGE_SIZE = 100
    STATES = {"running": MachineState.RUNNING, "stopped": MachineState.STOPPED, "failed": MachineState.FAILED}
    # The fake's errors are already typed: its cases check only that they reach the caller as they are.
    ERRORS = {
        "capacity": ("create", CapacityExhausted),
        "quota": ("create", QuotaExceeded),
        "temporary": ("create", Temporary),
        "permanent": ("create", Permanent),
        "gone": ("delete", None),
    }
    _RAISE = {"capacity": CapacityExhausted, "quota": QuotaExceeded, "temporary": Temporary,
              "permanent": Permanent, "gone": NotFound}

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        self.clock = FakeClock(T0)
        options = {"boot_seconds": 5, "page_size": self.PAGE_SIZE}
        self.context = BackendContext(site, space, tmp_path, options, self.clock)
        self.backend = FakeBackend(self.context)

    def populate(self, n: int) -> None:
        for i in range(n):
            self.backend.create_machine(self.request(f"mt-p{i:05d}"))

    def force_state(self, name: str, native: str) -> None:
        self.clock.advance(10)
        self.backend.list_machines()  # boots it
        if native != "running":
            self.backend.stop(name, None, failed=native == "failed")

    def inject(self, operation: str, case: str) -> None:
        self.backend.fail_next(operation, self._RAISE[case](f"injected {case}"))

    def other(self, site: str, space: str):
        # A fake cloud is one process's memory: another space is another fake.
        return FakeBackend(BackendContext(site, space, self.context.state_dir, {}, self.clock))

    def request(self, name: str) -> CreateRequest:
        return CreateRequest(name, MT, "#!/bin/sh\nsleep 600\n")

    def let_exit(self, name: str) -> None:
        self.backend.stop(name, None)

    def wait(self, predicate, timeout: float = 10.0):
        self.clock.advance(10)
        result = predicate()
        assert result, "condition not reached"
        return result

    def cleanup(self) -> None:
        pass


class LocalDriver:
    name = "local"
    # A local machine is running while its script runs, stopped once it exits.
    STATES = {"running": MachineState.RUNNING, "exited": MachineState.STOPPED}

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        self.tmp = tmp_path
        self.context = BackendContext(site, space, tmp_path, {"terminate_grace_seconds": 1}, SystemClock())
        self.backend = LocalBackend(self.context)
        self.exits: set[str] = set()

    def other(self, site: str, space: str):
        return LocalBackend(BackendContext(site, space, self.tmp, {}, SystemClock()))

    def request(self, name: str) -> CreateRequest:
        script = "#!/bin/sh\nwhile [ ! -e stop ]; do sleep 0.1; done\n"
        return CreateRequest(name, MT, script, {"JOBOUTPUTS": str(self.tmp / name)})

    def let_exit(self, name: str) -> None:
        (self.backend.root / name / "work" / "stop").touch()

    def force_state(self, name: str, native: str) -> None:
        self.wait(lambda: any(m.name == name and m.state is MachineState.RUNNING
                              for m in self.backend.list_machines()))
        if native == "exited":
            self.let_exit(name)
            self.wait(lambda: any(m.name == name and m.state is MachineState.STOPPED
                                  for m in self.backend.list_machines()))

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result or time.monotonic() > deadline:
                assert result, "condition not reached"
                return result
            time.sleep(0.05)

    def cleanup(self) -> None:
        kill_local_machines(self.tmp)


def kill_local_machines(state_dir: Path) -> None:
    """Kill every process group a local backend started under state_dir (test hygiene)."""
    for info_path in Path(state_dir).glob("local/*/*/process.json"):
        try:
            os.killpg(read_json(info_path)["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError, KeyError, ValueError):
            pass


class KubernetesDriver:
    """The kubernetes backend through the real client, against tests/kube_emulator.py over HTTP;
    the driver plays the kubelet (`wait` starts pending pods, as a node would)."""

    name = "kubernetes"
    NS = "vac"
    PAGE_SIZE = 100
    CREATE_REQUESTS = 2  # the pod, then its Secret
    MT = MachineType(name="mt", processors=2, extra={"root_image": "docker://busybox:1.36",
                                                     "container_command": ["sleep", "600"]})
    STATES = {
        "pending": MachineState.STARTING,
        "running": MachineState.RUNNING,
        "succeeded": Native(MachineState.STOPPED, None, "200 "),
        "failed-exit": Native(MachineState.STOPPED, None, "700 Error (exit code 3)"),
        "failed-coded": Native(MachineState.STOPPED, None, "300 No more work available"),
        "image-pull-backoff": Native(MachineState.FAILED, None, "500 ImagePullBackOff"),
        "err-image-pull": Native(MachineState.FAILED, None, "500 ErrImagePull"),
        "create-container-config-error": Native(MachineState.FAILED, None, "500 CreateContainerConfigError"),
        "invalid-image-name": Native(MachineState.FAILED, None, "500 InvalidImageName"),
        "unschedulable": Native(MachineState.STARTING, Cause.CAPACITY),
        "evicted": Native(MachineState.STOPPED, Cause.RECLAIMED),
        "preempted": Native(MachineState.STOPPED, Cause.RECLAIMED),
        "secret-missing": Native(MachineState.FAILED, None, "700 Failed to start"),
        "deleting": MachineState.DELETING,
        "unknown": MachineState.UNKNOWN,
    }
    OURS = {"app.kubernetes.io/managed-by": "vacagent", "vacagent.io/site": "site", "vacagent.io/space": "s",
            "vacagent.io/machinetype": "mt", "vacagent.io/processors": "2"}  # the labels of this site's "mt" pods
    WAITING = {"image-pull-backoff": "ImagePullBackOff", "err-image-pull": "ErrImagePull",
               "create-container-config-error": "CreateContainerConfigError", "invalid-image-name": "InvalidImageName"}
    ERRORS = {
        "same-name-ours": ("create", None),
        "same-name-not-ours": ("create", Permanent),
        "throttled": ("create", Temporary),
        "server-error": ("create", Temporary),
        "quota": ("create", QuotaExceeded),
        "must-specify": ("create", Permanent),
        "invalid": ("create", Permanent),
        "rbac-create": ("create", ConfigError),
        "unauthorized": ("create", ConfigError),
        "secret-refused": ("create", Temporary),
        "gone": ("delete", None),
        "rbac-delete": ("delete", ConfigError),
        "delete-unavailable": ("delete", Temporary),
    }

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        import kube_emulator as kube  # the emulator's module is only needed where this driver runs

        self.kube = kube
        self.tmp = tmp_path
        self.emulator = kube.KubeEmulator()
        self.server = kube.serve(self.emulator)
        self.kubeconfig = tmp_path / "kubeconfig.yaml"
        url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.kubeconfig.write_text(json.dumps(kube.kubeconfig(url, self.NS)))
        self.backend = self.other(site, space)

    def other(self, site: str, space: str):
        from vacagent.backends.kubernetes import KubernetesBackend

        options = {"kubeconfig": str(self.kubeconfig), "namespace": self.NS, "page_size": self.PAGE_SIZE}
        return KubernetesBackend(BackendContext(site, space, self.tmp, options, SystemClock()))

    def request(self, name: str) -> CreateRequest:
        return CreateRequest(name, self.MT, "#!/bin/sh\nsleep 600\n", {"VACAGENT_TOKEN": f"vac.s.{name}.secret"})

    def _pod(self, name: str, labels: dict[str, str]) -> dict:
        return {"metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": "worker", "image": "busybox"}], "restartPolicy": "Never"}}

    def populate(self, n: int) -> None:
        for i in range(n):
            self.emulator.put("pods", self.NS, self._pod(f"mt-p{i:05d}", self.OURS))
            self.emulator.run(self.NS, f"mt-p{i:05d}")

    def force_state(self, name: str, native: str) -> None:
        e, ns = self.emulator, self.NS
        if native == "secret-missing":
            self.backend = self.other("site", "s")  # a restarted daemon: it did not make the Secret itself
            del e.objects["secrets"][(ns, name)]
            e.run(ns, name)
        elif native == "unknown":
            e.get("pods", ns, name)["status"] = {"phase": "Unknown"}
        elif native in self.WAITING:
            e.wait_container(ns, name, self.WAITING[native])
        elif native == "unschedulable":
            e.unschedulable(ns, name)
        elif native == "deleting":
            e.termination_seconds = 30
            e.run(ns, name)
            self.backend.delete_machine({m.name: m for m in self.backend.list_machines()}[name])
        elif native != "pending":
            e.run(ns, name)
            if native == "succeeded":
                e.terminate(ns, name, 0)
            elif native == "failed-exit":
                e.terminate(ns, name, 3)
            elif native == "failed-coded":
                e.terminate(ns, name, 1, "300 No more work available\nbye")
            elif native == "evicted":
                e.evict(ns, name)
            elif native == "preempted":
                e.termination_seconds = 30
                e.disrupt(ns, name)

    def inject(self, operation: str, case: str) -> None:
        kube, e, name, ours = self.kube, self.emulator, "mt-0009", self.OURS
        injected = {
            "throttled": ("POST", "pods", kube.ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                                                        headers={"Retry-After": "7"})),
            "server-error": ("POST", "pods", kube.ApiError(500, "InternalError", "Internal error occurred: etcdserver: request timed out")),
            "quota": ("POST", "pods", kube.quota_exceeded(name)),
            "must-specify": ("POST", "pods", kube.must_specify(name)),
            "invalid": ("POST", "pods", kube.ApiError(422, "Invalid", f'Pod "{name}" is invalid: spec.containers[0].image: Required value')),
            "unauthorized": ("POST", "pods", kube.ApiError(401, "Unauthorized", "Unauthorized")),
            "secret-refused": ("POST", "secrets", kube.ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")),
            "delete-unavailable": ("DELETE", "pods", kube.ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")),
        }
        if case == "same-name-ours":
            e.put("pods", self.NS, self._pod(name, ours))
        elif case == "same-name-not-ours":
            e.put("pods", self.NS, self._pod(name, {**ours, "vacagent.io/site": "another-site"}))
        elif case == "rbac-create":
            e.deny("create", "pods")
        elif case == "rbac-delete":
            e.deny("delete", "pods")
        elif case == "gone":
            e.objects["pods"].clear()
        else:
            e.inject(*injected[case])

    def let_exit(self, name: str) -> None:
        self.emulator.terminate(self.NS, name, 0)

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            self.emulator.start_pending(self.NS)
            result = predicate()
            if result or time.monotonic() > deadline:
                assert result, "condition not reached"
                return result
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class EC2Driver:
    """EC2 through boto3 against moto's server and its fault layer (tests/ec2_cloud.py)."""

    name = "ec2"
    PAGE_SIZE = 100
    ATTEMPTS = 2  # botocore's standard retries: an injected fault must last for every attempt
    STATES = {
        "pending": MachineState.STARTING,
        "running": MachineState.RUNNING,
        "shutting-down": MachineState.DELETING,
        "stopped": MachineState.STOPPED,
        "shut-down-by-itself": MachineState.STOPPED,
        "spot-reclaimed": Native(MachineState.STOPPED, Cause.RECLAIMED),
        "spot-stopped": Native(MachineState.STOPPED, Cause.RECLAIMED),
        "capacity-lost": Native(MachineState.FAILED, Cause.CAPACITY),
    }
    _NATIVE = {  # case -> (native state, state reason)
        "pending": ("pending", ""),
        "running": ("running", ""),
        "shutting-down": ("shutting-down", ""),
        "stopped": ("stopped", "Client.UserInitiatedShutdown"),
        "shut-down-by-itself": ("terminated", "Client.InstanceInitiatedShutdown"),
        "spot-reclaimed": ("terminated", "Server.SpotInstanceTermination"),
        "spot-stopped": ("stopped", "Server.SpotInstanceShutdown"),
        "capacity-lost": ("terminated", "Server.InsufficientInstanceCapacity"),
    }
    ERRORS = {
        "insufficient-capacity": ("create", CapacityExhausted),
        "spot-price-too-low": ("create", CapacityExhausted),
        "unsupported": ("create", CapacityExhausted),
        "instance-limit": ("create", QuotaExceeded),
        "vcpu-limit": ("create", QuotaExceeded),
        "spot-count-limit": ("create", QuotaExceeded),
        "throttled": ("create", Temporary),
        "server-error": ("create", Temporary),
        "bad-parameter": ("create", Permanent),
        "bad-image": ("create", Permanent),  # moto's own AMI validation
        "bad-instance-type": ("create", Permanent),  # moto's own instance type validation
        "gone": ("delete", None),
        "delete-throttled": ("delete", Temporary),
    }
    _FAULTS = {  # case -> (action, EC2 error code, HTTP status), as AWS answers
        "insufficient-capacity": ("RunInstances", "InsufficientInstanceCapacity", 500),
        "spot-price-too-low": ("RunInstances", "SpotMaxPriceTooLow", 400),
        "unsupported": ("RunInstances", "Unsupported", 400),
        "instance-limit": ("RunInstances", "InstanceLimitExceeded", 400),
        "vcpu-limit": ("RunInstances", "VcpuLimitExceeded", 400),
        "spot-count-limit": ("RunInstances", "MaxSpotInstanceCountExceeded", 400),
        "throttled": ("RunInstances", "RequestLimitExceeded", 503),
        "server-error": ("RunInstances", "InternalError", 500),
        "bad-parameter": ("RunInstances", "InvalidParameterValue", 400),
        "gone": ("TerminateInstances", "InvalidInstanceID.NotFound", 400),
        "delete-throttled": ("TerminateInstances", "RequestLimitExceeded", 503),
    }

    def __init__(self, tmp_path: Path, site: str | None = None, space: str = "s"):
        from ec2_cloud import IMAGE, cloud

        from vacagent.backends.ec2 import EC2Backend

        self.cloud, self.image, self.tmp = cloud(), IMAGE, tmp_path
        self.site = site or f"site-{uuid.uuid4().hex[:8]}"  # the cloud is shared by the session
        self.make = lambda site, space: EC2Backend(BackendContext(site, space, tmp_path, self.cloud.options(
            instance_types=["t3.micro", "t3.medium", "m5.large"], page_size=self.PAGE_SIZE,
            max_attempts=self.ATTEMPTS), SystemClock()))
        self.backend = self.make(self.site, space)
        self.space = space
        self.backend.list_machines()  # as a daemon's first cycle does: learns the candidates' sizes
        self.next_extra: dict = {}

    def populate(self, n: int) -> None:
        self.cloud.populate(self.site, self.space, n)

    def _id(self, name: str) -> str:
        return self.wait(lambda: {m.name: m for m in self.backend.list_machines()}.get(name)).backend_id

    def force_state(self, name: str, native: str) -> None:
        self.cloud.set_state(self._id(name), *self._NATIVE[native])

    def inject(self, operation: str, case: str) -> None:
        if case == "bad-image":
            self.next_extra = {"root_image": "ami-00000000"}
        elif case == "bad-instance-type":
            self.next_extra = {"instance_type": "x9.nonexistent"}
        else:
            action, code, status = self._FAULTS[case]
            self.cloud.inject(action, code, status, count=self.ATTEMPTS, message=f"injected {case}")

    def other(self, site: str, space: str):
        return self.make(self.site if site == "site" else site, space)

    def request(self, name: str) -> CreateRequest:
        mt = MachineType(name="mt", processors=2, extra={"root_image": self.image, **self.next_extra})
        self.next_extra = {}
        return CreateRequest(name, mt, "#!/bin/sh\nsleep 600\n")

    def let_exit(self, name: str) -> None:
        self.cloud.set_state(self._id(name), "terminated", "Client.InstanceInitiatedShutdown")

    wait = LocalDriver.wait

    def cleanup(self) -> None:
        self.cloud.clear_faults()
        self.cloud.forget(self.site)


class GCEDriver:
    """GCE through google-cloud-compute against the emulator (tests/gce_emulator.py) over HTTP."""

    name = "gce"
    PAGE_SIZE = 100
    CREATE_REQUESTS = 2  # the insert, then one wait on its RUNNING operation
    STATES = {
        "provisioning": MachineState.STARTING,
        "staging": MachineState.STARTING,
        "running": MachineState.RUNNING,
        "repairing": MachineState.RUNNING,
        "stopping": MachineState.STOPPED,
        "suspended": MachineState.STOPPED,
        "terminated": MachineState.STOPPED,  # a spot VM that stopped without being preempted: no cause
        "preempted": Native(MachineState.STOPPED, Cause.RECLAIMED),
        "unknown-status": MachineState.UNKNOWN,
    }
    _STATUS = {"provisioning": "PROVISIONING", "staging": "STAGING", "running": "RUNNING", "repairing": "REPAIRING",
               "stopping": "STOPPING", "suspended": "SUSPENDED", "terminated": "TERMINATED",
               "unknown-status": "SOMETHING_NEW"}
    ERRORS = {
        "stockout": ("create", CapacityExhausted),
        "stockout-with-details": ("create", CapacityExhausted),
        "quota-late": ("create", QuotaExceeded),
        "quota": ("create", QuotaExceeded),
        "rate-limited": ("create", Temporary),
        "too-many-requests": ("create", Temporary),
        "server-error": ("create", Temporary),
        "unavailable": ("create", Temporary),
        "forbidden": ("create", Permanent),
        "bad-image": ("create", Permanent),  # the emulator's own image check
        "bad-machine-type": ("create", Permanent),  # the emulator's own machine type table
        "same-name-ours": ("create", None),
        "same-name-not-ours": ("create", Permanent),
        "gone": ("delete", None),
        "delete-throttled": ("delete", Temporary),
    }
    _LATE = {  # case -> the insert operation's error code, as GCE reports a late refusal
        "stockout": ("ZONE_RESOURCE_POOL_EXHAUSTED", "The zone 'projects/p/zones/z' does not have enough resources "
                     "available to fulfill the request.  Try a different zone, or try again later."),
        "stockout-with-details": ("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "The zone does not have enough resources"),
        "quota-late": ("QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.  Limit: 24.0 in region europe-west2."),
    }
    _HTTP = {  # case -> (route, method, HTTP status, reason)
        "quota": ("instances", "POST", 403, "quotaExceeded"),
        "rate-limited": ("instances", "POST", 403, "rateLimitExceeded"),
        "too-many-requests": ("instances", "POST", 429, "rateLimitExceeded"),
        "server-error": ("instances", "POST", 500, "backendError"),
        "unavailable": ("instances", "POST", 503, "backendError"),
        "forbidden": ("instances", "POST", 403, "forbidden"),
        "delete-throttled": ("instance", "DELETE", 429, "rateLimitExceeded"),
    }

    def __init__(self, tmp_path: Path, site: str | None = None, space: str = "s"):
        from gce_cloud import IMAGE, PROJECT, cloud

        from vacagent.backends.gce import GCEBackend, label_value

        self.cloud, self.image, self.project, self.tmp = cloud(), IMAGE, PROJECT, tmp_path
        self.emulator = self.cloud.emulator
        self.site, self.space = site or f"site-{uuid.uuid4().hex[:8]}", space
        self.labels = {"vacagent-site": label_value(self.site), "vacagent-space": label_value(space),
                       "vacagent-machinetype": "mt", "vacagent-processors": "2"}
        self.make = lambda site, space: GCEBackend(BackendContext(site, space, tmp_path, self.cloud.options(
            machine_types=["e2-small", "e2-standard-2"], page_size=self.PAGE_SIZE, spot=True), SystemClock()))
        self.backend = self.make(self.site, space)
        self.backend.list_machines()  # as a daemon's first cycle does: learns the candidates' sizes
        self.next_extra: dict = {}

    def populate(self, n: int) -> None:
        zones = self.backend.zones
        for k, zone in enumerate(zones):
            share = n // len(zones) + (k < n % len(zones))
            self.emulator.populate(self.project, zone, share, self.labels, prefix=f"mt-p{k}-")

    def force_state(self, name: str, native: str) -> None:
        self.wait(lambda: any(m.name == name for m in self.backend.list_machines()))
        if native == "preempted":
            self.emulator.preempt(name)
        else:
            self.emulator.set_status(name, self._STATUS[native])

    def inject(self, operation: str, case: str) -> None:
        name = "mt-0009"
        if case in self._LATE:
            self.emulator.fail_next_insert(*self._LATE[case])
        elif case in self._HTTP:
            route, method, status, reason = self._HTTP[case]
            self.emulator.inject(route, method, status, reason, f"injected {case}")
        elif case == "bad-image":
            self.next_extra = {"root_image": "projects/debian-cloud/global/images/no-such-image"}
        elif case == "bad-machine-type":
            self.next_extra = {"machine_type": "n9-imaginary-4"}
        elif case in ("same-name-ours", "same-name-not-ours"):
            labels = self.labels if case == "same-name-ours" else {**self.labels, "vacagent-site": "another-site"}
            self.emulator.put(self.project, self.backend._zone(name), name, labels)
        elif case == "gone":
            with self.emulator.lock:
                for key in [k for k in self.emulator.instances if k[2] == "mt-0008"]:
                    del self.emulator.instances[key]

    def other(self, site: str, space: str):
        return self.make(self.site if site == "site" else site, space)

    def request(self, name: str) -> CreateRequest:
        mt = MachineType(name="mt", processors=2, extra={"root_image": self.image, **self.next_extra})
        self.next_extra = {}
        return CreateRequest(name, mt, "#cloud-config\nruncmd: [sleep, 600]\n")

    def let_exit(self, name: str) -> None:
        self.emulator.shut_down(name)

    wait = LocalDriver.wait

    def cleanup(self) -> None:
        self.emulator.clear()
        self.cloud.forget(self.labels["vacagent-site"])


class OpenStackDriver:
    """The real nova of tests/openstack_controlplane.py, in a project of its own, through the fault proxy.

    Errors are the cloud's own where it can give them (a real cores quota for
    the 403, a flavor or image it lacks, a server of that name made behind
    the backend's back, one deleted behind its back); the proxy answers only
    what nova cannot be made to (5xx, 429, 401, timeouts, 409)."""

    name = "openstack"
    MARKS = (pytest.mark.openstack,)
    # 120 servers in 5 pages (4 x 25 + 20), made by multi-creates (min_count/max_count) of 20.  1,200 real
    # servers take ~3 min to create and ~10 to delete on the fake driver here; the benchmark lists 500.
    POPULATE = 120
    PAGE_SIZE = 25
    STATES = {"ACTIVE": MachineState.RUNNING, "SHUTOFF": MachineState.STOPPED,
              "ERROR": Native(MachineState.FAILED, None, "700 server in ERROR without a fault"),  # reset-state: no fault
              "PAUSED": MachineState.UNKNOWN}
    ERRORS = {
        "quota-403": ("create", QuotaExceeded),  # a real cores quota smaller than the flavor
        "flavor-missing": ("create", Permanent),
        "image-missing": ("create", Permanent),
        "image-url": ("create", Permanent),
        "server-error": ("create", Temporary),  # 503 from the proxy
        "throttled": ("create", Temporary),  # 429 Retry-After
        "timeout": ("create", Temporary),  # the proxy waits longer than timeout_seconds
        "reauth-once": ("create", None),  # one 401: keystoneauth re-authenticates, the create succeeds
        "unauthorized": ("create", ConfigError),  # 401 again after re-authenticating
        "exists-ours": ("create", None),  # 409 "already exists" for a server with this machine's tags
        "exists-not-ours": ("create", Permanent),  # 409 for another site's server of that name
        "gone": ("delete", None),  # deleted behind the backend's back: 404
        "delete-error": ("delete", Temporary),
    }

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        from openstack_support import current
        from vacagent.backends.openstack import OpenStackBackend

        self.cloud = current()
        self.project = self.cloud.project()
        self.admin = self.cloud.admin(self.project)
        self.tmp = tmp_path
        self.site, self.space = site, space
        self.mt = MachineType(name="mt", processors=2, extra={"root_image": IMAGE})
        self.make = OpenStackBackend
        self.backend = self._backend(site, space)

    def _backend(self, site: str, space: str, **options):
        # A generous timeout: a loaded 2-core host answers slowly; only the "timeout" case shortens it.
        options = {"page_size": self.PAGE_SIZE, "timeout_seconds": 60, **options}
        options = self.cloud.options(self.project, faulty=True, **options)
        return self.make(BackendContext(site, space, self.tmp, options, SystemClock()))

    def other(self, site: str, space: str):
        return self._backend(site, space)

    def request(self, name: str) -> CreateRequest:
        return CreateRequest(name, self.mt, "#!/bin/sh\necho booted\n")

    def _server(self, name: str):
        return next(s for s in self.admin.compute.servers(name=f"^{name}$"))

    def _behind_our_back(self, name: str, site: str) -> None:
        from vacagent.backends import nova

        flavor = self.admin.compute.find_flavor("vac.2")
        image = self.admin.image.find_image(IMAGE)
        self.admin.compute.create_server(name=name, flavor_id=flavor.id, image_id=image.id, networks="none",
                                         tags=nova.tags(site, self.space, "mt"),
                                         metadata=nova.metadata(site, self.space, "mt"))

    def populate(self, n: int) -> None:
        from vacagent.backends import nova

        # The oversized flavor: Nova lists them at once, fails them without a host, and deletes them
        # from its database alone, so they cost the compute service nothing.
        flavor = self.admin.compute.find_flavor("vac.huge")
        image = self.admin.image.find_image(IMAGE)
        for chunk, start in enumerate(range(0, n, 20)):  # small requests: a big one can outlast the API's worker
            count = min(20, n - start)
            self.admin.compute.post("/servers", microversion="2.52", json={"server": {
                "name": f"mt-p{chunk}", "imageRef": image.id, "flavorRef": flavor.id, "networks": "none",
                "min_count": count, "max_count": count, "tags": nova.tags(self.site, self.space, "mt"),
                "metadata": nova.metadata(self.site, self.space, "mt")}}).raise_for_status()
        # Settled: every server failed to schedule (ERROR in cell0).  Until then Nova lists a server both
        # as a build request and as its cell's instance, so the pages a listing takes vary run to run.
        tag = nova.tag("site", self.site)

        def settled() -> bool:
            servers = self.admin.compute.get(f"/servers/detail?tags={tag}&limit=1000").json()["servers"]
            return len({s["id"] for s in servers}) == len(servers) == n and all(s["status"] == "ERROR" for s in servers)
        self.wait(settled)

    def force_state(self, name: str, native: str) -> None:
        self.wait(lambda: self._server(name).status == "ACTIVE")
        server = self._server(name)
        if native == "SHUTOFF":
            self.admin.compute.stop_server(server)
        elif native == "ERROR":
            self.admin.compute.reset_server_state(server, "error")
        elif native == "PAUSED":
            self.admin.compute.pause_server(server)
        self.wait(lambda: self._server(name).status == native)

    def inject(self, operation: str, case: str) -> None:
        proxy = self.cloud.proxy
        if case == "quota-403":
            self.cloud.root.compute.update_quota_set(self.cloud.project_id(self.project), cores=1)
        elif case == "flavor-missing":
            self.mt = MachineType(name="mt", processors=2, extra={"root_image": IMAGE, "flavor_names": ["no-such"]})
        elif case == "image-missing":
            self.mt = MachineType(name="mt", processors=2, extra={"root_image": "no-such-image"})
        elif case == "image-url":
            self.mt = MachineType(name="mt", processors=2, extra={"root_image": "https://example.org/x.img"})
        elif case == "server-error":
            proxy.inject("POST", r"/servers$", 503, {"computeFault": {"message": "injected", "code": 503}})
        elif case == "throttled":
            proxy.inject("POST", r"/servers$", 429, {"overLimit": {"message": "slow down", "code": 429}},
                         {"Retry-After": "7"})
        elif case == "timeout":
            self.backend = self._backend(self.site, self.space, timeout_seconds=5)
            self.backend.list_machines()  # authenticated before the timed request
            proxy.inject("POST", r"/servers$", delay=15)
        elif case in ("reauth-once", "unauthorized"):
            for _ in range(1 if case == "reauth-once" else 2):
                proxy.inject("POST", r"/servers$", 401, {"error": {"message": "token expired", "code": 401}})
        elif case in ("exists-ours", "exists-not-ours"):
            self.backend.list_machines()  # the backend has listed: it does not know the server below
            self._behind_our_back("mt-0009", self.site if case == "exists-ours" else "another-site")
            proxy.inject("POST", r"/servers$", 409, {"conflictingRequest": {
                "message": "Instance mt-0009 already exists.", "code": 409}})
        elif case == "gone":
            server = self._server("mt-0008")
            self.admin.compute.delete_server(server)
            self.admin.compute.wait_for_delete(server, wait=60)
        elif case == "delete-error":
            proxy.inject("DELETE", r"/servers/", 500, {"computeFault": {"message": "injected", "code": 500}})

    def let_exit(self, name: str) -> None:
        self.admin.compute.stop_server(self._server(name))

    def wait(self, predicate, timeout: float = 10.0):
        return wait_for(predicate, max(timeout, 120.0), interval=0.3)

    def cleanup(self) -> None:
        self.cloud.proxy.clear()
        self.cloud.wipe(self.project)


DRIVERS = [FakeDriver, LocalDriver, KubernetesDriver, OpenStackDriver, EC2Driver, GCEDriver]
