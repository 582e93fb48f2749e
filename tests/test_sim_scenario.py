"""Scenario files: the shipped ones load, and bad ones are refused with file, key and reason."""

import pytest

from vacagent.sim import scenario as scenarios
from vacagent.sim.scenario import ScenarioError

from sim_helpers import load, tiny, write

SHIPPED = ["steady", "bursty", "shares", "broken_image", "boot_failures", "night_morning", "large_lab", "lpc_egee"]


def test_every_issue_scenario_is_shipped_and_described():
    shipped = scenarios.shipped()
    assert set(SHIPPED) <= set(shipped)
    assert all(shipped[name] for name in shipped)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_load(name):
    s = scenarios.load(name)
    assert s.jobs and s.projects and s.spaces and s.duration > 0
    assert list(s.jobs) == sorted(s.jobs, key=lambda j: (j.arrival, j.project))
    assert all(0 <= j.arrival < s.duration for j in s.jobs)


def test_a_scenario_is_found_by_path_or_shipped_name(tmp_path):
    assert scenarios.locate("steady").name == "steady.json"
    assert scenarios.locate(str(write(tmp_path, tiny()))) == tmp_path / "tiny.json"
    with pytest.raises(ScenarioError, match="no-such: no such file, nor a shipped scenario .*steady"):
        scenarios.locate("no-such")


def test_defaults_and_seed(tmp_path):
    s = load(tmp_path, tiny())
    assert (s.name, s.seed, s.cycle_seconds, s.duration, s.processors) == ("tiny", 1, 60, 1500, 1)
    p = s.projects[0]
    assert (p.name, p.processors, p.target_share, p.idle_seconds) == ("alpha", 1, 1.0, 120)
    assert s.spaces[0].boot.mean == 60 and s.spaces[0].max_starting_seconds == 3600
    assert load(tmp_path, tiny(), seed=9).seed == 9


def bad(tmp_path, data, *fragments):
    with pytest.raises(ScenarioError) as e:
        load(tmp_path, data)
    message = str(e.value)
    assert str(tmp_path / "tiny.json") in message
    for fragment in fragments:
        assert fragment in message, message


def test_schema_violations_name_the_key(tmp_path):
    data = tiny(duration="1x", spaces=[{"name": "lab", "processors": 0}])
    data["projects"][0]["workload"] = [{"kind": "steady", "duration": 60}]
    bad(tmp_path, data, "duration: '1x' does not match", "spaces.0.processors: 0 is less than the minimum of 1",
        "projects.0.workload.0: 'jobs_per_hour' is a required property")


def test_unknown_keys_and_kinds(tmp_path):
    bad(tmp_path, tiny(colour="blue"), "(top level): Additional properties are not allowed ('colour'")
    bad(tmp_path, tiny(incidents=[{"kind": "meteor"}]), "incidents.0.kind: 'meteor' is not one of")


def test_distribution_fields_are_checked(tmp_path):
    data = tiny(spaces=[{"name": "lab", "processors": 1, "boot_seconds": {"distribution": "uniform", "min": 1}}])
    bad(tmp_path, data, "spaces.0.boot_seconds: 'max' is a required property")


def test_names_must_exist_and_be_unique(tmp_path):
    data = tiny(incidents=[{"kind": "broken_image", "project": "zeta"},
                           {"kind": "api_errors", "space": "moon", "start": 10, "end": 5}])
    data["projects"].append(dict(data["projects"][0]))
    bad(tmp_path, data, "incidents.0.project: no project 'zeta'", "incidents.1.space: no space 'moon'",
        "incidents.1.end: must be after start", "projects: name 'alpha' is used twice")


def test_jobs_must_fit_the_machines(tmp_path):
    data = tiny()
    data["projects"][0]["workload"] = [{"kind": "jobs", "jobs": [[0, 2, 10]]}]
    bad(tmp_path, data, "projects.0.workload.0: a job at 0s needs 2 processors; the project's machines have 1")
    data["projects"][0]["workload"] = [{"kind": "jobs", "jobs": [[5, 1, 90000]]}]
    bad(tmp_path, data, "projects.0.workload.0: 1 job(s) last longer than the machines' max_wallclock_seconds (86400s)")


def test_machinetype_keys_are_checked_as_the_daemon_checks_them(tmp_path):
    data = tiny(machinetype={"fizzle_seconds": -1})
    bad(tmp_path, data, "projects.0.machinetype", "fizzle_seconds: -1 is less than the minimum of 0")
    data = tiny()
    data["projects"][0]["machinetype"] = {"user_data": "x"}
    bad(tmp_path, data, "projects.0.machinetype.user_data: set by the simulator")


def test_a_bad_csv_is_reported_with_the_scenario(tmp_path):
    data = tiny()
    data["projects"][0]["workload"] = [{"kind": "csv", "file": "jobs.csv"}]
    (tmp_path / "jobs.csv").write_text("0,1,10\nzero,1,10\n")
    bad(tmp_path, data, "projects.0.workload.0:", "jobs.csv:2")


def test_not_json(tmp_path):
    (tmp_path / "tiny.json").write_text("{")
    with pytest.raises(ScenarioError, match="tiny.json: not valid JSON"):
        scenarios.load(str(tmp_path / "tiny.json"))
