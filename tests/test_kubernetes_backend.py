"""The kubernetes backend beyond the conformance suite: space options, the pod it makes, the
Secret and its owner, paging and 410, and the tables (status, errors) it reads the API with.

The backend talks HTTP through the real `kubernetes` client to tests/kube_emulator.py.
"""

from __future__ import annotations

import base64
import json

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.kubernetes import KubernetesBackend
from vacagent.backends.kubernetes_errors import classify
from vacagent.backends.kubernetes_pods import pod as pod_manifest
from vacagent.backends.kubernetes_status import translate
from vacagent.errors import ConfigError, NotFound, Permanent, QuotaExceeded, Temporary
from vacagent.model import Cause, MachineState, MachineType

import kube_emulator as kube
from backends import KubernetesDriver

NS = KubernetesDriver.NS


@pytest.fixture
def driver(tmp_path):
    d = KubernetesDriver(tmp_path)
    yield d
    d.cleanup()


def mt(**extra) -> MachineType:
    return MachineType(name="lab-a", processors=4, mb_per_processor=1000, source="pipe.json",
                       extra={"root_image": "docker://registry.example/worker:1", **extra})


def request(name: str = "lab-a-0001", **extra) -> CreateRequest:
    env = {"JOBOUTPUTS": "https://vac.example/machines/s/lab-a-0001/joboutputs",
           "MACHINEFEATURES": "https://vac.example/machines/s/lab-a-0001/machinefeatures",
           "JOBFEATURES": "https://vac.example/machines/s/lab-a-0001/jobfeatures",
           "VACAGENT_TOKEN": "vac.s.lab-a-0001.TOKENSECRET"}
    return CreateRequest(name, mt(**extra), "#!/bin/sh\necho hello\n", env)


# -- space options ----------------------------------------------------------

@pytest.mark.parametrize("options,key", [
    ({}, "namespace"),
    ({"namespace": "Not_A_Label"}, "namespace"),
    ({"namespace": "vac", "page_size": 0}, "page_size"),
    ({"namespace": "vac", "page_size": "500"}, "page_size"),
    ({"namespace": "vac", "request_timeout_seconds": -1}, "request_timeout_seconds"),
    ({"namespace": "vac", "kubeconfig": "/nonexistent/kubeconfig"}, "kubeconfig"),
    ({"namespace": "vac", "context": ""}, "context"),
    ({"namespace": "vac", "namespaces": "typo"}, "namespaces"),
])
def test_bad_options_name_the_space_and_the_key(options, key, tmp_path):
    with pytest.raises(ConfigError, match=rf"^space lab: options\.{key}: "):
        KubernetesBackend(BackendContext("site", "lab", tmp_path, options))


def test_a_context_the_kubeconfig_lacks_is_a_config_error(driver, tmp_path):
    options = {"namespace": "vac", "kubeconfig": str(driver.kubeconfig), "context": "elsewhere"}
    with pytest.raises(ConfigError, match=r"space lab: options\.kubeconfig: .*elsewhere"):
        KubernetesBackend(BackendContext("site", "lab", tmp_path, options))


# -- the pod ----------------------------------------------------------------

def test_pod_carries_the_machinetype_keys():
    manifest = pod_manifest(request(container_command="run-worker --queue 'a b'", disk_gb_per_processor=2.5,
                                    kueue_queue_name="lab-queue"), "site.example", "s")
    labels = manifest["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "vacagent", "vacagent.io/site": "site.example",
                      "vacagent.io/space": "s", "vacagent.io/machinetype": "lab-a", "vacagent.io/processors": "4",
                      "kueue.x-k8s.io/queue-name": "lab-queue"}
    spec = manifest["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 86400 + 3600  # a backstop, after max_wallclock_seconds
    [container] = spec["containers"]
    assert container["image"] == "registry.example/worker:1"
    assert container["command"] == ["run-worker", "--queue", "a b"]
    amounts = {"cpu": "4", "memory": "4000Mi", "ephemeral-storage": "10000000000"}
    assert container["resources"] == {"requests": amounts, "limits": amounts}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e for e in container["env"]}
    assert env["JOBOUTPUTS"]["value"].endswith("/joboutputs") and env["MACHINEFEATURES"]["value"].startswith("https://")
    assert env["VACAGENT_TOKEN"] == {"name": "VACAGENT_TOKEN",
                                     "valueFrom": {"secretKeyRef": {"name": "lab-a-0001", "key": "token"}}}
    assert "TOKENSECRET" not in json.dumps(manifest)  # the token is never a literal in the pod
    assert container["volumeMounts"] == [{"name": "vacagent", "mountPath": "/var/run/vacagent", "readOnly": True}]
    assert spec["volumes"][0]["secret"]["secretName"] == "lab-a-0001"


