"""The OpenStack control plane as pytest sees it: one per session, started for `openstack`-marked tests.

`openstack_cloud` (session scope) brings up tests/openstack_controlplane.py
once, with the fault proxy (openstack_proxy.py) registered as the compute
endpoint of region `FAULTY_REGION`, and at the end stops every process it
started.  When the services cannot be started it calls
`service_unavailable()`: skipped on a developer's machine, failed in CI.
Every test marked `openstack` gets it (`_openstack_for_marked_tests`);
`current()` hands it to code that is not a fixture (the conformance driver).

`Cloud` is what tests use: `project()` makes a fresh keystone project
(tests never share servers or quotas), `options(project)` the space
options that reach it, `admin(project)` an SDK connection to act behind
the backend's back (stop a server, set a quota), `wipe(project)` deletes
its servers and waits until they are gone.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from conftest import service_unavailable
from openstack_controlplane import DEFAULT_VENV, IMAGE, REGION, ControlPlane, StartError
from openstack_proxy import FaultProxy

FAULTY_REGION = "Faulty"
_CURRENT: "Cloud | None" = None
_names = itertools.count(1)


class Cloud:
    def __init__(self, plane: ControlPlane, proxy: FaultProxy):
        self.plane, self.proxy = plane, proxy
        self.root = plane.connect()

    def project(self, quotas: dict | None = None) -> str:
        """A new project in which admin may act; `quotas` set nova's (default: unlimited)."""
        name = f"p{os.getpid()}-{next(_names)}"
        project = self.root.identity.create_project(name=name, domain_id="default")
        admin = self.root.identity.find_user("admin")
        role = self.root.identity.find_role("admin")
        self.root.identity.assign_project_role_to_user(project, admin, role)
        if quotas:
            self.root.compute.update_quota_set(project.id, **quotas)
        return name

    def project_id(self, project: str) -> str:
        return self.root.identity.find_project(project).id

    def auth(self, project: str) -> dict[str, str]:
        return self.plane.admin_auth(project)

    def options(self, project: str, faulty: bool = False, **kw) -> dict:
        return {"auth": self.auth(project), "region": FAULTY_REGION if faulty else REGION, "network": "none",
                "flavor_names": ["vac.1", "vac.2", "vac.4"], **kw}

    def admin(self, project: str):
        return self.plane.connect(project)

    def wipe(self, project: str, timeout: float = 300) -> None:
        c = self.admin(project)
        for server in c.compute.servers():
            c.compute.delete_server(server, ignore_missing=True)
        deadline = time.monotonic() + timeout
        while list(c.compute.servers()) and time.monotonic() < deadline:
            time.sleep(0.5)


def current() -> Cloud:
    assert _CURRENT is not None, "the openstack_cloud fixture is not active (is the test marked openstack?)"
    return _CURRENT


def _register_faulty_region(plane: ControlPlane, proxy: FaultProxy) -> None:
    c = plane.connect()
    for endpoint in list(c.identity.endpoints(region_id=FAULTY_REGION)):
        c.identity.delete_endpoint(endpoint)  # a control plane reused from an earlier session
    if not c.identity.find_region(FAULTY_REGION):
        c.identity.create_region(id=FAULTY_REGION)
    urls = {"compute": proxy.url + "/v2.1"}
    for endpoint in list(c.identity.endpoints(interface="public")):
        service = c.identity.get_service(endpoint.service_id)
        if service.type == "identity":
            continue
        for interface in ("public", "internal"):
            c.identity.create_endpoint(service_id=service.id, interface=interface, region_id=FAULTY_REGION,
                                       url=urls.get(service.type, endpoint.url))


@pytest.fixture(scope="session")
def openstack_cloud(tmp_path_factory):
    global _CURRENT
    venv = Path(os.environ.get("VACAGENT_OPENSTACK_VENV", DEFAULT_VENV))
    running = os.environ.get("VACAGENT_OPENSTACK_DIR")  # one started by hand (openstack_controlplane.py DIR)
    plane = ControlPlane.attach(Path(running), venv) if running else ControlPlane(tmp_path_factory.mktemp("openstack"), venv)
    try:
        if not running:
            plane.start()
    except (StartError, Exception) as e:  # noqa: BLE001 - whatever stops it, say so (CI fails on it)
        service_unavailable(f"OpenStack control plane cannot be started: {type(e).__name__}: {e}")
    proxy = FaultProxy(f"http://127.0.0.1:{plane.ports['nova']}").start()
    try:
        _register_faulty_region(plane, proxy)
        _CURRENT = Cloud(plane, proxy)
        print(f"\nOpenStack control plane up: {plane.timings} (s since start)")
        yield _CURRENT
    finally:
        _CURRENT = None
        proxy.stop()
        plane.stop()


OPENSTACK_TEST_TIMEOUT = 900  # the first test also waits for the control plane to come up (1-3 min)


def pytest_collection_modifyitems(items):
    """The openstack tests' time limit covers bringing the control plane up (pytest-timeout counts setup)."""
    for item in items:
        if item.get_closest_marker("openstack") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(OPENSTACK_TEST_TIMEOUT))


@pytest.fixture(autouse=True)
def _openstack_for_marked_tests(request):
    if request.node.get_closest_marker("openstack"):
        request.getfixturevalue("openstack_cloud")
        current().proxy.clear()
    yield


__all__ = ["openstack_cloud", "_openstack_for_marked_tests", "pytest_collection_modifyitems", "current", "Cloud", "FAULTY_REGION", "IMAGE"]
