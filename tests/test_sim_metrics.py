"""Figures on tiny hand-computed runs: first from hand-made traces, then through the real cycle."""

import pytest

from vacagent.sim import metrics, simulate
from vacagent.sim.trace import MachineLife, Samples, Trace

from sim_helpers import load, tiny


def scenario_two_projects(tmp_path):
    data = tiny(duration=1000)
    data["projects"] = [
        {"name": "a", "target_share": 3, "workload": [{"kind": "jobs", "jobs": [[0, 1, 400], [100, 1, 400]]}]},
        {"name": "b", "target_share": 1, "workload": [{"kind": "jobs", "jobs": [[0, 1, 2000], [900, 1, 50]]}]},
    ]
    return load(tmp_path, data)


def trace(machines, starts, ends, samples=None):
    return Trace("t", 1000.0, machines, starts, ends, {"a": 0.0, "b": 0.0}, samples or Samples(),
                 {"list": 10, "create": 3, "delete": 2, "failed": 1})


def test_figures_from_a_hand_made_trace(tmp_path):
    s = scenario_two_projects(tmp_path)  # jobs in arrival order: a@0, b@0, a@100, b@900
    machines = [
        MachineLife("a-1", "a", "lab", 1, created=0, started=50, stopped=580, gone=600, jobs_started=1,
                    message="300 No more work available", job_seconds=400),
        MachineLife("a-2", "a", "lab", 1, created=0, started=60, gone=None, jobs_started=1,  # to the end
                    job_seconds=400),
        MachineLife("b-1", "b", "lab", 2, created=100, started=160, stopped=380, gone=400, jobs_started=0,
                    message="300 No more work available"),  # found no work
    ]
    starts = [50.0, None, 500.0, None]
    ends = [450.0, None, 900.0, None]
    f = metrics.figures(s, trace(machines, starts, ends))
    total, a, b = f["total"], f["projects"]["a"], f["projects"]["b"]
    assert a.provisioned == 600 + 1000 and b.provisioned == 2 * 300
    assert a.useful == 400 + 400 and b.useful == 0
    assert total.useful_fraction == pytest.approx(800 / 2200)
    assert a.phases == {"starting": 110, "working": 800, "idle": 130 + 540, "lost": 0, "draining": 20}
    assert b.phases == {"starting": 120, "working": 0, "idle": 440, "lost": 0, "draining": 40}
    assert b.fizzle_waste == 600 and a.fizzle_waste == 0
    # waits: a 50 and 400; b never started: 1000 - 0 and 1000 - 900 (lower bounds)
    assert a.wait_mean == 225 and b.wait_mean == 550 and total.wait_mean == (50 + 1000 + 400 + 100) / 4
    assert total.wait_p95 == 1000 and a.wait_p95 == 400
    assert (a.jobs, a.started, a.completed, b.completed) == (2, 2, 2, 0)
    assert a.demand == 800 and b.demand == 1000 + 50  # capped at the end of the window
    assert total.api_calls == 15 and total.served is None and total.machines == 3


def test_demand_served_is_against_the_reference(tmp_path):
    s = scenario_two_projects(tmp_path)
    mine = trace([MachineLife("a-1", "a", "lab", 1, 0, 0, gone=1000, jobs_started=1, job_seconds=400)],
                 [0.0, None, None, None], [400.0, None, None, None])
    best = trace([MachineLife("a-1", "a", "lab", 1, 0, 0, gone=1000, jobs_started=2, job_seconds=800),
                  MachineLife("b-1", "b", "lab", 1, 0, 0, gone=None, jobs_started=1, job_seconds=1000),
                  MachineLife("b-2", "b", "lab", 1, 900, 900, gone=950, jobs_started=1, job_seconds=50)],
                 [0.0, 0.0, 400.0, 900.0], [400.0, None, 800.0, 950.0])
    reference = metrics.figures(s, best)
    assert reference["total"].useful == 400 + 1000 + 400 + 50
    f = metrics.figures(s, mine, reference)
    assert f["total"].served == pytest.approx(400 / 1850)
    assert f["projects"]["a"].served == pytest.approx(400 / 800) and f["projects"]["b"].served == 0


