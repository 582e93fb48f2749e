"""`vacagent usage` on state directories with known figures: a scripted fake-cloud run, and a simulator run
whose own useful-time figure (the same ledger, on the simulated machines' true lives) it must agree with."""

import json

import pytest

from vacagent import cli, usage
from vacagent.sim import simulate

from conftest import T0
from sim_helpers import load
from test_cycle import Lab

DAY = 86400


def scripted(tmp_path):
    """Two machinetypes of project `proj` (a 1-processor, b 2-processor), fake cloud, boots of 30 s.

    a-1: created T0, runs 30..630 reporting 400 s of jobs, stops with 300 at 630, deleted at 660, gone at 720.
    b-1: created T0, runs 30..330 and stops with 500 (lost), deleted at 360, gone at 420.
    a-2: created at 720 (a-1 gone: proj-a's processors_limit is 1), running at 900, no report: working so far.
    """
    mts = {"proj-a": {"user_data": str(tmp_path / "ud"), "fizzle_seconds": 60, "backoff_seconds": 10,
                      "processors_limit": 1},
           "proj-b": {"user_data": str(tmp_path / "ud"), "fizzle_seconds": 60, "backoff_seconds": 100000,
                      "processors": 2}}
    (tmp_path / "ud").write_text("#!/bin/sh\n")
    lab = Lab(tmp_path, machinetypes=mts, processors_limit=3, budget=3, delete_seconds=60)
    lab.cycle()
    (a1,), (b1,) = lab.live("proj-a"), lab.live("proj-b")
    (lab.space.store.machine_dir(a1) / "joboutputs" / "job_seconds").write_text("400")
    lab.cycle(100)  # both seen running, since 30
    lab.clock.advance(230)
    lab.backend.stop(b1, "500 Broken environment")  # T0+330
    lab.cycle(30)  # 360: b-1 deleted
    lab.cycle(60)  # 420: b-1 gone, closed
    lab.clock.advance(210)
    lab.backend.stop(a1, "300 No more work available")  # T0+630
    lab.cycle(30)  # 660: a-1 deleted
    lab.cycle(60)  # 720: a-1 closed, a-2 created (the backoff of 10 s is over)
    lab.cycle(180)  # 900: a-2 seen running (since 750)
    return lab


def test_usage_of_a_scripted_run_is_exact(tmp_path):
    lab = scripted(tmp_path)
    state, now = lab.settings.state_dir, T0 + 900
    report, _, skipped = usage.usage(state, T0, T0 + DAY, now, "machinetype")
    assert skipped == []
    a, b = report["groups"]["proj-a"], report["groups"]["proj-b"]
    # a-1: starting 30, working 400, idle 200, draining 90; a-2: starting 30, working 150
    assert a["processor_seconds"] == {"starting": 60, "working": 550, "idle": 200, "lost": 0, "draining": 90}
    assert b["processor_seconds"] == {"starting": 60, "working": 0, "idle": 0, "lost": 600, "draining": 180}
    assert a["machines"] == 2 and b["machines"] == 1
    assert report["lab"]["useful_fraction"] == pytest.approx(550 / (900 + 840))
    assert report["lab"]["step"] == ">=25% (next 50%)"
    by_project, _, _ = usage.usage(state, T0, T0 + DAY, now, "project")
    assert list(by_project["groups"]) == ["proj"] and by_project["groups"]["proj"] == {
        **by_project["lab"], "machines": 3}
    # a window cuts lives: [T0+300, T0+700)
    window, _, _ = usage.usage(state, T0 + 300, T0 + 700, now, "machinetype")
    assert window["groups"]["proj-a"]["processor_seconds"] == {
        "starting": 0, "working": 130, "idle": 200, "lost": 0, "draining": 70}
    assert window["groups"]["proj-b"]["processor_seconds"] == {
        "starting": 0, "working": 0, "idle": 0, "lost": 60, "draining": 180}


def test_usage_command(tmp_path, capsys):
    lab = scripted(tmp_path)
    state = str(lab.settings.state_dir)
    assert cli.main(["usage", "--state-dir", state, "--since", "2027-01-01", "--until", "2027-02-01",
                     "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lab"]["processor_seconds"]["lost"] == 600 and report["groups"].keys() == {"proj"}
    assert cli.main(["usage", "--state-dir", state, "--since", "2027-01-01", "--until", "2027-02-01",
                     "--by", "space"]) == 0
    text = capsys.readouterr().out
    assert "the rest of the lab's time: lost" in text and text.splitlines()[1].split()[:3] == [
        "space", "useful", "step"]
    assert cli.main(["usage", "--state-dir", state, "--since", "nonsense"]) == 2


def test_usage_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    lab = scripted(tmp_path)
    out = tmp_path / "usage.png"
    assert cli.main(["usage", "--state-dir", str(lab.settings.state_dir), "--since", "2027-01-15",
                     "--until", "2027-01-16", "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulator_and_daemon_ledgers_agree(tmp_path):
    """The simulator's useful figure (ledger on the true lives) and `usage` on the state directory the
    daemon's real cycle wrote in the same run: the same working time; the daemon's machine time is longer
    by at most one cycle per machine (it sees a deletion complete at its next listing)."""
    data = {
        "duration": 6 * 3600, "cycle_seconds": 60, "seed": 3,
        "spaces": [{"name": "lab", "processors": 8, "boot_seconds": 120, "delete_seconds": 30}],
        "projects": [
            {"name": "alpha", "idle_seconds": 300, "workload": [
                {"kind": "jobs", "jobs": [[t, 1, 2400] for t in range(0, 14400, 600)]}]},
            {"name": "beta", "idle_seconds": 600, "processors": 2, "workload": [
                {"kind": "jobs", "jobs": [[t, 2, 3000] for t in range(1800, 9000, 900)]}]},
        ],
    }
    scenario = load(tmp_path, data)
    result = simulate.simulate(scenario, ("vacagent",), keep=tmp_path / "runs", jobs=1)
    sim = result.figures["vacagent"]
    start, end = scenario.start_epoch, scenario.start_epoch + scenario.duration
    report, _, skipped = usage.usage(tmp_path / "runs" / "vacagent" / "state", start, end, end, "project")
    assert skipped == []
    machines = sim["total"].machines
    for name, figures in [*sim["projects"].items(), ("lab", sim["total"])]:
        daemon = report["lab"] if name == "lab" else report["groups"][name]
        ps = daemon["processor_seconds"]
        for phase in ("starting", "working", "idle", "lost"):  # reports are whole seconds: 1 s per machine
            assert ps[phase] == pytest.approx(figures.phases[phase], abs=2 * machines), (name, phase)
        assert 0 <= ps["draining"] - figures.phases["draining"] <= machines * 60 * 2
        assert daemon["useful_fraction"] == pytest.approx(figures.useful_fraction, abs=0.01)
    assert sim["total"].useful_fraction > 0.5
