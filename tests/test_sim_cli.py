"""`vacagent simulate` from the command line: table, JSON, plot, errors, determinism."""

import json
import os
import subprocess

import pytest

from vacagent import cli
from vacagent.sim import policies

from sim_helpers import tiny, write


def simulate(vacagent_bin, *args, env=None):
    return subprocess.run([vacagent_bin, "simulate", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def two_projects(tmp_path):
    data = tiny(duration="3h")
    data["projects"] = [
        {"name": "alpha", "target_share": 2,
         "workload": [{"kind": "steady", "jobs_per_hour": 30,
                       "duration": {"distribution": "uniform", "min": "5m", "max": "30m"}}]},
        {"name": "beta", "workload": [{"kind": "burst", "at": "1h", "jobs": 40, "duration": "20m"}]},
    ]
    data["spaces"] = [{"name": "lab", "processors": 20, "boot_failure_probability": 0.1,
                       "boot_seconds": {"distribution": "uniform", "min": 30, "max": 90}}]
    data["incidents"] = [{"kind": "api_errors", "start": "2h", "end": "2h10m", "probability": 0.5}]
    return write(tmp_path, data, "two.json")


def test_the_help_lists_exactly_the_registered_policies():
    assert cli.SIMULATOR_POLICIES == tuple(policies.REGISTRY)


def test_list_names_every_shipped_scenario(vacagent_bin):
    out = simulate(vacagent_bin, "--list")
    assert out.returncode == 0
    assert {line.split()[0] for line in out.stdout.splitlines()} >= {"steady", "bursty", "shares", "large_lab"}


def test_table_and_json(vacagent_bin, tmp_path):
    path = two_projects(tmp_path)
    out = simulate(vacagent_bin, path, "--policy", "vacagent,static", "-q")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("scenario two: 2 project(s)")
    assert [line.split()[0] for line in lines[3:5]] == ["vacagent", "static"]
    out = simulate(vacagent_bin, path, "--json", "-q")
    figures = json.loads(out.stdout)
    assert list(figures["policies"]) == ["vacagent", "vcycle", "static", "oracle"]
    assert figures["policies"]["oracle"]["total"]["served"] == 1.0
    assert set(figures["policies"]["vacagent"]["projects"]) == {"alpha", "beta"}


def test_same_seed_same_figures_whatever_the_process(vacagent_bin, tmp_path):
    path = two_projects(tmp_path)

    def figures(seed, hashseed, jobs):
        out = simulate(vacagent_bin, path, "--json", "-q", "--seed", seed, "--jobs", jobs,
                       env={"PYTHONHASHSEED": hashseed})
        assert out.returncode == 0, out.stderr
        return {name: {k: v for k, v in p.items() if k != "cpu_seconds"}
                for name, p in json.loads(out.stdout)["policies"].items()}

    first = figures(3, "1", "1")
    assert figures(3, "2", "2") == first
    assert figures(4, "1", "2") != first


def test_plot_writes_a_png(vacagent_bin, tmp_path):
    out = simulate(vacagent_bin, two_projects(tmp_path), "--policy", "vacagent", "--plot", tmp_path / "t.png", "-q")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_keep_state_leaves_the_daemons_records(vacagent_bin, tmp_path):
    out = simulate(vacagent_bin, write(tmp_path, tiny()), "--policy", "vacagent", "--keep-state", tmp_path / "k", "-q")
    assert out.returncode == 0, out.stderr
    decisions = (tmp_path / "k/vacagent/state/decisions/lab.jsonl").read_text().splitlines()
    assert len(decisions) == 25 and json.loads(decisions[0])["created"] == {"alpha": ["alpha-000001"]}


@pytest.mark.parametrize("args, message", [
    (["nope.json"], "nope.json: no such file, nor a shipped scenario"),
    (["steady", "--policy", "magic"], "no policy 'magic' (known: vacagent, vcycle, static, oracle)"),
    ([], "give a SCENARIO"),
])
def test_errors(vacagent_bin, args, message):
    out = simulate(vacagent_bin, *args)
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""


def test_a_bad_scenario_names_file_key_and_reason(vacagent_bin, tmp_path):
    path = write(tmp_path, tiny(cycle_seconds=0))
    out = simulate(vacagent_bin, path)
    assert out.returncode == 2
    assert f"{path}: cycle_seconds: 0 is less than or equal to the minimum of 0" in out.stderr
