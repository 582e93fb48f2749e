"""The real daemon on a full state directory (a 2 MB tmpfs): it starts and runs without
a traceback, says so once per change, creates nothing, goes on deleting machines that
end, and recovers by itself once there is room, every close accounted exactly once."""

import os
import random
import signal
import subprocess
import time

import pytest

from conftest import service_unavailable
from daemon_helpers import accounting, faults, kill_site, processes_of_site, start, wait_for, write_site

pytestmark = pytest.mark.slow
ROOT = [] if os.geteuid() == 0 else ["sudo", "-n"]  # mounting needs root (CI: passwordless sudo)


@pytest.fixture
def disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run([*ROOT, "mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        service_unavailable(f"cannot mount a 2 MB tmpfs (needs root): {result.stderr.strip()}")
    yield mount
    subprocess.run([*ROOT, "umount", "-l", str(mount)], check=False)


def fill(mount):
    """Fill the file system to the last byte."""
    with open(mount / "filler", "ab", buffering=0) as f:
        for size in (65536, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


@pytest.fixture
def site():
    name = f"f{random.randrange(16**8):08x}.test"
    yield name
    kill_site(name)


def test_full_disk_at_start_and_while_running(tmp_path, disk, site, vacagent_bin):
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="2", intent_grace=2)
    config.write_text(config.read_text().replace("state_dir: state", f"state_dir: {disk}/state"))
    state, log = disk / "state", tmp_path / "daemon.log"
    fill(disk)
    daemon = start(vacagent_bin, config, log)
    try:
        # No room to register or claim a lease: the instance waits, acting on nothing.
        wait_for(lambda: "state directory full where=" in log.read_text())
        time.sleep(2)  # several ticks on a full disk
        assert daemon.poll() is None and processes_of_site(site) == {}
        (disk / "filler").unlink()  # room again: it recovers by itself
        wait_for(lambda: "state directory writable again" in log.read_text())
        first = set(wait_for(lambda: processes_of_site(site, scripts_only=True)))
        # Full while machines run: the lease is renewed in place, so the space's cycles go on:
        # the machines end and are deleted; nothing new starts.
        fill(disk)
        wait_for(lambda: "state directory full space=lab" in log.read_text(), timeout=30)
        wait_for(lambda: not processes_of_site(site), timeout=30)
        time.sleep(2)
        assert not processes_of_site(site)
        (disk / "filler").unlink()
        wait_for(lambda: first <= {line["machine"] for line in accounting(state)}, timeout=30)
        wait_for(lambda: set(processes_of_site(site, scripts_only=True)) - first, timeout=30)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    text = log.read_text()
    assert "Traceback" not in text and "cycle failed" not in text
    # Once per change, not once per tick: each "full" followed by one "writable again". The registry may
    # see one change more than the test made (a deleted record frees a block, the next write fills it).
    for where, changes in (("where=", 2), ("space=lab", 1)):
        full, writable = (text.count(f"state directory full {where}"),
                          text.count(f"state directory writable again {where}"))
        assert changes <= full <= changes + 1 and writable == full, (where, full, writable)
