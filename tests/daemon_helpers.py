"""Run the real `vacagent` command against a temporary site on the local backend."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from vacagent.state.atomic import read_json, read_lines

CHURN = """#!/bin/sh
# runs a couple of seconds, then stops by itself
sleep ##user_data_option_seconds##
"""


def write_site(tmp_path: Path, site: str, processors_limit: int = 4, budget: int = 1, seconds: str = "2",
               cycle: float = 0.3, intent_grace: int = 5) -> Path:
    (tmp_path / "churn.sh").write_text(CHURN)
    config = tmp_path / "vacagent.yaml"
    config.write_text(f"""
site: {site}
state_dir: state
cycle_seconds: {cycle}
spaces:
  lab:
    backend: local
    options: {{terminate_grace_seconds: 1}}
    processors_limit: {processors_limit}
    creation_budget_processors: {budget}
    intent_grace_seconds: {intent_grace}
    shutdown_grace_seconds: 1
    delete_retry_seconds: 2
    apel: {{gocdb_sitename: TEST-SITE}}
    machinetypes:
      churn:
        user_data: churn.sh
        fizzle_seconds: 0
        backoff_seconds: 1
        user_data_option_seconds: "{seconds}"
""")
    return config


def start(vacagent_bin: str, config: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [vacagent_bin, "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
        env={**os.environ, **(env or {})},
    )


def stop_daemon(daemon: subprocess.Popen) -> None:
    """SIGTERM, as systemd stops a unit; SIGKILL after 60 s if it has not exited (a test's clean-up)."""
    if daemon.poll() is not None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def processes_of_site(site: str, scripts_only: bool = False) -> dict[str, list[int]]:
    """Machine name -> pids, found by the environment of every process on the host.

    This is independent of vacagent's own records: it is how we catch orphans.
    With `scripts_only`, only machines whose script runs count: not a wrapper
    still waiting for its record (it gives up after 2 s without running anything).
    """
    found: dict[str, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat[stat.rindex(")") + 2] == "Z":
            continue
        if f"VACAGENT_SITE={site}".encode() not in env:
            continue
        if scripts_only and not (len(argv) > 1 and argv[1].endswith(b"/user_data")):
            continue
        name = next(e for e in env if e.startswith(b"VACAGENT_MACHINE=")).split(b"=", 1)[1].decode()
        found.setdefault(name, []).append(int(proc.name))
    return found


def open_records(state_dir: Path, space: str = "lab") -> set[str]:
    machines = state_dir / "spaces" / space / "machines"
    return {p.name for p in machines.iterdir() if not p.name.startswith(".")} if machines.is_dir() else set()


def kill_site(site: str) -> None:
    for pids in processes_of_site(site).values():
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(interval)


def accounting(state_dir: Path) -> list[dict]:
    lines = []
    for path in sorted((state_dir / "accounting").glob("*.jsonl")):
        lines += list(read_lines(path))
    return lines


def finished_names(state_dir: Path, space: str = "lab") -> list[str]:
    """Names of the finished machines (a name reused within a day gets a `.<time>` suffix)."""
    return [p.name.split(".")[0] for p in (state_dir / "spaces" / space / "finished").glob("*/*")]


def orphans(site: str, state_dir: Path) -> set[str]:
    """Machines whose script runs with no open record; checked twice, so a machine
    that ended (and was closed) between the two reads is not counted."""
    suspects = set(processes_of_site(site, scripts_only=True)) - open_records(state_dir)
    if not suspects:
        return set()
    return set(processes_of_site(site, scripts_only=True)) & suspects - open_records(state_dir)


def stale_records(site: str, state_dir: Path, intent_grace: float, space: str = "lab") -> list[str]:
    """Open records whose machine has been gone for more than a few cycles (read after a daemon ran)."""
    now = time.time()
    live = processes_of_site(site)
    stale = []
    for name in open_records(state_dir, space) - set(live):
        record = machine_json(state_dir, name, space)
        exited = state_dir / "local" / space / name / "exit_status"
        quiet_since = max(record["created"] + intent_grace, record.get("deleting_since") or 0,
                          exited.stat().st_mtime if exited.exists() else 0)
        if now - quiet_since > 3:
            stale.append(name)
    return stale


def faults(site: str, state_dir: Path, intent_grace: float, space: str = "lab") -> dict[str, list]:
    """What must never happen, read from the host and the state directory after a daemon stopped:
    orphans, machines closed twice, finished machines with no accounting line (or lines of
    unknown machines), open records of machines long gone (stale), closes left half-done."""
    lines = accounting(state_dir)
    names = [line["machine"] for line in lines]
    finished = finished_names(state_dir, space)
    return {
        "orphans": sorted(orphans(site, state_dir)),
        "duplicates": sorted({n for n in names if names.count(n) > 1}),
        "lost": sorted(set(finished) - set(names)),
        "unknown": sorted(set(names) - set(finished)),
        "stale": stale_records(site, state_dir, intent_grace, space),
        "half_closed": sorted(p.name for p in (state_dir / "spaces" / space / "closing").glob("*.json")),
        **apel_faults(state_dir, [line for line in lines if line["started"] is not None]),
    }


def apel_records(directory: Path) -> list[dict[str, str]]:
    """Every APEL record under an outgoing or archive directory (dirq layout), as field -> value."""
    records = []
    for path in sorted(directory.glob("[0-9]*/[0-9a-f]*")):
        text = path.read_text()
        assert text.startswith("APEL-individual-job-message: v0.3\n") and text.endswith("%%\n"), path
        records.append(dict(line.split(": ", 1) for line in text.splitlines()[1:-1]))
    return records


def apel_faults(state_dir: Path, ran: list[dict]) -> dict[str, list]:
    """APEL: a record of a machine twice in a directory, or a machine that ran with none."""
    out = {}
    for kind in ("outgoing", "archive"):
        ids = [r["LocalJobId"] for r in apel_records(state_dir / f"apel-{kind}")]
        out[f"apel_{kind}_duplicates"] = sorted({i for i in ids if ids.count(i) > 1})
        out[f"apel_{kind}_missing"] = sorted({line["machine"] for line in ran} - set(ids))
    return out


def machine_json(state_dir: Path, name: str, space: str = "lab") -> dict:
    return read_json(state_dir / "spaces" / space / "machines" / name / "machine.json")


def accounting_faults(state_dir: Path, space: str = "lab") -> dict[str, list[str]]:
    """Accounting against finished machines, at any moment: closes still journaled are not yet due."""
    names = [line["machine"] for line in accounting(state_dir)]
    pending = {p.stem for p in (state_dir / "spaces" / space / "closing").glob("*.json")}
    finished = set(finished_names(state_dir, space)) - pending
    return {
        "duplicates": sorted({n for n in names if names.count(n) > 1}),
        "lost": sorted(finished - set(names)),
        "unknown": sorted(set(names) - finished - pending),
    }


def chaos(vacagent_bin: str, config: Path, site: str, kills: int, seed: int, crash_points=(),
          limit: int = 4, intent_grace: float = 2, log: Path | None = None) -> dict:
    """kill -9 the real daemon `kills` times at random moments, then once at each crash point
    (VACAGENT_CRASH_AT), restarting it each time; watch the host while each daemon runs
    and the state directory after each kill; let a last daemon settle and stop it.

    Returns counts: kills, crashes (crash points reached), machines created, and the
    faults seen (orphans, overshoots, duplicates, lost and unknown accounting lines,
    stale records and half-done closes left at the end): all must be 0."""
    state = config.parent / "state"
    log = log or config.parent / "daemon.log"
    rng = random.Random(seed)
    seen: dict[str, set] = {k: set() for k in ("orphans", "duplicates", "lost", "unknown", "stale", "half_closed")}
    counts = {"kills": 0, "crashes": 0, "peak": 0, "overshoots": 0}
    for point in [None] * kills + list(crash_points):
        daemon = start(vacagent_bin, config, log, env={"VACAGENT_CRASH_AT": point} if point else None)
        deadline = time.monotonic() + (30 if point else rng.uniform(0.1, 1.2))
        while time.monotonic() < deadline and daemon.poll() is None:
            running = len(processes_of_site(site, scripts_only=True))
            counts["peak"] = max(counts["peak"], running)
            counts["overshoots"] += running > limit
            seen["orphans"] |= orphans(site, state)
            time.sleep(0.02)
        if daemon.poll() is None:
            daemon.kill()
            counts["kills"] += 1
        elif point:
            counts["crashes"] += 1
        daemon.wait()
        for kind, names in accounting_faults(state).items():
            seen[kind] |= set(names)
    daemon = start(vacagent_bin, config, log)  # the last one adopts, closes and settles everything
    try:
        settled = time.monotonic() + intent_grace + 4
        while time.monotonic() < settled:
            seen["orphans"] |= orphans(site, state)
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
    for kind, names in faults(site, state, intent_grace).items():
        seen.setdefault(kind, set()).update(names)
    created = {line["machine"] for line in accounting(state)} | open_records(state)
    return {**counts, "created": len(created), **{kind: sorted(names) for kind, names in seen.items()}}
