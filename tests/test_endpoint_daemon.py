"""The daemon runs the endpoint: it refuses to start when the port is taken
(naming the key), and SIGHUP starts, moves or stops the endpoint to match
the new configuration, keeping the running one when the new cannot start."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request

import pytest

from daemon_helpers import wait_for

pytestmark = pytest.mark.slow

CONFIG = """
site: d.test
state_dir: state
cycle_seconds: 0.5
{endpoint}
spaces:
  lab:
    backend: fake
    processors_limit: 1
    machinetypes:
      lab-a: {{user_data: x.sh}}
"""


def write(tmp_path, endpoint: str):
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    (tmp_path / "vacagent.yaml").write_text(CONFIG.format(endpoint=endpoint))
    return tmp_path / "vacagent.yaml"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_port_in_use_stops_the_daemon_with_a_clear_error(tmp_path, vacagent_bin):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write(tmp_path, f"endpoint: {{listen: 127.0.0.1, port: {port}}}")
        result = subprocess.run([vacagent_bin, "run", "--config", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}: endpoint.port: cannot listen on 127.0.0.1:{port}".encode() in result.stderr


def test_reload_starts_moves_and_stops_the_endpoint(tmp_path, vacagent_bin):
    path = write(tmp_path, "")
    record = tmp_path / "state" / "endpoint.json"
    daemon = subprocess.Popen([vacagent_bin, "run", "--config", str(path)], stderr=subprocess.PIPE)
    try:
        # Two cycles done: the signal handlers are in place (they are installed after the first starts).
        decisions = tmp_path / "state" / "decisions" / "lab.jsonl"
        wait_for(lambda: decisions.exists() and len(decisions.read_text().splitlines()) >= 2)
        assert not record.exists()  # no section, no endpoint

        def reload(endpoint):
            before = record.stat().st_mtime_ns if record.exists() else None
            write(tmp_path, endpoint)
            daemon.send_signal(signal.SIGHUP)
            return before

        reload("endpoint: {listen: 127.0.0.1, port: 0}")
        first = wait_for(lambda: record.exists() and json.loads(record.read_text())["url"])
        assert wait_for(lambda: healthy(first))

        before = reload("endpoint: {listen: 127.0.0.1, port: 0, max_message_bytes: 100}")
        wait_for(lambda: record.stat().st_mtime_ns != before)
        second = json.loads(record.read_text())["url"]
        assert wait_for(lambda: healthy(second))
        assert not healthy(first)

        # A certificate that cannot be loaded: the running endpoint is kept.
        (tmp_path / "bad.pem").write_text("not a certificate")
        before = reload("endpoint: {listen: 127.0.0.1, port: 0, tls_cert: bad.pem, tls_key: bad.pem}")
        wait_for(lambda: record.stat().st_mtime_ns != before)
        third = json.loads(record.read_text())["url"]
        assert third.startswith("http://") and wait_for(lambda: healthy(third))

        reload("")
        wait_for(lambda: not healthy(third))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        err = daemon.stderr.read()
        assert b"endpoint cannot start" in err and b"endpoint.tls_cert: cannot load" in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
