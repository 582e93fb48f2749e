"""The Backend protocol's contract, run against every backend (DESIGN.md §3)."""

import pytest

from vacagent.model import MachineState

from backends import DRIVERS


@pytest.fixture(params=DRIVERS, ids=lambda d: d.name)
def driver(request, tmp_path):
    d = request.param(tmp_path)
    yield d
    d.cleanup()


def listed(driver):
    return {m.name: m for m in driver.backend.list_machines()}


def test_created_machine_is_listed_with_its_machinetype(driver):
    m = driver.backend.create_machine(driver.request("mt-0001"))
    assert m.name == "mt-0001" and m.machinetype == "mt" and m.processors == 2 and m.backend_id
    machine = driver.wait(lambda: listed(driver).get("mt-0001"))
    assert machine.state in (MachineState.STARTING, MachineState.RUNNING)
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


def test_listing_shows_only_this_site_and_space(driver):
    driver.backend.create_machine(driver.request("mt-0005"))
    assert driver.other("site", "elsewhere").list_machines() == []
    assert driver.other("another-site", "s").list_machines() == []


def test_requests_are_counted(driver):
    before = driver.backend.requests_made
    driver.backend.list_machines()
    driver.backend.create_machine(driver.request("mt-0006"))
    assert driver.backend.requests_made == before + 2
