"""Modes of every file the daemon creates (issue 14): under umask 022, state
files are 0640 or stricter, directories 0750 or stricter, and what holds a
token (user_data, the machine's console) is owner-only; the token itself is
nowhere else in the state directory.  The real daemon, the local backend,
the endpoint and a machine that reports through it."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_helpers import wait_for

pytestmark = pytest.mark.slow

REPORTER = """#!/bin/sh
{python} - <<'EOF'
import urllib.request
for name, body in (("heartbeat", b"1"), ("job.log", b"done"), ("shutdown_message", b"200 done")):
    request = urllib.request.Request("##user_data_joboutputs_url##/" + name, data=body, method="PUT",
                                     headers={{"Authorization": "Bearer ##user_data_token##"}})
    urllib.request.urlopen(request, timeout=10)
EOF
"""

CONFIG = """
site: modes.test
state_dir: state
cycle_seconds: 0.3
endpoint: {listen: 127.0.0.1, port: 0}
spaces:
  lab:
    backend: local
    processors_limit: 1
    max_machines: 1
    machinetypes:
      lab-a: {user_data: reporter.sh, fizzle_seconds: 0}
"""


def test_files_the_daemon_creates_have_their_modes_from_the_start(tmp_path, vacagent_bin):
    (tmp_path / "reporter.sh").write_text(REPORTER.format(python=sys.executable))
    (tmp_path / "vacagent.yaml").write_text(CONFIG)
    state = tmp_path / "state"
    daemon = subprocess.Popen([vacagent_bin, "run", "--config", str(tmp_path / "vacagent.yaml")],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"),
                              preexec_fn=lambda: os.umask(0o022))
    try:
        wait_for(lambda: list((state / "accounting").glob("*.jsonl")), 60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    (user_data,) = state.glob("local/lab/*/user_data")
    token = user_data.read_text().split("Bearer ", 1)[1].split('"', 1)[0]
    secret = token.rsplit(".", 1)[1]
    checked = 0
    for path in [state, *state.rglob("*")]:
        if "work" in path.relative_to(state).parts:
            continue  # the machine's own files, made by its script
        mode = stat.S_IMODE(path.lstat().st_mode)
        where = f"{path.relative_to(state)}: {mode:o}"
        if path.name in ("user_data", "console.log"):
            assert mode & 0o077 == 0, where
        else:
            assert mode & 0o027 == 0, where
        if path.is_file() and path != user_data:
            assert secret not in path.read_text(errors="replace"), f"{where} holds the token"
        checked += 1
    assert checked > 20
    assert (state / "accounting").is_dir() and list(state.glob("spaces/lab/finished/*/*/joboutputs/job.log"))
