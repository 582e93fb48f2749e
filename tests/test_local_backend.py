"""The local backend with real processes: identity, restarts, signals, environment."""

import os
import time

import pytest

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.local import ABANDONED_SECONDS, LocalBackend, _proc_stat
from vacagent.clock import FakeClock, SystemClock
from vacagent.model import MachineState, MachineType
from vacagent.state.atomic import read_json, write_json

from backends import kill_local_machines
from daemon_helpers import wait_for

MT = MachineType(name="mt")


@pytest.fixture
def backend(tmp_path):
    b = LocalBackend(BackendContext("site", "s", tmp_path, {"terminate_grace_seconds": 1}, SystemClock()))
    yield b
    kill_local_machines(tmp_path)


def state(backend, name):
    m = {m.name: m for m in backend.list_machines()}.get(name)
    return m.state if m else None


def alive(pid):
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def test_script_runs_in_its_workdir_with_a_minimal_environment(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    out = tmp_path / "env.txt"
    script = f"#!/bin/sh\npwd > {out}.tmp; env >> {out}.tmp; mv {out}.tmp {out}\n"
    backend.create_machine(CreateRequest("mt-1", MT, script, {"JOBOUTPUTS": "/x/joboutputs"}))
    wait_for(out.exists)
    text = out.read_text()
    assert text.splitlines()[0] == str(backend.root / "mt-1" / "work")
    assert "JOBOUTPUTS=/x/joboutputs" in text and "VACAGENT_MACHINE=mt-1" in text
    assert "VACAGENT_MACHINETYPE=mt" in text
    assert "do-not-leak" not in text


def test_script_without_shebang_runs_with_sh(backend, tmp_path):
    out = tmp_path / "ran"
    backend.create_machine(CreateRequest("mt-1", MT, f"echo yes > {out}\n"))
    wait_for(out.exists)
    wait_for(lambda: state(backend, "mt-1") is MachineState.STOPPED)
    assert (backend.root / "mt-1" / "exit_status").read_text().strip() == "0"


def test_console_output_goes_to_log_path(backend, tmp_path):
    log = tmp_path / "m" / "console.log"
    backend.create_machine(CreateRequest("mt-1", MT, "#!/bin/sh\necho hello from the machine\n", log_path=log))
    wait_for(lambda: state(backend, "mt-1") is MachineState.STOPPED)
    assert "hello from the machine" in log.read_text()


def test_machine_survives_a_new_backend_instance(backend, tmp_path):
    backend.create_machine(CreateRequest("mt-1", MT, "#!/bin/sh\nsleep 600\n"))
    restarted = LocalBackend(BackendContext("site", "s", tmp_path, {}, SystemClock()))
    (m,) = restarted.list_machines()
    assert m.name == "mt-1" and m.state is MachineState.RUNNING
    assert abs(m.started_at - time.time()) < 5


def test_recycled_pid_is_never_mistaken_nor_signalled(backend, tmp_path):
    backend.create_machine(CreateRequest("mt-1", MT, "#!/bin/sh\nsleep 600\n"))
    info_path = backend.root / "mt-1" / "process.json"
    info = read_json(info_path)
    # Pretend the recorded process was another one with the same pid.
    write_json(info_path, {**info, "start_ticks": info["start_ticks"] - 1})
    assert state(backend, "mt-1") is MachineState.STOPPED
    backend.delete_machine(backend.list_machines()[0])
    assert alive(info["pid"])  # the "stranger" was not killed
    assert not (backend.root / "mt-1").exists()
    os.killpg(info["pid"], 9)


def test_other_boot_is_not_alive(backend):
    backend.create_machine(CreateRequest("mt-1", MT, "#!/bin/sh\nsleep 600\n"))
    info_path = backend.root / "mt-1" / "process.json"
    write_json(info_path, {**read_json(info_path), "boot_id": "another-boot"})
    assert state(backend, "mt-1") is MachineState.STOPPED


def test_delete_signals_the_whole_group_then_kills(tmp_path):
    clock = FakeClock(time.time())
    backend = LocalBackend(BackendContext("site", "s", tmp_path, {"terminate_grace_seconds": 10}, clock))
    try:
        child_pid = tmp_path / "child.pid"
        script = (f"#!/bin/sh\ntrap 'echo ignoring TERM' TERM\nsleep 600 &\necho $! > {child_pid}\n"
                  "while :; do sleep 0.1; done\n")
        m = backend.create_machine(CreateRequest("mt-1", MT, script))
        wait_for(child_pid.exists)
        leader = read_json(backend.root / "mt-1" / "process.json")["pid"]
        child = int(child_pid.read_text())
        backend.delete_machine(m)
        wait_for(lambda: not alive(child))  # the whole group got SIGTERM
        assert state(backend, "mt-1") is MachineState.DELETING  # the script ignores it
        backend.delete_machine(m)  # within the grace period: nothing more
        time.sleep(0.3)
        assert alive(leader) and state(backend, "mt-1") is MachineState.DELETING
        clock.advance(10)  # grace over: the next listing sends SIGKILL to the group
        wait_for(lambda: state(backend, "mt-1") is None)
        assert not alive(leader)
        assert not (backend.root / "mt-1").exists()
    finally:
        kill_local_machines(tmp_path)


def test_leftover_processes_of_a_finished_script_are_killed(backend, tmp_path):
    child_pid = tmp_path / "child.pid"
    m = backend.create_machine(CreateRequest("mt-1", MT, f"#!/bin/sh\nsleep 600 &\necho $! > {child_pid}\n"))
    wait_for(lambda: state(backend, "mt-1") is MachineState.STOPPED)
    child = int(child_pid.read_text())
    assert alive(child)  # the script is done, its background process is not
    backend.delete_machine(m)
    wait_for(lambda: state(backend, "mt-1") is None)
    assert not alive(child)


def test_abandoned_directory_is_cleaned(backend):
    directory = backend.root / "mt-9"
    (directory / "work").mkdir(parents=True)
    backend.list_machines()
    assert directory.exists()  # might be a create in progress
    old = time.time() - ABANDONED_SECONDS - 5
    os.utime(directory, (old, old))
    backend.list_machines()
    assert not directory.exists()


def test_wrapper_never_runs_an_unrecorded_machine(tmp_path):
    """A daemon killed between spawn and process.json: the script must never run."""
    import subprocess

    from vacagent.backends.local import WRAPPER

    directory = tmp_path / "m"
    (directory / "work").mkdir(parents=True)
    marker = tmp_path / "ran"
    started = time.monotonic()
    rc = subprocess.run(["/bin/sh", "-c", WRAPPER, "x", "/bin/sh", "-c", f"touch {marker}"], cwd=directory).returncode
    assert rc == 111 and not marker.exists()
    assert 1.5 < time.monotonic() - started < 10


def test_a_machine_started_by_a_replaced_backend_is_still_reaped(tmp_path):
    """A reload builds a new backend: the old one's children (whose Popen objects
    are gone with it) exit as zombies of the daemon, and must still be seen to
    stop and be deleted, not listed as alive forever."""
    context = BackendContext("site", "s", tmp_path, {"terminate_grace_seconds": 1}, SystemClock())
    before = LocalBackend(context)
    before.create_machine(CreateRequest("mt-1", MT, "#!/bin/sh\nsleep 0.3\n"))
    del before  # as a reload drops it
    after = LocalBackend(context)
    try:
        wait_for(lambda: state(after, "mt-1") is MachineState.STOPPED, timeout=10)
        after.delete_machine(after.list_machines()[0])
        wait_for(lambda: state(after, "mt-1") is None, timeout=10)
    finally:
        kill_local_machines(tmp_path)
