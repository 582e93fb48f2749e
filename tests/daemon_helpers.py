"""Run the real `vacagent` command against a temporary site on the local backend."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from vacagent.state.atomic import read_json

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
    import json

    lines = []
    for path in sorted((state_dir / "accounting").glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return lines


def machine_json(state_dir: Path, name: str, space: str = "lab") -> dict:
    return read_json(state_dir / "spaces" / space / "machines" / name / "machine.json")