def test_overrides_merge_into_the_spec_and_keep_vacagents_own_items():
    overrides = {"nodeSelector": {"pool": "batch"}, "tolerations": [{"key": "batch", "operator": "Exists"}],
                 "volumes": [{"name": "cvmfs", "hostPath": {"path": "/cvmfs"}}], "priorityClassName": "low",
                 "automountServiceAccountToken": True}
    container = {"volumeMounts": [{"name": "cvmfs", "mountPath": "/cvmfs"}], "securityContext": {"privileged": False},
                 "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    spec = pod_manifest(request(pod_overrides=overrides, container_overrides=container), "site", "s")["spec"]
    assert spec["nodeSelector"] == {"pool": "batch"} and spec["priorityClassName"] == "low"
    assert spec["automountServiceAccountToken"] is True
    assert [v["name"] for v in spec["volumes"]] == ["vacagent", "cvmfs"]
    [c] = spec["containers"]
    assert [m["name"] for m in c["volumeMounts"]] == ["vacagent", "cvmfs"]
    assert c["resources"]["limits"] == {"cpu": "4", "memory": "4000Mi", "nvidia.com/gpu": "1"}


def test_a_machinetype_without_an_image_is_refused_before_any_request():
    bare = CreateRequest("x-1", MachineType(name="x", source="pipe.json"), "", {})
    with pytest.raises(Permanent, match="pipe.json: machinetype x: root_image: required"):
        pod_manifest(bare, "site", "s")


def test_create_makes_the_pod_then_its_secret_owned_by_it(driver):
    backend, e = driver.backend, driver.emulator
    machine = backend.create_machine(request())
    pod = e.get("pods", NS, "lab-a-0001")
    secret = e.get("secrets", NS, "lab-a-0001")
    assert machine.backend_id == pod["metadata"]["uid"]
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "lab-a-0001", "uid": pod["metadata"]["uid"]}]
    assert base64.b64decode(secret["data"]["token"]).decode() == "vac.s.lab-a-0001.TOKENSECRET"
    assert base64.b64decode(secret["data"]["user_data"]).decode() == "#!/bin/sh\necho hello\n"
    assert (e.requests[("POST", "pods")], e.requests[("POST", "secrets")]) == (1, 1)
    # Deleting the pod takes the Secret with it (the garbage collector).
    backend.delete_machine(machine)
    assert e.names("pods") == set() and e.names("secrets") == set()


def test_a_secret_that_cannot_be_made_takes_its_pod_back(driver):
    e = driver.emulator
    e.inject("POST", "secrets", kube.ApiError(500, "InternalError", "etcd timeout"))
    with pytest.raises(Temporary, match="creating secret lab-a-0001: 500 InternalError"):
        driver.backend.create_machine(request())
    assert e.names("pods") == set() and e.names("secrets") == set()


def test_a_pod_left_without_its_secret_is_reported_failed_to_start(driver):
    """A daemon killed between the pod and its Secret: the restarted daemon finds the pod, never started."""
    e = driver.emulator
    driver.backend.create_machine(request())
    del e.objects["secrets"][(NS, "lab-a-0001")]
    assert e.start_pending(NS) == []  # the kubelet cannot mount it
    restarted = driver.other("site", "s")
    [machine] = restarted.list_machines()
    assert machine.state is MachineState.FAILED and machine.message.startswith("700 Failed to start")
    # A pod whose Secret exists is looked up once, then known.
    restarted.create_machine(request("lab-a-0002"))
    before = restarted.requests_made
    restarted.list_machines()
    assert restarted.requests_made - before == 2  # pods, and secrets again for the one still missing


def test_listing_restarts_once_when_the_continue_token_expires(driver):
    driver.populate(250)
    backend, e = driver.backend, driver.emulator
    original = backend.api.list_namespaced_pod
    calls = []

    def list_and_expire(*args, **kwargs):
        calls.append(kwargs.get("_continue"))
        if len(calls) == 2:
            e.expire_continue_tokens()  # etcd compacted between two pages
        return original(*args, **kwargs)

    backend.api.list_namespaced_pod = list_and_expire
    assert len(backend.list_machines()) == 250
    assert calls[0] is None and calls[2] is None  # the second page got 410; the listing began again
    assert len(calls) == 2 + 3
    # Twice in a row: the error reaches the cycle.
    calls.clear()
    backend.api.list_namespaced_pod = lambda *a, **k: (e.expire_continue_tokens(), original(*a, **k))[1]
    with pytest.raises(Temporary, match="410 Expired"):
        backend.list_machines()


def test_retry_after_is_the_delay_of_a_throttled_request(driver):
    driver.inject("create", "throttled")
    with pytest.raises(Temporary) as error:
        driver.backend.create_machine(request())
    assert error.value.delay == 7
    assert "429 TooManyRequests" in str(error.value)


def test_unknown_pod_spec_fields_are_refused(driver):
    # The client checks the body against the API's schema (the API server's strict validation would too).
    with pytest.raises(Permanent, match="not a valid request: .*nodeSelektor"):
        driver.backend.create_machine(request(pod_overrides={"nodeSelektor": {"a": "b"}}))
    assert driver.emulator.names("pods") == set()


