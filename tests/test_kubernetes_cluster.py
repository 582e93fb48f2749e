"""Opt-in: the kubernetes backend against a real cluster.

Set VACAGENT_TEST_KUBECONFIG to a kubeconfig (and VACAGENT_TEST_NAMESPACE, default `default`)
whose credentials hold the Role of docs/kubernetes.md; the tests pull `busybox:1.36`.  Without
the variable these tests are skipped: no real kube-apiserver can run on the test machines
(tests/kube_emulator.py stands in for it everywhere else).
"""

from __future__ import annotations

import os
import secrets
import time

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.kubernetes import KubernetesBackend
from vacagent.clock import SystemClock
from vacagent.model import MachineState, MachineType

KUBECONFIG = os.environ.get("VACAGENT_TEST_KUBECONFIG")
if not KUBECONFIG:
    pytest.skip("VACAGENT_TEST_KUBECONFIG is not set (a kubeconfig of a real cluster to test against)",
                allow_module_level=True)

NAMESPACE = os.environ.get("VACAGENT_TEST_NAMESPACE", "default")
# The worker checks what vacagent gave it, then leaves its shutdown message as its termination message.
WORKER = ('test -r /var/run/vacagent/user_data && test -n "$VACAGENT_TOKEN" '
          '&& test "$(cat /var/run/vacagent/token)" = "$VACAGENT_TOKEN" '
          '&& echo "300 No more work available" > /dev/termination-log')


@pytest.fixture
def backend(tmp_path):
    site = f"vacagent-test-{secrets.token_hex(3)}"  # this run's pods only
    options = {"kubeconfig": KUBECONFIG, "namespace": NAMESPACE}
    b = KubernetesBackend(BackendContext(site, "cluster", tmp_path, options, SystemClock()))
    yield b
    for machine in b.list_machines():
        b.delete_machine(machine)


def until(condition, seconds: float = 180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"not reached within {seconds}s")


def test_a_pod_reads_its_secret_and_leaves_its_message(backend):
    mt = MachineType(name="probe", processors=1, mb_per_processor=64,
                     extra={"root_image": "docker://busybox:1.36", "container_command": ["sh", "-c", WORKER]})
    name = f"probe-{secrets.token_hex(4)}"
    created = backend.create_machine(CreateRequest(name, mt, "#!/bin/sh\n", {"VACAGENT_TOKEN": f"vac.c.{name}.x"}))
    assert created.state is MachineState.STARTING
    stopped = until(lambda: next((m for m in backend.list_machines()
                                  if m.name == name and m.state is MachineState.STOPPED), None))
    assert stopped.message == "300 No more work available"
    backend.delete_machine(stopped)
    until(lambda: name not in {m.name for m in backend.list_machines()})
    until(lambda: not secret_exists(backend, name))  # the garbage collector took it with its pod
    backend.delete_machine(stopped)  # gone: still a success


def secret_exists(backend, name: str) -> bool:
    import kubernetes.client

    try:
        backend.api.read_namespaced_secret(name, NAMESPACE)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def test_a_missing_image_is_a_500_abort(backend):
    mt = MachineType(name="noimage", processors=1, mb_per_processor=64,
                     extra={"root_image": "registry.invalid/vacagent/none:0"})
    name = f"noimage-{secrets.token_hex(4)}"
    backend.create_machine(CreateRequest(name, mt, "", {"VACAGENT_TOKEN": "x"}))
    failed = until(lambda: next((m for m in backend.list_machines()
                                 if m.name == name and m.state is MachineState.FAILED), None))
    assert failed.message.startswith(("500 ErrImagePull", "500 ImagePullBackOff"))
