"""The command line as an operator uses it."""

import json
import os
import subprocess
import sys

import pytest

from vacagent import cli

from conftest import FIXTURE_PIPE, REPO
from daemon_helpers import kill_site, write_site


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "vacagent", *args], capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def site_config(tmp_path):
    config = write_site(tmp_path, "cli.test", processors_limit=2, budget=2, seconds="600")
    yield config
    kill_site("cli.test")


def test_help_teaches(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "once", "status", "why", "validate"):
        assert command in out
    assert "examples:" in out and "--config" in run("status", "--help").stdout


def test_once_status_why(site_config):
    once = run("once", "--config", str(site_config))
    assert once.returncode == 0, once.stderr
    assert "space lab: 0 machines, created 2" in once.stdout
    assert "churn: held: space processors_limit reached (2/2)" in once.stdout

    status = run("status", "--config", str(site_config), "--json")
    report = json.loads(status.stdout)
    (space,) = report["spaces"]
    assert space["machines_total"] == 2 and space["processors"] == 2
    churn = space["machinetypes"]["churn"]
    assert churn["machines"] == 2 and churn["gate"] == "open"
    assert {m["machinetype"] for m in space["machines"]} == {"churn"}

    text = run("status", "--config", str(site_config)).stdout
    assert "space lab (local): 2 machines, 2/2 processors" in text
    assert "churn" in text and "pid:" in text

    why = run("why", "--config", str(site_config), "lab", "churn")
    assert "churn: created 2; then held: space processors_limit reached (2/2)" in why.stdout


def test_why_before_any_cycle(site_config):
    assert "no decision recorded yet" in run("why", "--config", str(site_config)).stdout


def test_validate_configuration(site_config):
    result = run("validate", "--config", str(site_config))
    assert result.returncode == 0
    assert "space lab: ok churn" in result.stdout and "configuration valid" in result.stdout


def test_validate_reports_bad_definitions_and_fails(tmp_path):
    config = tmp_path / "v.yaml"
    config.write_text("site: x\nspaces:\n  lab:\n    backend: nosuch\n    processors_limit: 2\n"
                      "    machinetypes:\n      good: {}\n      bad: {heartbeat_file: ../x}\n")
    result = run("validate", "--config", str(config))
    assert result.returncode == 1
    assert "backend: 'nosuch' is unknown" in result.stdout
    assert "machinetype bad: heartbeat_file" in result.stdout and "ok good" in result.stdout


@pytest.mark.parametrize("backend,options,expected", [
    ("openstack", "{cloud: lab, flavour_names: [m1]}", "options.flavour_names: not an option of the openstack"),
    ("kubernetes", "{kubeconfig: kube.yaml}", "options.namespace"),
])
def test_validate_checks_the_backend_options_without_a_request(tmp_path, backend, options, expected):
    (tmp_path / "kube.yaml").write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    (tmp_path / "clouds.yaml").write_text("clouds:\n  lab:\n    auth: {auth_url: 'http://127.0.0.1:9/v3'}\n")
    config = tmp_path / "v.yaml"
    config.write_text(f"site: x\nendpoint: {{port: 0}}\nspaces:\n  lab:\n    backend: {backend}\n"
                      f"    processors_limit: 2\n    options: {options}\n    machinetypes:\n      good: {{}}\n")
    result = run("validate", "--config", str(config), cwd=tmp_path, env={**os.environ, "OS_CLIENT_CONFIG_FILE":
                                                                           str(tmp_path / "clouds.yaml")})
    assert result.returncode == 1, result.stdout
    assert f"space lab: error: {config}:" in result.stdout and expected in result.stdout, result.stdout


def test_validate_a_pipe(tmp_path):
    result = run("validate", str(FIXTURE_PIPE), "--prefix", "vac")
    assert result.returncode == 0 and "ok vac-prod" in result.stdout
    bad = tmp_path / "bad.pipe"
    bad.write_text('{"machinetypes": [{"suffix": "x", "fizzle_seconds": "never"}]}')
    result = run("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}: machinetype pipe-x: fizzle_seconds" in result.stdout


def test_configuration_error_is_reported_not_raised(tmp_path):
    result = run("status", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "configuration error" in result.stderr and "Traceback" not in result.stderr


def test_demo_pipe_validates():
    result = run("validate", str(REPO / "vm_definitions" / "demo.pipe"), "--prefix", "demo")
    assert result.returncode == 0 and "ok demo-alpha" in result.stdout and "ok demo-beta" in result.stdout


def test_status_warns_about_a_damaged_state_directory_and_never_tracebacks(site_config):
    assert run("once", "--config", str(site_config)).returncode == 0
    state = site_config.parent / "state"
    first, second = sorted(p for p in (state / "spaces/lab/machines").iterdir())
    (first / "machine.json").write_text('{"name": "x", "spa')
    (second / "machine.json").write_text('["not", "a", "record"]')
    (state / "spaces/lab/machinetypes/churn/feedback.json").write_text("{")
    (state / "decisions/lab.jsonl").write_text('{"time": 1, "tor')
    status = run("status", "--config", str(site_config))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    assert status.stdout.count("warning: unreadable record") == 2
    once = run("once", "--config", str(site_config))  # sets them aside; the machines are adopted
    assert once.returncode == 0, once.stderr
    assert "record quarantined" in once.stderr
    status = run("status", "--config", str(site_config))
    assert status.stdout.count("warning: record set aside") == 2
    assert "space lab (local): 2 machines" in status.stdout