def test_the_namespace_quota_is_a_quota_error_with_the_apis_message(driver):
    driver.emulator.pods_quota = 1
    driver.backend.create_machine(request("lab-a-0001"))
    with pytest.raises(QuotaExceeded, match="exceeded quota: compute-resources, requested: pods=1"):
        driver.backend.create_machine(request("lab-a-0002"))


def test_rbac_refusal_names_the_verb_and_resource(driver):
    driver.emulator.deny("list", "pods")
    with pytest.raises(ConfigError, match=r"may not list pods \(grant verb 'list' on 'pods'"):
        driver.backend.list_machines()


# -- the tables -------------------------------------------------------------

def _pod(phase=None, deleting=False, **status):
    metadata = {"name": "p", "labels": {}}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "status": {"phase": phase, **status} if phase else status}


def _terminated(code, message=None, reason="Error"):
    state = {"terminated": {"exitCode": code, "reason": reason, **({"message": message} if message else {})}}
    return [{"name": "worker", "state": state}]


@pytest.mark.parametrize("pod,expected", [
    (_pod("Pending"), (MachineState.STARTING, None, None)),
    (_pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]),
     (MachineState.STARTING, None, Cause.CAPACITY)),
    (_pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ErrImagePull", "message": "no such"}}}]),
     (MachineState.FAILED, "500 ErrImagePull: no such", None)),
    (_pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ContainerCreating"}}}]),
     (MachineState.STARTING, None, None)),
    (_pod("Running"), (MachineState.RUNNING, None, None)),
    (_pod("Running", deleting=True), (MachineState.DELETING, None, None)),
    (_pod("Succeeded", containerStatuses=_terminated(0, reason="Completed")),
     (MachineState.STOPPED, "200 Intended work completed ok (exit code 0)", None)),
    (_pod("Failed", containerStatuses=_terminated(137, reason="OOMKilled")),
     (MachineState.STOPPED, "700 OOMKilled (exit code 137)", None)),
    (_pod("Failed", containerStatuses=_terminated(1, "600 Grid-wide problem\nmore")),
     (MachineState.STOPPED, "600 Grid-wide problem", None)),
    (_pod("Succeeded", containerStatuses=_terminated(0, "no code here")),
     (MachineState.STOPPED, "200 Intended work completed ok (exit code 0)", None)),
    (_pod("Failed", reason="DeadlineExceeded"), (MachineState.STOPPED, "700 DeadlineExceeded", None)),
    (_pod("Failed", reason="Evicted", containerStatuses=_terminated(137)), (MachineState.STOPPED, None, Cause.RECLAIMED)),
    (_pod("Running", reason="Preempting"), (MachineState.STOPPED, None, Cause.RECLAIMED)),
    (_pod("Running", deleting=True, conditions=[{"type": "DisruptionTarget", "status": "True"}]),
     (MachineState.STOPPED, None, Cause.RECLAIMED)),
    (_pod("Unknown"), (MachineState.UNKNOWN, None, None)),
    (_pod(), (MachineState.UNKNOWN, None, None)),
])
def test_status_table(pod, expected):
    assert translate(pod) == expected


def _status(code, reason, message):
    return json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message})


@pytest.mark.parametrize("status,body,retry_after,expected,delay", [
    (404, _status(404, "NotFound", 'pods "p" not found'), None, NotFound, None),
    (429, _status(429, "TooManyRequests", "slow down"), "12", Temporary, 12.0),
    (429, _status(429, "TooManyRequests", "slow down"), None, Temporary, 1.0),
    (500, _status(500, "InternalError", "etcd"), None, Temporary, 1.0),
    (503, "<html>bad gateway</html>", "3", Temporary, 3.0),
    (0, None, None, Temporary, 1.0),
    (403, _status(403, "Forbidden", 'pods "p" is forbidden: exceeded quota: q, requested: cpu=4'), None,
     QuotaExceeded, None),
    (403, _status(403, "Forbidden", 'pods "p" is forbidden: failed quota: q: must specify limits.memory'), None,
     Permanent, None),
    (403, _status(403, "Forbidden", 'pods "p" is forbidden: maximum cpu usage per Container is 2, but limit is 4'),
     None, Permanent, None),
    (403, _status(403, "Forbidden", 'secrets is forbidden: User "u" cannot create resource "secrets" in API group ""'),
     None, ConfigError, None),
    (401, _status(401, "Unauthorized", "Unauthorized"), None, ConfigError, None),
    (422, _status(422, "Invalid", "bad name"), None, Permanent, None),
    (400, _status(400, "BadRequest", "strict decoding error"), None, Permanent, None),
])
def test_error_table(status, body, retry_after, expected, delay):
    error = classify(status, body, retry_after, "creating pod p", "space s (namespace vac)")
    assert type(error) is expected
    assert str(error).startswith(("creating pod p", "space s (namespace vac): creating pod p"))
    if delay is not None:
        assert error.delay == delay
    if expected is ConfigError and status == 403:
        assert "grant verb 'create' on 'secrets'" in str(error)
