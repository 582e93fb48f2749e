"""End to end: local-backend machines (real processes) report through the
endpoint (real HTTP) with the shipped reporters, and the cycle acts on it:
a heartbeat that stops -> `700 Heartbeat not updated`; `300 No more work
available` -> the machinetype backs off.  Then the daemon itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from vacagent import config, cycle
from vacagent.clock import SystemClock
from vacagent.endpoint.server import EndpointServer
from vacagent.metrics import Metrics
from vacagent.report import Reporter
from vacagent.state.store import SpaceStore

from conftest import REPO
from daemon_helpers import accounting

pytestmark = pytest.mark.slow
CLOCK = SystemClock()

HEARTBEATS_THEN_SILENCE = """#!/bin/sh
##user_data_file_reporter##
i=0
while [ "$i" -lt 5 ]; do vacagent_heartbeat "beat $i" || exit 1; i=$((i + 1)); sleep 0.5; done
vacagent_put phase silent
exec sleep 600
"""

NO_MORE_WORK = """#!/bin/sh
'##user_data_option_python##' '##user_data_option_reporter##' heartbeat || exit 1
exec '##user_data_option_python##' '##user_data_option_reporter##' shutdown 300 No more work available
"""


def site_config(tmp: Path, template: str, port: int = 0, cycle_seconds: float = 1) -> Path:
    (tmp / "machine.sh").write_text(template)
    (tmp / "vacagent.yaml").write_text(f"""
site: e2e.test
state_dir: state
cycle_seconds: {cycle_seconds}
endpoint:
  listen: 127.0.0.1
  port: {port}
spaces:
  lab:
    backend: local
    options:
      terminate_grace_seconds: 1
    processors_limit: 1
    shutdown_grace_seconds: 0
    intent_grace_seconds: 30
    machinetypes:
      lab-m:
        user_data: machine.sh
        user_data_file_reporter: {REPO / "reporter" / "vacagent-report.sh"}
        user_data_option_reporter: {REPO / "reporter" / "vacagent-report"}
        user_data_option_python: {sys.executable}
        heartbeat_file: heartbeat
        heartbeat_seconds: 2
        fizzle_seconds: 1
        backoff_seconds: 60
        max_wallclock_seconds: 600
""")
    return tmp / "vacagent.yaml"


class Site:
    """The config, a running endpoint and the space's runtime, as the daemon builds them."""

    def __init__(self, path: Path):
        self.settings = config.load(path)
        self.metrics = Metrics()
        self.server = EndpointServer(self.settings.endpoint, self.settings.state_dir, CLOCK, self.metrics)
        self.server.start()
        self.space = cycle.build(self.settings, self.settings.spaces["lab"], Reporter(), CLOCK,
                                 endpoint_url=self.server.public_url)
        self.store: SpaceStore = self.space.store

    def cycle(self) -> dict:
        return cycle.run_once(self.space, CLOCK.now())

    def close(self) -> None:
        self.server.stop()
        kill_machines(self.settings.state_dir)


def kill_machines(state: Path) -> None:
    """End the process groups of the machines this test created (by their recorded pid)."""
    for info in state.glob("local/*/*/process.json"):
        try:
            os.killpg(json.loads(info.read_text())["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass


def until(condition, seconds: float, step: float = 0.2, each=None):
    deadline = CLOCK.now() + seconds
    while CLOCK.now() < deadline:
        if each is not None:
            each()
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not reached within {seconds}s")


def test_stale_heartbeat_through_the_endpoint_gets_the_machine_deleted(tmp_path):
    site = Site(site_config(tmp_path, HEARTBEATS_THEN_SILENCE))
    try:
        first = site.cycle()
        [name] = first["created"]["lab-m"]
        joboutputs = site.store.machine_dir(name) / "joboutputs"
        deleted = []

        def cycle_while_heartbeating():
            record = site.cycle()
            deleted.extend(record["deleted"])
            return record

        # While it heartbeats (2.5 s, more than heartbeat_seconds), it is left alone.
        until(lambda: (joboutputs / "phase").exists(), 20, each=cycle_while_heartbeating)
        assert deleted == []
        assert (joboutputs / "heartbeat").read_text() == "beat 4"
        last_beat = (joboutputs / "heartbeat").stat().st_mtime
        # Then silence: deleted once the heartbeat is older than heartbeat_seconds.
        until(lambda: deleted, 20, each=cycle_while_heartbeating)
        assert deleted == [{"machine": name, "reason": "700 Heartbeat not updated"}]
        assert CLOCK.now() - last_beat > 2
        assert (joboutputs / "shutdown_message").read_text().strip() == "700 Heartbeat not updated"
        until(lambda: accounting(site.settings.state_dir), 20, each=site.cycle)
        [line] = accounting(site.settings.state_dir)
        assert (line["machine"], line["shutdown_message"]) == (name, "700 Heartbeat not updated")
        assert line["aborted"] is False  # it ran past fizzle_seconds: a 700 then is no abort
    finally:
        site.close()


def test_no_more_work_through_the_endpoint_backs_the_machinetype_off(tmp_path):
    site = Site(site_config(tmp_path, NO_MORE_WORK))
    try:
        [name] = site.cycle()["created"]["lab-m"]
        until(lambda: accounting(site.settings.state_dir), 20, each=site.cycle)
        [line] = accounting(site.settings.state_dir)
        assert (line["machine"], line["shutdown_message"], line["code"], line["aborted"]) == (
            name, "300 No more work available", 300, True)
        feedback = site.store.feedback("lab-m")
        assert feedback.consecutive_aborts == 1
        assert feedback.backoff_until > CLOCK.now() + 30
        record = site.cycle()
        assert record["created"] == {}
        assert record["held"]["lab-m"].startswith("backoff until")
        # Both reports came over HTTP: the machine had URLs, not paths.
        text = site.metrics.exposition()[0].decode()
        assert 'vacagent_endpoint_requests_total{route="joboutputs",status="204"} 2.0' in text
    finally:
        site.close()


def test_daemon_serves_the_endpoint_and_keeps_tokens_secret(tmp_path, vacagent_bin):
    path = site_config(tmp_path, HEARTBEATS_THEN_SILENCE, cycle_seconds=0.5)
    state = tmp_path / "state"
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([vacagent_bin, "run", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        record = state / "endpoint.json"
        url = until(lambda: record.exists() and json.loads(record.read_text())["url"], 20)
        beat = until(lambda: next(state.glob("spaces/lab/machines/*/joboutputs/heartbeat"), None), 20)
        name = beat.parent.parent.name
        pid = json.loads((state / "local" / "lab" / name / "process.json").read_text())["pid"]
        environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
        token = environ[b"VACAGENT_TOKEN"]
        assert environ[b"JOBOUTPUTS"] == f"{url}/machines/lab/{name}/joboutputs".encode()
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'vacagent_machines_created_total{machinetype="lab-m",space="lab"} 1.0' in metrics
        assert 'route="joboutputs",status="204"' in metrics
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:
            assert response.status == 200
        # Wait until the daemon has deleted it for its silence, then stop the daemon.
        until(lambda: b"700 Heartbeat not updated" in (tmp_path / "daemon.log").read_bytes(), 30)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{url}/healthz", timeout=5)
        logged = (tmp_path / "daemon.log").read_bytes()
        assert b"endpoint listening" in logged and b"endpoint stopped" in logged
        assert token not in logged
        for file in state.rglob("*"):
            if file.is_file() and not file.is_symlink():
                assert token not in file.read_bytes(), file
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        log.close()
        kill_machines(state)
