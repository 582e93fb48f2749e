"""Pod keys of a machinetype (docs/kubernetes.md), validated like every other key: a bad one
names file, machinetype and key, and only that machinetype stops."""

import json
from dataclasses import replace

import pytest

from vacagent.config import PipeSettings

from test_definitions import pipe_file, resolve, space

IMAGE = {"root_image": "docker://registry.example/worker:1"}


def kube_space(pipes=(), machinetypes=None):
    return replace(space(pipes, machinetypes), backend="kubernetes")


@pytest.mark.parametrize("entry,key,reason", [
    ({"container_command": 7}, "container_command", "is not valid"),
    ({"container_command": []}, "container_command", "should be non-empty"),
    ({"pod_overrides": ["nodeSelector"]}, "pod_overrides", "is not of type 'object'"),
    ({"pod_overrides": {"node-selector": {}}}, "pod_overrides", "does not match"),
    ({"pod_overrides": {"containers": []}}, "pod_overrides", "containers: cannot be overridden"),
    ({"pod_overrides": {"restartPolicy": "Always"}}, "pod_overrides", "restartPolicy: cannot be overridden"),
    ({"container_overrides": {"image": "other"}}, "container_overrides", "image: cannot be overridden: set by root_image"),
    ({"kueue_queue_name": "not a label!"}, "kueue_queue_name", "does not match"),
    ({"root_image": None}, "root_image", "is not of type 'string'"),
])
def test_bad_pod_keys_name_file_machinetype_and_key(tmp_path, entry, key, reason):
    source = pipe_file(tmp_path, [{"suffix": "bad", **IMAGE, **entry}, {"suffix": "good", **IMAGE}])
    r = resolve(tmp_path, kube_space([PipeSettings(source=source, prefix="p")]))
    assert list(r.machinetypes) == ["p-good"]
    message = r.errors["p-bad"]
    assert message.startswith(f"{source}: machinetype p-bad: {key}: ") and reason in message, message


def test_a_pod_needs_an_image_only_in_a_kubernetes_space(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a", "container_command": "run"}])
    r = resolve(tmp_path, kube_space([PipeSettings(source=source, prefix="p")]))
    assert r.errors["p-a"] == f"{source}: machinetype p-a: root_image: required in a kubernetes space " \
                              "(the container image of the pod)"
    assert "p-a" in resolve(tmp_path, space([PipeSettings(source=source, prefix="p")])).machinetypes


def test_site_pod_overrides_merge_over_the_pipes_and_win(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a", **IMAGE, "container_command": ["run", "--fast"],
                                   "kueue_queue_name": "lab",
                                   "pod_overrides": {"nodeSelector": {"pool": "any", "arch": "amd64"},
                                                     "priorityClassName": "low"}}])
    pipe = PipeSettings(source=source, prefix="p", config_file="/etc/vacagent/vacagent.yaml",
                        overrides={"pod_overrides": {"nodeSelector": {"pool": "batch"}}},
                        suffix_overrides={"a": {"pod_overrides": {"priorityClassName": "high"}}})
    r = resolve(tmp_path, kube_space([pipe]))
    assert r.errors == {}
    extra = r.machinetypes["p-a"].extra
    assert extra["pod_overrides"] == {"nodeSelector": {"pool": "batch", "arch": "amd64"}, "priorityClassName": "high"}
    assert extra["container_command"] == ["run", "--fast"] and extra["kueue_queue_name"] == "lab"
    assert r.warnings == ()  # every pod key is known
    json.dumps(r.definitions["p-a"])  # stored as the effective definition


def test_the_example_pipe_makes_valid_pods(tmp_path):
    """vm_definitions/k8s.pipe: both machinetypes load in a kubernetes space and make pods the client accepts."""
    from kubernetes.client import V1Pod

    from vacagent.backends.base import CreateRequest
    from vacagent.backends.kubernetes_pods import pod

    from conftest import REPO

    source = str(REPO / "vm_definitions" / "k8s.pipe")
    r = resolve(tmp_path, kube_space([PipeSettings(source=source, prefix="project")]))
    assert r.errors == {} and r.warnings == () and set(r.machinetypes) == {"project-prod", "project-single"}
    for mt in r.machinetypes.values():
        manifest = pod(CreateRequest(f"{mt.name}-0001", mt, "", {"VACAGENT_TOKEN": "t"}), "site", "s")
        assert V1Pod.from_dict(manifest).spec.restart_policy == "Never"
