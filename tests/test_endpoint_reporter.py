"""The machine-side reporters (reporter/vacagent-report, a stdlib Python
script, and reporter/vacagent-report.sh, POSIX shell with curl) against a
real endpoint, over HTTP and HTTPS, as a machine would run them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import trustme

from vacagent.clock import SystemClock
from vacagent.config import EndpointSettings
from vacagent.endpoint.server import EndpointServer
from vacagent.state.store import SHUTDOWN_MESSAGE, _count

from conftest import REPO
from endpoint_support import actuator, create, machinetype

PYTHON_REPORTER = REPO / "reporter" / "vacagent-report"
SHELL_REPORTER = REPO / "reporter" / "vacagent-report.sh"
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="the shell reporter needs curl")


@pytest.fixture(scope="module", params=["http", "https"])
def endpoint(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    env = {}
    settings = EndpointSettings(port=0)
    if request.param == "https":
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
        ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
        settings = EndpointSettings(port=0, tls_cert=str(tmp / "server.pem"), tls_key=str(tmp / "server.pem"))
        env["VACAGENT_CA_FILE"] = str(tmp / "ca.pem")
    server = EndpointServer(settings, tmp / "state", SystemClock())
    server.start()
    assert server.public_url.startswith(request.param + "://")
    yield {"tmp": tmp, "state": tmp / "state", "url": server.public_url, "env": env}
    server.stop()


def machine(endpoint, name="proj-a"):
    """A new machine; returns (its directory, the environment the local backend would give it)."""
    act = actuator(endpoint["state"], "lab", endpoint["url"])
    name, token = create(act, machinetype(endpoint["tmp"], name))
    directory = act.store.machine_dir(name)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "VACAGENT_TOKEN": token, **endpoint["env"]}
    for kind in ("machinefeatures", "jobfeatures", "joboutputs"):
        env[kind.upper()] = f"{endpoint['url']}/machines/lab/{name}/{kind}"
    return directory, env


def python_reporter(env, *args, stdin=None):
    return subprocess.run([sys.executable, str(PYTHON_REPORTER), *args], env=env, input=stdin,
                          capture_output=True, timeout=60)


def shell_reporter(env, script):
    return subprocess.run(["/bin/sh", "-c", f". {SHELL_REPORTER}; {script}"], env=env,
                          capture_output=True, timeout=60)


def test_python_reporter(endpoint):
    directory, env = machine(endpoint)
    joboutputs = directory / "joboutputs"
    assert python_reporter(env, "heartbeat").returncode == 0
    assert joboutputs.joinpath("heartbeat").read_text() == ""
    assert python_reporter(env, "heartbeat", "load 0.3").returncode == 0
    assert joboutputs.joinpath("heartbeat").read_text() == "load 0.3"
    result = python_reporter(env, "get", "jobfeatures", "wall_limit_secs")
    assert (result.returncode, result.stdout) == (0, b"86400\n")
    assert python_reporter(env, "put", "job.log", stdin=b"line 1\nline 2\n").returncode == 0
    assert joboutputs.joinpath("job.log").read_bytes() == b"line 1\nline 2\n"
    assert python_reporter(env, "shutdown", "300", "No", "more", "work", "available").returncode == 0
    assert joboutputs.joinpath(SHUTDOWN_MESSAGE).read_text() == "300 No more work available"


def test_python_reporter_failures(endpoint):
    _, env = machine(endpoint)
    result = python_reporter({**env, "VACAGENT_TOKEN": env["VACAGENT_TOKEN"][:-2] + "xx"}, "heartbeat")
    assert result.returncode == 1
    assert b"401" in result.stderr and b"invalid token" in result.stderr
    assert env["VACAGENT_TOKEN"].encode() not in result.stderr
    result = python_reporter(env, "shutdown", "abc", "text")
    assert result.returncode == 2
    no_token = {k: v for k, v in env.items() if k != "VACAGENT_TOKEN"}
    assert python_reporter(no_token, "heartbeat").returncode == 2
    unreachable = {**env, "JOBOUTPUTS": "http://127.0.0.1:9/machines/lab/x/joboutputs"}
    assert python_reporter(unreachable, "heartbeat").returncode == 3


def test_python_reporter_token_file(endpoint, tmp_path):
    directory, env = machine(endpoint)
    (tmp_path / "token").write_text(env.pop("VACAGENT_TOKEN") + "\n")
    assert python_reporter({**env, "VACAGENT_TOKEN_FILE": str(tmp_path / "token")}, "heartbeat", "x").returncode == 0
    assert (directory / "joboutputs" / "heartbeat").read_text() == "x"


@needs_curl
def test_shell_reporter(endpoint):
    directory, env = machine(endpoint)
    joboutputs = directory / "joboutputs"
    result = shell_reporter(env, "vacagent_heartbeat && vacagent_get jobfeatures wall_limit_secs "
                                 "&& vacagent_put job.log 'all done' "
                                 "&& vacagent_shutdown 300 No more work available")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"86400\n"
    assert joboutputs.joinpath("heartbeat").read_text() == ""
    assert joboutputs.joinpath("job.log").read_text() == "all done"
    assert joboutputs.joinpath(SHUTDOWN_MESSAGE).read_text() == "300 No more work available"


@needs_curl
def test_shell_reporter_refused(endpoint):
    _, env = machine(endpoint)
    result = shell_reporter({**env, "VACAGENT_TOKEN": "vac.lab.proj-a-00000000." + "A" * 43},
                            "vacagent_heartbeat")
    assert result.returncode != 0
    assert b"401" in result.stderr


def test_reporters_write_local_directories_without_an_endpoint(tmp_path):
    joboutputs = tmp_path / "joboutputs"
    joboutputs.mkdir()
    env = {"PATH": os.environ["PATH"], "JOBOUTPUTS": str(joboutputs), "VACAGENT_TOKEN": "unused"}
    assert python_reporter(env, "shutdown", "200", "ok").returncode == 0
    assert joboutputs.joinpath(SHUTDOWN_MESSAGE).read_text() == "200 ok"
    result = shell_reporter(env, "vacagent_heartbeat beat")
    assert result.returncode == 0, result.stderr
    assert joboutputs.joinpath("heartbeat").read_text() == "beat\n"
    assert sorted(p.name for p in joboutputs.iterdir()) == ["heartbeat", SHUTDOWN_MESSAGE]


def test_reporters_report_job_starts_and_demand(tmp_path):
    """The `jobs_started` and `demand` counts, as the state store reads them (store.outputs)."""
    joboutputs = tmp_path / "joboutputs"
    joboutputs.mkdir()
    env = {"PATH": os.environ["PATH"], "JOBOUTPUTS": str(joboutputs), "VACAGENT_TOKEN": "unused"}
    assert python_reporter(env, "jobs_started", "3").returncode == 0
    assert _count(str(joboutputs / "jobs_started"))[0] == 3
    assert python_reporter(env, "jobs_started", "many").returncode == 2
    result = shell_reporter(env, "vacagent_demand 12 && vacagent_jobs_started 4")
    assert result.returncode == 0, result.stderr
    assert (_count(str(joboutputs / "demand"))[0], _count(str(joboutputs / "jobs_started"))[0]) == (12, 4)
    result = shell_reporter(env, "vacagent_jobs_started -1")
    assert result.returncode == 2 and b"is a count" in result.stderr
@needs_curl
def test_reporters_report_job_seconds_for_the_ledger(endpoint):
    directory, env = machine(endpoint)
    job_seconds = directory / "joboutputs" / "job_seconds"
    assert python_reporter(env, "job_seconds", "1200").returncode == 0
    assert job_seconds.read_text() == "1200"
    assert python_reporter(env, "job_seconds", "-5").returncode == 2
    result = shell_reporter(env, "vacagent_job_seconds 3600")
    assert result.returncode == 0, result.stderr
    assert job_seconds.read_text() == "3600"
    assert shell_reporter(env, "vacagent_job_seconds 1.5").returncode == 2
    assert job_seconds.read_text() == "3600"
