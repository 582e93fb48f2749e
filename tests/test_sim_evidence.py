"""Simulator scenarios that isolate each evidence rule of the planner (issue 12).

Each runs the daemon's real cycle on a small lab: the machines report
`jobs_started` (and, where asked, `demand`) through joboutputs as the
shipped reporters would (`sim.reports`).
"""

import json

import pytest

from vacagent.sim import simulate

from sim_helpers import load

MT = {"backoff_seconds": 600, "fizzle_seconds": 600}


def lab(processors=40, duration="6h", projects=(), incidents=()):
    return {
        "duration": duration, "cycle_seconds": 60, "machinetype": MT,
        "spaces": [{"name": "lab", "processors": processors, "boot_seconds": {"distribution": "uniform", "min": 60, "max": 180}}],
        "projects": list(projects), "incidents": list(incidents),
    }


def project(name, workload, **kw):
    return {"name": name, "idle_seconds": "5m", "workload": workload, **kw}


def burst(at, jobs, duration="30m"):
    return {"kind": "burst", "at": at, "jobs": jobs, "duration": duration}


def run(tmp_path, data, policies=("vacagent", "vcycle")):
    result = simulate.simulate(load(tmp_path, data), policies + ("oracle",), jobs=1)
    return {name: result.figures[name] for name in policies}


def test_quiet_spell_then_burst_waits_no_longer_than_vcycle(tmp_path):
    """Hours of nothing, then work: the empty-queue backoff stays short, a probe that finds work ends it."""
    data = lab(projects=[project("a", [burst("10m", 5), burst("4h", 120)])])
    f = run(tmp_path, data)
    mine, theirs = f["vacagent"]["total"], f["vcycle"]["total"]
    assert mine.completed >= theirs.completed
    assert mine.wait_mean < theirs.wait_mean
    assert mine.fizzle_waste <= theirs.fizzle_waste


def first_ramp_after_probe(state_dir, after):
    """Seconds from the probe created after `after` (simulated seconds) to the next cycle creating more."""
    decisions = [json.loads(line) for line in (state_dir / "decisions" / "lab.jsonl").read_text().splitlines()]
    start = decisions[0]["time"]
    probe = None
    for d in decisions:
        made = len(d["created"].get("a", []))
        if d["time"] - start < after or not made:
            continue
        if probe is None:
            probe = d["time"]
        elif d["time"] > probe:
            return d["time"] - probe
    raise AssertionError("no probe, or no creation after it")


@pytest.mark.parametrize("reports, sooner", [(["jobs_started"], True), ([], False)])
def test_a_probe_that_starts_a_job_at_once_opens_creation_before_fizzle_seconds(tmp_path, reports, sooner):
    """After a quiet spell, the probe finds work as it boots: with the report, creation resumes the next
    cycle; without it, only once the probe has run fizzle_seconds (600 s)."""
    data = lab(projects=[project("a", [burst("10m", 5), burst("1h30m", 200)], reports=reports)])
    simulate.simulate(load(tmp_path, data), ("vacagent",), keep=tmp_path / "runs", jobs=1)
    gap = first_ramp_after_probe(tmp_path / "runs" / "vacagent" / "state", 5400)
    assert (gap < 600) is sooner, gap


def test_an_empty_queue_backs_off_less_than_a_broken_image(tmp_path):
    """Both projects abort all day, one with 300 (nothing to do), one with 500 (broken): the broken one gets
    fewer probes."""
    data = lab(duration="8h", projects=[project("idle", [burst("10m", 2)]), project("broken", [burst("10m", 50)])],
               incidents=[{"kind": "broken_image", "project": "broken", "after_seconds": "90s"}])
    f = run(tmp_path, data, ("vacagent",))["vacagent"]["projects"]
    assert f["broken"].machines < f["idle"].machines / 2


def test_a_demand_hint_bounds_creation(tmp_path):
    """A burst of 30 jobs on a roomy lab: with the hint, about as many machines as jobs.

    Both runs start alike: with no machine yet, nothing reports, and the first cycles spend the
    site's budget (20 machines a cycle, until the first ones are up and looking)."""
    work = [burst("0s", 1), burst("1h", 30, "1h")]
    hinted = lab(processors=200, duration="3h", projects=[project("a", work, reports=["jobs_started", "demand"])])
    plain = lab(processors=200, duration="3h", projects=[project("a", work)])
    a = run(tmp_path, hinted, ("vacagent",))["vacagent"]["total"]
    b = run(tmp_path, plain, ("vacagent",))["vacagent"]["total"]
    assert a.completed == b.completed == 31
    assert a.machines < b.machines and a.fizzle_waste <= b.fizzle_waste
    assert a.machines <= 40 + 30 + 5


def test_a_stale_demand_hint_is_ignored(tmp_path):
    """The hint says 0 waiting, then stops: work arriving later is served as if there were no hint."""
    projects = [project("a", [burst("10m", 3), burst("3h", 40)], reports=["jobs_started", "demand"], demand_until="1h")]
    stale = run(tmp_path, lab(duration="5h", projects=projects), ("vacagent",))["vacagent"]["total"]
    projects[0]["reports"] = ["jobs_started"]
    del projects[0]["demand_until"]
    none = run(tmp_path, lab(duration="5h", projects=projects), ("vacagent",))["vacagent"]["total"]
    assert stale.completed == none.completed == 43
    assert stale.wait_mean == pytest.approx(none.wait_mean, abs=120)
