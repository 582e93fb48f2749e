"""The static partition and the oracle's schedule, on cases worked by hand."""

import pytest

from vacagent.model import MachineState as S
from vacagent.sim.policies import oracle, static

from conftest import T0, limits, mt, view
from sim_helpers import load, tiny


@pytest.mark.parametrize("limit, shares, parts", [
    (100, {"a": 1, "b": 1}, {"a": 50, "b": 50}),
    (100, {"a": 2, "b": 1, "c": 1}, {"a": 50, "b": 25, "c": 25}),
    (10, {"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}),
    (10, {"a": 1, "b": 0}, {"a": 10, "b": 0}),
    (10, {"a": 0}, {"a": 0}),
])
def test_partition(limit, shares, parts):
    assert static.partition(limit, shares) == parts


def test_static_refills_its_partition_at_once_and_ignores_feedback():
    views = [view(name="a-1", machinetype="a"), view(name="a-2", machinetype="a", state=S.STOPPED)]
    d = static.plan(limits(10), {"a": mt("a"), "b": mt("b")}, views, {}, T0 + 100)
    assert {c.machinetype: c.count for c in d.plan.creates} == {"a": 3, "b": 5}  # the stopped one holds until gone
    assert [x.name for x in d.plan.deletes] == ["a-2"]


def schedule(tmp_path, projects, processors=1, boot=60, duration=10_000, **kw):
    data = tiny(duration=duration, spaces=[{"name": "lab", "processors": processors, "boot_seconds": boot}],
                projects=[{"name": name, "workload": [{"kind": "jobs", "jobs": jobs}]} for name, jobs in projects],
                **kw)
    return oracle.schedule(load(tmp_path, data))


def test_oracle_boots_ahead_so_jobs_start_on_arrival(tmp_path):
    t = schedule(tmp_path, [("a", [[500, 1, 100]])])
    assert t.job_start == [500] and t.job_end == [600]
    (m,) = t.machines
    assert (m.created, m.started, m.gone) == (440, 500, 600)


def test_oracle_keeps_a_machine_for_its_projects_next_job_within_the_boot_time(tmp_path):
    t = schedule(tmp_path, [("a", [[0, 1, 100], [140, 1, 100], [400, 1, 100]])])
    assert t.job_start == [60, 160, 400]  # the first waits for the pool's first boot; the second waits its turn
    assert [(m.created, m.gone, m.jobs_started) for m in t.machines] == [(0, 260, 2), (340, 500, 1)]
    assert t.api == {"create": 2, "delete": 2}


def test_oracle_under_contention_serves_earliest_first_and_boots_for_another_project(tmp_path):
    t = schedule(tmp_path, [("a", [[100, 1, 1000]]), ("b", [[200, 1, 100]])])
    # one processor: b waits for a's machine to go (1100), then boots (60 s)
    assert t.job_start == [100, 1160] and t.job_end == [1100, 1260]
    assert [(m.project, m.created, m.gone) for m in t.machines] == [("a", 40, 1100), ("b", 1100, 1260)]


def test_oracle_does_not_boot_a_broken_image(tmp_path):
    incident = {"kind": "broken_image", "project": "a", "start": 0, "end": 1000}
    t = schedule(tmp_path, [("a", [[100, 1, 100]])], incidents=[incident])
    assert t.job_start == [1060] and t.machines[0].created == 1000
