"""Several real `vacagent run` processes on one state directory, and the checks
that they never act on a space together.

One site, several spaces on the local backend (machines are processes on
this host, shared by every instance through the state directory); one
config file per instance, differing only in `instance_name` (and its
endpoint port).  The evidence the checks read is the instances' own logs
(at debug level every create, delete and close logs `acting under lease`
with its epoch and time), the epoch files, and the processes on the host
(found by their environment, independent of vacagent's records).

Used by tests/test_instances_e2e.py and benchmarks/failover.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from daemon_helpers import CHURN, open_records, stop_daemon, wait_for

from vacagent.state.lease import SpaceLease

SPACES = ("east", "west", "north", "south")


def write_sites(root: Path, site: str, names: list[str], cycle: float, lease: float, processors_limit: int = 3,
                max_machines: int = 2, seconds: str = "3", state_dir: str = "state",
                spaces: tuple[str, ...] = SPACES) -> dict[str, Path]:
    """One config file per instance name, in `root`; returns name -> config path."""
    (root / "churn.sh").write_text(CHURN)
    space_yaml = "".join(f"""
  {space}:
    backend: local
    options: {{terminate_grace_seconds: 1}}
    processors_limit: {processors_limit}
    max_machines: {max_machines}
    creation_budget_processors: 2
    intent_grace_seconds: 5
    shutdown_grace_seconds: 1
    delete_retry_seconds: 2
    machinetypes:
      churn:
        user_data: {root / 'churn.sh'}
        fizzle_seconds: 0
        backoff_seconds: 1
        user_data_option_seconds: "{seconds}"
""" for space in spaces)
    configs = {}
    for name in names:
        path = root / f"{name}.yaml"
        path.write_text(f"""
site: {site}
state_dir: {state_dir}
instance_name: {name}
cycle_seconds: {cycle}
lease_seconds: {lease}
log_level: debug
spaces:{space_yaml}""")
        configs[name] = path
    return configs


@dataclass
class Fleet:
    """The instances of one site: start, kill, stop, and their logs."""

    vacagent: str
    configs: dict[str, Path]
    logs_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def start(self, name: str, env: dict | None = None) -> None:
        self.procs[name] = subprocess.Popen(
            [self.vacagent, "run", "--config", str(self.configs[name])],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path(name), "ab"),
            env={**os.environ, **(env or {})},
        )

    def kill(self, name: str) -> float:
        """SIGKILL; returns when."""
        proc = self.procs.pop(name)
        at = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return at

    def pause(self, name: str, seconds: float) -> None:
        """SIGSTOP for `seconds`, then SIGCONT: a hung host or filesystem that comes back."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        proc.send_signal(signal.SIGCONT)

    def terminate(self, name: str) -> float:
        """SIGTERM, as systemd stops a unit; returns when it was sent (waits for the exit)."""
        proc = self.procs.pop(name)
        at = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        return at

    def running(self) -> list[str]:
        return sorted(n for n, p in self.procs.items() if p.poll() is None)

    def stop_all(self) -> None:
        for name in list(self.procs):
            stop_daemon(self.procs.pop(name))


def holders(state_dir: Path, lease_seconds: float, spaces=SPACES) -> dict[str, tuple[str, int] | None]:
    """Space -> (holder, epoch) of the lease in force now, None if free."""
    now = time.time()
    out = {}
    for space in spaces:
        lease = SpaceLease(state_dir, space).read(lease_seconds)
        held = lease is not None and not lease.released and now < lease.expires_at
        out[space] = (lease.holder, lease.epoch) if held else None
    return out


def wait_held_by(state_dir: Path, lease_seconds: float, alive: list[str], timeout: float, spaces=SPACES) -> float:
    """Wait until every space is held by one of `alive`; returns the seconds waited."""
    started = time.time()

    def ok():
        return all(h is not None and h[0] in alive for h in holders(state_dir, lease_seconds, spaces).values())

    wait_for(ok, timeout=timeout, interval=0.02)
    return time.time() - started


# -- the evidence -------------------------------------------------------------

FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def log_events(path: Path, message: str) -> list[dict[str, str]]:
    """Fields of every line of `path` with this log message."""
    events = []
    if not path.exists():
        return events
    marker = f" {message} "
    for line in path.read_text(errors="replace").splitlines():
        if marker in line:
            events.append({k: v.strip('"') for k, v in FIELD.findall(line.split(marker, 1)[1])})
    return events


def claims(state_dir: Path, space: str) -> dict[int, dict]:
    """Epoch -> its claim file."""
    out = {}
    directory = state_dir / "spaces" / space / "epochs"
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        text = path.read_text()
        if text.strip():
            out[int(path.stem)] = json.loads(text)
    return out


def check_fencing(state_dir: Path, fleet: Fleet, spaces=SPACES) -> int:
    """Every action under epoch N was done by N's holder before epoch N+1 was claimed; epochs
    follow each other without gaps, in time order, each claimed from the one before.  Returns
    the number of actions checked."""
    actions = []
    for name in fleet.configs:
        for event in log_events(fleet.log_path(name), "acting under lease"):
            actions.append((name, event))
    checked = 0
    for space in spaces:
        epochs = claims(state_dir, space)
        numbers = sorted(epochs)
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), f"{space}: epochs with gaps: {numbers}"
        for n in numbers[1:]:
            if n - 1 in epochs:
                assert epochs[n]["claimed_at"] >= epochs[n - 1]["claimed_at"], f"{space}: epoch {n} claimed before {n - 1}"
                assert epochs[n]["previous_epoch"] == n - 1, f"{space}: epoch {n} claimed from {epochs[n]['previous_epoch']}"
        for name, event in actions:
            if event["space"] != space:
                continue
            epoch = int(event["epoch"])
            if epoch in epochs:
                assert epochs[epoch]["holder"] == name, f"{space}: {name} acted under epoch {epoch} of {epochs[epoch]['holder']}"
            following = epochs.get(epoch + 1)
            if following is not None:
                assert float(event["at"]) < following["claimed_at"], (
                    f"{space}: {name} {event['action']} {event['machine']} at {event['at']} under epoch {epoch}, "
                    f"after epoch {epoch + 1} was claimed at {following['claimed_at']}"
                )
            checked += 1
    return checked


def machines_by_space(site: str) -> dict[str, set[str]]:
    """Space -> names of the machines whose script runs now, from /proc (not from vacagent)."""
    found: dict[str, set[str]] = defaultdict(set)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z" or f"VACAGENT_SITE={site}".encode() not in env:
            continue
        if not (len(argv) > 1 and argv[1].endswith(b"/user_data")):
            continue
        values = dict(e.split(b"=", 1) for e in env if b"=" in e)
        found[values[b"VACAGENT_SPACE"].decode()].add(values[b"VACAGENT_MACHINE"].decode())
    return found


class LimitWatch(threading.Thread):
    """Samples the machines on the host all along; `worst` is the most seen at once per space."""

    def __init__(self, site: str):
        super().__init__(daemon=True)
        self.site = site
        self.worst: dict[str, int] = defaultdict(int)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for space, names in machines_by_space(self.site).items():
                self.worst[space] = max(self.worst[space], len(names))
            time.sleep(0.05)

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        return dict(self.worst)


def check_no_leak(state_dir: Path, site: str, timeout: float = 30.0, spaces=SPACES, settled: float = 12.0) -> None:
    """Every machine on the host has an open record (reconcile adopts any that had none), and every
    open record older than `settled` seconds has a machine in the backend (reconcile closes the others)."""

    def problems():
        running = machines_by_space(site)
        now = time.time()
        found = {}
        for space in spaces:
            records = open_records(state_dir, space)
            unrecorded = running.get(space, set()) - records
            backend = state_dir / "local" / space
            orphans = set()
            for name in records:
                try:
                    created = json.loads((state_dir / "spaces" / space / "machines" / name / "machine.json").read_text())["created"]
                except (OSError, ValueError):
                    continue
                if now - created > settled and not (backend / name).exists():
                    orphans.add(name)
            if unrecorded or orphans:
                found[space] = {"without record": sorted(unrecorded), "record without machine": sorted(orphans)}
        return found

    try:
        wait_for(lambda: not problems(), timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"leaks: {problems()}") from None