def test_share_accuracy_counts_only_samples_where_every_project_waits(tmp_path):
    s = scenario_two_projects(tmp_path)  # targets 75% / 25%
    samples = Samples()
    samples.add(0, {"a": {}, "b": {}}, {"a": 3, "b": 1}, {"a": 1, "b": 0})  # b waits for nothing: skipped
    samples.add(60, {"a": {}, "b": {}}, {"a": 3, "b": 1}, {"a": 2, "b": 5})  # exact: accuracy 1
    samples.add(120, {"a": {}, "b": {}}, {"a": 1, "b": 1}, {"a": 2, "b": 5})  # 50/50: 1 - (0.25 + 0.25)/2
    part, accuracy = metrics.shares(s, trace([], [None] * 4, [None] * 4, samples))
    assert accuracy == pytest.approx((1 + 0.75) / 2)
    assert part == {"a": pytest.approx((0.75 + 0.5) / 2), "b": pytest.approx((0.25 + 0.5) / 2)}


def test_share_accuracy_needs_two_projects_and_a_contended_sample(tmp_path):
    s = load(tmp_path, tiny())
    assert metrics.shares(s, trace([], [None], [None])) == ({"alpha": None}, None)


def run(tmp_path, data, policies=("vacagent", "vcycle", "static", "oracle")):
    return simulate.simulate(load(tmp_path, data), policies, jobs=1)


def test_one_job_through_the_real_cycle_hand_computed(tmp_path):
    """One processor, one job of 1000 s at 0, boots of 60 s, idle_seconds 120, cycles every 60 s, 1500 s.

    vacagent, vcycle and static create the machine at 0; it boots at 60, runs the job until 1060, waits 120 s
    and stops with 300 at 1180; the cycle at 1200 deletes it (it still holds its processor in that cycle's
    plan).  vacagent and vcycle then back off (the 300 is an abort); static creates again at 1260: it boots
    at 1320, finds no work, stops at 1440 and is deleted by the cycle at 1440, the last one.  The oracle
    boots at 0 for the job's arrival and deletes the machine at 1060.
    """
    result = run(tmp_path, tiny())
    f = {name: result.figures[name]["total"] for name in result.policies}
    for name in ("vacagent", "vcycle"):
        assert (f[name].provisioned, f[name].useful, f[name].wait_mean, f[name].fizzle_waste) == (1200, 1000, 60, 0)
        assert f[name].useful_fraction == pytest.approx(1000 / 1200) and f[name].served == 1
        assert f[name].machines == 1 and f[name].completed == 1
    assert (f["static"].provisioned, f["static"].fizzle_waste, f["static"].machines) == (1200 + 180, 180, 2)
    assert (f["oracle"].provisioned, f["oracle"].useful, f["oracle"].wait_mean) == (1060, 1000, 60)
    # requests: vacagent lists 25 times (one page), creates 1 and deletes 1
    assert (f["vacagent"].api_calls, f["static"].api_calls, f["oracle"].api_calls) == (27, 29, 2)


def test_backoff_keeps_vacagent_from_recreating_where_static_does(tmp_path):
    data = tiny(duration=7200)  # the job is done at 1060; nothing more to do
    result = run(tmp_path, data, ("vacagent", "vcycle", "static"))
    waste = {name: result.figures[name]["total"].fizzle_waste for name in result.policies}
    machines = {name: result.figures[name]["total"].machines for name in result.policies}
    # An empty queue backs off backoff_seconds each time, as Vcycle does (no growth: a quiet spell is not
    # a run of failures), so the probes are as many; static recreates at once.
    assert machines["vacagent"] <= machines["vcycle"] < machines["static"]
    assert waste["vacagent"] <= waste["vcycle"] < waste["static"]
