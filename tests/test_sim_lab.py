"""The simulated lab: vacuum machine behaviour, the cloud's failures, and the backend over it."""

import random

import pytest

from vacagent.backends.base import CreateRequest
from vacagent.errors import CapacityExhausted, Temporary
from vacagent.model import Machine, MachineState as S, MachineType
from vacagent.sim.backend import SimBackend
from vacagent.sim.lab import Lab

from sim_helpers import load, tiny


def lab(tmp_path, jobs=((0, 1, 1000),), processors=2, incidents=(), **project):
    data = tiny(spaces=[{"name": "lab", "processors": processors, "boot_seconds": 60}], incidents=list(incidents))
    data["projects"][0].update(project)
    data["projects"][0]["workload"] = [{"kind": "jobs", "jobs": [list(j) for j in jobs]}]
    return Lab(load(tmp_path, data), random.Random(1))


def test_a_machine_boots_takes_the_job_then_idles_and_stops_with_300(tmp_path):
    world = lab(tmp_path)
    m = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(59)
    assert m.state is S.STARTING and world.job_start == [None]
    world.advance(60)
    assert m.state is S.RUNNING and world.job_start == [60.0] and m.job == 0
    world.advance(1060 + 119)
    assert world.job_end == [1060.0] and m.state is S.RUNNING and m.job is None
    world.advance(1180)
    assert m.state is S.STOPPED and m.life.stopped == 1180 and m.life.message == "300 No more work available"


def test_an_idle_machine_takes_a_job_that_arrives(tmp_path):
    world = lab(tmp_path, jobs=[(0, 1, 100), (200, 1, 100)])
    m = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(1000)
    assert world.job_start == [60.0, 200.0] and world.job_end == [160.0, 300.0]
    assert m.life.stopped == 420 and m.life.jobs_started == 2  # idle 120 s after its second job


def test_a_machine_stops_with_200_when_the_next_job_would_outlive_its_wallclock(tmp_path):
    data_jobs = [(0, 1, 500), (0, 1, 500)]
    world = lab(tmp_path, jobs=data_jobs, machinetype={"max_wallclock_seconds": 900})
    m = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(1000)
    assert world.job_start == [60.0, None] and m.life.stopped == 560
    assert m.life.message == "200 Intended work completed ok"


def test_jobs_wait_in_arrival_order(tmp_path):
    world = lab(tmp_path, jobs=[(0, 1, 100), (1, 1, 100), (2, 1, 100)])
    world.create("lab", "alpha-1", "alpha", 1)
    world.advance(400)
    assert world.job_start == [60.0, 160.0, 260.0]


@pytest.mark.parametrize("mode, state, message", [("stops", S.STOPPED, "500 x"), ("never_boots", S.STARTING, None)])
def test_a_broken_image(tmp_path, mode, state, message):
    incident = {"kind": "broken_image", "project": "alpha", "mode": mode, "after_seconds": 30, "message": "500 x",
                "start": 0, "end": 100}
    world = lab(tmp_path, incidents=[incident])
    m = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(1000)
    assert m.state is state and m.life.message == message and world.job_start == [None]
    assert (m.life.stopped == 90) == (mode == "stops")
    world.advance(1000)
    later = world.create("lab", "alpha-2", "alpha", 1)  # created after the fix: a good machine
    world.advance(1100)
    assert later.state is S.RUNNING and world.job_start == [1060.0]


def test_boot_failures_end_in_failed_without_starting(tmp_path):
    world = lab(tmp_path, incidents=[{"kind": "boot_failures", "probability": 1, "end": 100}])
    m = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(500)
    assert m.state is S.FAILED and m.life.started is None and m.life.stopped == 60 and world.job_start == [None]


def test_deleting_a_busy_machine_puts_its_job_back_first_in_line(tmp_path):
    world = lab(tmp_path, jobs=[(0, 1, 1000), (0, 1, 1000)])
    a = world.create("lab", "alpha-1", "alpha", 1)
    world.advance(100)
    world.delete(a)
    assert world.lost["alpha"] == 40 and list(world.queues["alpha"]) == [0, 1] and world.job_start == [None, None]
    assert a.life.gone == 100 and world.used["lab"] == 0 and "alpha-1" not in world.live["lab"]
    b = world.create("lab", "alpha-2", "alpha", 1)
    world.advance(200)
    assert world.job_start == [160.0, None] and b.job == 0


def test_capacity_loss_fails_the_newest_machines(tmp_path):
    world = lab(tmp_path, jobs=[(0, 1, 1000)] * 3, processors=3,
                incidents=[{"kind": "capacity_loss", "start": 500, "end": 900, "processors": 1}])
    machines = [world.create("lab", f"alpha-{i}", "alpha", 1) for i in range(3)]
    world.advance(500)
    assert [m.state for m in machines] == [S.RUNNING, S.FAILED, S.FAILED]
    assert world.lost["alpha"] == 2 * 440 and len(world.queues["alpha"]) == 2  # their jobs wait again
    assert world.capacity("lab") == 1
    world.advance(900)
    assert world.capacity("lab") == 3


def backend(tmp_path, **kw):
    world = lab(tmp_path, **kw)
    return world, SimBackend(world, "lab", 1000.0)


def request(name):
    return CreateRequest(name, MachineType("alpha"), "")


def test_backend_lists_in_pages_and_translates_machines(tmp_path):
    world, be = backend(tmp_path, processors=1200)
    be.page_size = 500
    assert be.list_machines() == [] and be.requests_made == 1
    for i in range(1001):
        be.create_machine(request(f"alpha-{i}"))
    world.advance(60)
    listing = be.list_machines()
    assert be.counts == {"list": 4, "create": 1001} and be.requests_made == 1005
    assert listing[0] == Machine("alpha-0", "alpha", S.RUNNING, "sim-alpha-0", 1, started_at=1060.0)


def test_backend_carries_the_shutdown_message_and_stop_time(tmp_path):
    world, be = backend(tmp_path)
    be.create_machine(request("alpha-1"))
    world.advance(2000)
    (m,) = be.list_machines()
    assert (m.state, m.stopped_at, m.message) == (S.STOPPED, 1000.0 + 1180, "300 No more work available")
    be.delete_machine(m)
    assert be.list_machines() == []
    be.delete_machine(m)  # already gone counts as success


def test_backend_refuses_what_does_not_fit_and_is_idempotent(tmp_path):
    world, be = backend(tmp_path, processors=1)
    first = be.create_machine(request("alpha-1"))
    assert be.create_machine(request("alpha-1")) == first
    with pytest.raises(CapacityExhausted, match="space lab is full"):
        be.create_machine(request("alpha-2"))


def test_backend_fails_during_api_errors(tmp_path):
    world, be = backend(tmp_path, incidents=[{"kind": "api_errors", "start": 0, "end": 100}])
    with pytest.raises(Temporary, match="simulated API error"):
        be.list_machines()
    world.advance(100)
    assert be.list_machines() == [] and be.counts["failed"] == 1
