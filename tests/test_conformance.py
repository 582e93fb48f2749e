"""The backend conformance suite: the Backend protocol (DESIGN.md §3), run against every backend.

Each backend takes part through one driver in tests/backends.py; its
optional abilities (paged listing, native states, native errors) add it to
the tests below that need them, so no test is ever skipped for a backend.
"""

import math

import pytest

from vacagent.model import MachineState

from backends import DRIVERS, Native


def _param(d, *values, id):
    # A driver whose backend needs a service carries that service's marks (MARKS), e.g. openstack.
    return pytest.param(d, *values, id=id, marks=getattr(d, "MARKS", ()))


def _cases(attribute):
    return [_param(d, case, id=f"{d.name}-{case}") for d in DRIVERS for case in getattr(d, attribute, {})]


def _make(cls, request, tmp_path):
    d = cls(tmp_path)
    request.addfinalizer(d.cleanup)
    return d


@pytest.fixture(params=[_param(d, id=d.name) for d in DRIVERS])
def driver(request, tmp_path):
    return _make(request.param, request, tmp_path)


def listed(driver):
    return {m.name: m for m in driver.backend.list_machines()}


def test_created_machine_is_listed_with_its_machinetype(driver):
    m = driver.backend.create_machine(driver.request("mt-0001"))
    assert m.name == "mt-0001" and m.machinetype == "mt" and m.processors == 2 and m.backend_id
    machine = driver.wait(lambda: listed(driver).get("mt-0001"))
    assert machine.state in (MachineState.STARTING, MachineState.RUNNING)
    assert machine.machinetype == "mt"
    running = driver.wait(lambda: listed(driver)["mt-0001"].state is MachineState.RUNNING)
    assert running


def test_create_is_idempotent_for_the_same_name(driver):
    first = driver.backend.create_machine(driver.request("mt-0002"))
    second = driver.backend.create_machine(driver.request("mt-0002"))
    assert first.backend_id == second.backend_id
    assert list(listed(driver)) == ["mt-0002"]


def test_delete_removes_and_deleting_a_gone_machine_succeeds(driver):
    m = driver.backend.create_machine(driver.request("mt-0003"))
    driver.wait(lambda: listed(driver)["mt-0003"].state is MachineState.RUNNING)
    driver.backend.delete_machine(m)
    driver.wait(lambda: "mt-0003" not in listed(driver))
    driver.backend.delete_machine(m)  # already gone: success


def test_machine_that_stops_by_itself_is_listed_stopped(driver):
    driver.backend.create_machine(driver.request("mt-0004"))
    driver.wait(lambda: listed(driver)["mt-0004"].state is MachineState.RUNNING)
    driver.let_exit("mt-0004")
    m = driver.wait(lambda: listed(driver)["mt-0004"].state is MachineState.STOPPED and listed(driver)["mt-0004"])
    assert m.stopped_at is not None and m.started_at is not None and m.stopped_at >= m.started_at


def test_create_after_a_restart_finds_the_machine_of_the_same_name(driver):
    """A daemon that crashed after asking for a machine asks again with the same name: still one machine."""
    first = driver.backend.create_machine(driver.request("mt-0010"))
    restarted = driver.other("site", "s")
    again = restarted.create_machine(driver.request("mt-0010"))
    assert again.backend_id == first.backend_id
    assert list(listed(driver)) == ["mt-0010"]


def test_listing_shows_only_this_site_and_space(driver):
    driver.backend.create_machine(driver.request("mt-0005"))
    assert driver.other("site", "elsewhere").list_machines() == []
    assert driver.other("another-site", "s").list_machines() == []


def test_requests_are_counted(driver):
    before = driver.backend.requests_made
    driver.backend.list_machines()
    driver.backend.create_machine(driver.request("mt-0006"))
    assert driver.backend.requests_made == before + 1 + getattr(driver, "CREATE_REQUESTS", 1)


@pytest.mark.parametrize("cls", [_param(d, id=d.name) for d in DRIVERS if hasattr(d, "populate")])
def test_listing_is_paged_never_per_machine(cls, request, tmp_path):
    driver = _make(cls, request, tmp_path)
    n = getattr(cls, "POPULATE", 1200)
    driver.populate(n)
    before = driver.backend.requests_made
    machines = driver.backend.list_machines()
    assert len(machines) == n and len({m.name for m in machines}) == n
    assert driver.backend.requests_made - before == math.ceil(n / cls.PAGE_SIZE)


@pytest.mark.parametrize("cls,native", _cases("STATES"))
def test_native_states_are_mapped(cls, native, request, tmp_path):
    driver = _make(cls, request, tmp_path)
    driver.backend.create_machine(driver.request("mt-0007"))
    driver.force_state("mt-0007", native)
    machine = listed(driver)["mt-0007"]
    expected = cls.STATES[native]
    if not isinstance(expected, Native):
        expected = Native(expected)
    assert machine.state is expected.state
    assert machine.cause is expected.cause
    if expected.message is None:
        assert machine.message is None
    else:
        assert machine.message and machine.message.startswith(expected.message), machine.message


@pytest.mark.parametrize("cls,case", _cases("ERRORS"))
def test_native_errors_are_mapped(cls, case, request, tmp_path):
    driver = _make(cls, request, tmp_path)
    operation, expected = cls.ERRORS[case]
    machine = driver.backend.create_machine(driver.request("mt-0008")) if operation == "delete" else None
    driver.inject(operation, case)
    call = (lambda: driver.backend.delete_machine(machine)) if machine else (
        lambda: driver.backend.create_machine(driver.request("mt-0009")))
    if expected is None:
        call()
    else:
        with pytest.raises(expected):
            call()
