"""The real daemon on the local backend: kill -9 at any point, SIGTERM, SIGHUP, sd_notify."""

import os
import random
import signal
import socket
import subprocess
import time

import pytest

from daemon_helpers import accounting, chaos, kill_site, processes_of_site, start, wait_for, write_site
from vacagent.crashpoints import POINTS

pytestmark = pytest.mark.slow


@pytest.fixture
def site(request):
    name = f"t{random.randrange(16**8):08x}.test"
    yield name
    kill_site(name)


def test_kill_9_at_any_point_and_at_every_crash_point(tmp_path, site, vacagent_bin):
    """SIGKILL the daemon 30 times at random moments of its cycles while machines churn
    (created, stopping, deleted, closed), then once at each named crash point,
    restarting it each time: while each runs, no machine runs without an open record
    and the space never holds more than its limit; after each kill, no machine is
    accounted twice or finished without its line; at the end nothing is stale or
    half-closed.  (benchmarks/chaos.py runs the same with 100 kills.)"""
    # Machines outlive intent_grace_seconds, so a process whose record was
    # wrongly closed (an orphan) is still there to be caught.
    config = write_site(tmp_path, site, processors_limit=4, budget=2, seconds="4", intent_grace=2)
    result = chaos(vacagent_bin, config, site, kills=30, seed=7, crash_points=sorted(POINTS))
    faults = {k: v for k, v in result.items() if isinstance(v, list) and v}
    assert not faults and result["overshoots"] == 0, result
    assert result["kills"] == 30 and result["crashes"] == len(POINTS), result
    assert 2 <= result["peak"] <= 4 and result["created"] >= 8, result  # it really churned
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_sigterm_finishes_the_cycle_and_leaves_machines_running(tmp_path, site, vacagent_bin):
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="600")
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    wait_for(lambda: len(processes_of_site(site)) == 2)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0
    assert "stopped" in log.read_text()
    before = processes_of_site(site)
    assert len(before) == 2
    # A new daemon finds them again: no new machine is needed, none is duplicated.
    daemon = start(vacagent_bin, config, log)
    try:
        time.sleep(2)
        assert set(processes_of_site(site)) == set(before)
    finally:
        daemon.send_signal(signal.SIGINT)
        assert daemon.wait(timeout=20) == 0


def test_sighup_reloads_and_refuses_a_broken_configuration(tmp_path, site, vacagent_bin):
    config = write_site(tmp_path, site, processors_limit=1, budget=1, seconds="600")
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    try:
        wait_for(lambda: len(processes_of_site(site)) == 1)
        good = config.read_text()
        config.write_text(good + "  nonsense: [\n")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log.read_text())
        config.write_text(good.replace("processors_limit: 1", "processors_limit: 3"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text())
        wait_for(lambda: len(processes_of_site(site)) == 3)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0


def test_machines_started_before_a_reload_are_still_reaped_and_released(tmp_path, site, vacagent_bin):
    """A reload builds new backends: machines the old ones started must still be
    seen to end, be deleted and closed, and free their place for new ones."""
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="3")
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    try:
        first = set(wait_for(lambda: len(processes_of_site(site)) == 2 and processes_of_site(site)))
        wait_for(lambda: "spaces started" in log.read_text())
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text())
        wait_for(lambda: first <= {line["machine"] for line in accounting(state)}, timeout=30)
        wait_for(lambda: len(set(processes_of_site(site)) - first) == 2, timeout=30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0


def test_reload_refuses_settings_that_need_a_restart(tmp_path, site, vacagent_bin):
    config = write_site(tmp_path, site, processors_limit=1, budget=1, seconds="600")
    log = tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    try:
        (name,) = wait_for(lambda: processes_of_site(site))
        good = config.read_text()
        config.write_text(good.replace("state_dir: state", "state_dir: elsewhere").replace(
            "processors_limit: 1", "processors_limit: 3"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log.read_text())
        assert "state_dir: cannot change while running: a restart is needed" in log.read_text()
        time.sleep(2)  # the old configuration (limit 1, old state_dir) stays in force
        assert set(processes_of_site(site)) == {name}
        assert not (tmp_path / "elsewhere").exists()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=20) == 0


def test_invalid_configuration_exits_2_with_the_reason(tmp_path, vacagent_bin):
    config = tmp_path / "vacagent.yaml"
    config.write_text("site: x\nspaces:\n  lab:\n    backend: local\n    max_machines: many\n")
    result = subprocess.run([vacagent_bin, "run", "--config", str(config)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert f"{config}: spaces.lab.max_machines: 'many' is not of type 'integer'" in result.stderr


def test_sd_notify_ready_watchdog_stopping(tmp_path, site, vacagent_bin):
    path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(20)
    config = write_site(tmp_path, site, processors_limit=1, seconds="600")
    daemon = start(vacagent_bin, config, tmp_path / "daemon.log",
                   env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
    try:
        received = []

        def got(prefix):
            while not any(m.startswith(prefix) for m in received):
                received.extend(listener.recv(4096).decode().split("\n"))
            return True

        assert got("READY=1")
        assert got("WATCHDOG=1")
        daemon.send_signal(signal.SIGTERM)
        assert got("STOPPING=1")
        assert daemon.wait(timeout=20) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()
        os.unlink(path)
