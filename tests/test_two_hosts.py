"""Two "hosts" on one state directory that share no locks: two FUSE bindfs mounts of one
directory (no lock forwarding) behave like NFS mounted without lockd: flock and fcntl locks are
not seen across them, exclusive creation (O_EXCL) still is.  One instance on each mount; the
leases must keep them apart by exclusive creation alone."""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import subprocess
import time

import pytest

from conftest import service_unavailable
from daemon_helpers import kill_site, wait_for
from instances_helpers import Fleet, LimitWatch, check_fencing, check_no_leak, holders, wait_held_by, write_sites

pytestmark = pytest.mark.slow

CYCLE, LEASE = 0.5, 2.0


@pytest.fixture
def mounts(tmp_path):
    if shutil.which("bindfs") is None or not os.path.exists("/dev/fuse"):
        service_unavailable("bindfs or /dev/fuse missing (apt-get install bindfs fuse3): cannot emulate two hosts")
    base = tmp_path / "shared"
    base.mkdir()
    points = [tmp_path / "host1", tmp_path / "host2"]
    mounted = []
    for point in points:
        point.mkdir()
        done = subprocess.run(["bindfs", "--no-allow-other", str(base), str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            for m in mounted:
                subprocess.run(["fusermount3", "-u", str(m)], capture_output=True)
            service_unavailable(f"bindfs cannot mount here: {done.stderr.strip()}")
        mounted.append(point)
    yield base, points
    for point in points:
        for _ in range(50):
            if subprocess.run(["fusermount3", "-u", str(point)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)


def test_locks_are_not_shared_between_the_mounts(mounts):
    """The test bed really lacks shared locks (else the test below would prove little)."""
    _, (one, two) = mounts
    first = os.open(one / "l", os.O_RDWR | os.O_CREAT)
    second = os.open(two / "l", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(first, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(second, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if the lock were shared
    finally:
        os.close(first)
        os.close(second)
    os.close(os.open(one / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    with pytest.raises(FileExistsError):
        os.open(two / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_two_hosts_without_shared_locks_never_act_together(mounts, tmp_path, vacagent_bin):
    base, (one, two) = mounts
    site = f"hosts{random.randrange(10**6)}"
    configs = write_sites(tmp_path, site, ["a"], CYCLE, LEASE, state_dir=str(one / "state"))
    configs.update({k: v for k, v in write_sites(tmp_path, site, ["b"], CYCLE, LEASE,
                                                 state_dir=str(two / "state")).items()})
    fleet = Fleet(vacagent_bin, configs, tmp_path)
    state_dir = base / "state"  # the truth, read beside the mounts
    watch = LimitWatch(site)
    watch.start()
    try:
        fleet.start("a")
        fleet.start("b")  # at once: both claim, through different mounts, with no lock between them
        wait_held_by(state_dir, LEASE, ["a", "b"], timeout=30)
        wait_for(lambda: {h[0] for h in holders(state_dir, LEASE).values() if h} == {"a", "b"}, timeout=30)
        for victim in ["a", "b", "a"]:
            fleet.pause(victim, LEASE + 2 * CYCLE)  # hung: the other takes its spaces; woken, it must not act
            time.sleep(2 * CYCLE)
            killed = fleet.kill(victim)
            other = "b" if victim == "a" else "a"
            wait_held_by(state_dir, LEASE, [other], timeout=30)
            assert time.time() - killed <= LEASE + CYCLE + 1.5
            fleet.start(victim)
            wait_for(lambda: {h[0] for h in holders(state_dir, LEASE).values() if h} == {"a", "b"}, timeout=30)
            check_fencing(state_dir, fleet)
        check_no_leak(state_dir, site)
        assert all(n <= 2 for n in watch.stop().values())
        assert check_fencing(state_dir, fleet) > 10
    finally:
        fleet.stop_all()
        kill_site(site)
