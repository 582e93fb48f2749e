"""The daemon runs the endpoint: it refuses to start when the port is taken
(naming the key), and SIGHUP never moves, starts or stops it (machines were
told where it is): that needs a restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
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


def test_reload_keeps_the_endpoint_where_machines_were_told_it_is(tmp_path, vacagent_bin):
    """A reload may change the endpoint's caps (it restarts on the port it has), never
    its address, its TLS or whether it runs: machines were told where to report."""
    path = write(tmp_path, "endpoint: {listen: 127.0.0.1, port: 0}")
    record = tmp_path / "state" / "endpoint.json"
    daemon = subprocess.Popen([vacagent_bin, "run", "--config", str(path)], stderr=subprocess.PIPE)
    try:
        # Two cycles done: the signal handlers are in place (they are installed after the first starts).
        decisions = tmp_path / "state" / "decisions" / "lab.jsonl"
        wait_for(lambda: decisions.exists() and len(decisions.read_text().splitlines()) >= 2)
        url = json.loads(record.read_text())["url"]
        assert wait_for(lambda: healthy(url))

        def reload(endpoint):
            before = record.stat().st_mtime_ns
            write(tmp_path, endpoint)
            daemon.send_signal(signal.SIGHUP)
            return before

        before = reload("endpoint: {listen: 127.0.0.1, port: 0, max_message_bytes: 100}")
        wait_for(lambda: record.stat().st_mtime_ns != before)  # restarted, on the same port
        assert json.loads(record.read_text())["url"] == url and wait_for(lambda: healthy(url))

        (tmp_path / "bad.pem").write_text("not a certificate")
        for refused in ("endpoint: {listen: 127.0.0.1, port: 0, tls_cert: bad.pem, tls_key: bad.pem}", ""):
            reload(refused)
            time.sleep(2)
            assert healthy(url)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        err = daemon.stderr.read()
        assert b"endpoint.tls_cert, endpoint.tls_key: cannot change while running: a restart is needed" in err
        assert b"endpoint: cannot change while running" in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
