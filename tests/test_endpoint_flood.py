"""Hostile network peers and hostile machines against a running endpoint
(issue 14): floods of idle connections, slow clients, lying Content-Lengths
and malformed requests, against an endpoint in its own process under a
lowered file limit (tests/flood_server.py), while a legitimate machine's PUT
must still be answered within 100 ms, the cycles must never lack a file
descriptor, and no token may appear in any log or response."""

from __future__ import annotations

import json
import os
import re
import resource
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vacagent.clock import SystemClock
from vacagent.config import EndpointSettings
from vacagent.endpoint.server import EndpointServer
from vacagent.metrics import Metrics

from endpoint_support import actuator, create, fingerprint, machinetype, request

HERE = Path(__file__).parent
NOFILE = 512  # the server's file limit: its connection cap is NOFILE - FD_RESERVE = 256
FLOOD = 1100
TIMEOUTS = ("idle_timeout_seconds=2.0", "body_timeout_seconds=2.0", "max_connections_per_address=32")


def _raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"this test opens {needed} sockets; the file limit here is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class Server:
    def __init__(self, state: Path, *settings: str):
        self.proc = subprocess.Popen([sys.executable, str(HERE / "flood_server.py"), str(state), str(NOFILE),
                                      *settings], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=HERE)
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        info = json.loads(line)
        self.port, self.max_connections = info["port"], info["max_connections"]
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def counts(self) -> dict:
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def flood_site(tmp_path_factory):
    _raise_own_file_limit(FLOOD + 512)
    tmp = tmp_path_factory.mktemp("flood")
    state = tmp / "state"
    lab = actuator(state, "lab", "http://127.0.0.1:1")
    mt = machinetype(tmp)
    machines = {key: create(lab, mt) for key in ("legit", "quiet", "slow")}
    server = Server(state, *TIMEOUTS)
    yield {"state": state, "server": server, "machines": machines, "store": lab.store}
    server.stop()


def connect_from(address: str, port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\0" * 8)
    s.bind((address, 0))
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def still_open(socks: list[socket.socket], timeout: float) -> int:
    """How many of `socks` the server has not closed within `timeout` (a 503 or 408 answer, then the end)."""
    waiting = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in waiting:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            try:
                data = waiting[fd].recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                continue
            if not data:
                poller.unregister(fd)
                del waiting[fd]
    return len(waiting)


def timed_put(port: int, name: str, token: str) -> float:
    started = time.perf_counter()
    status, _, _ = request(port, "PUT", f"/machines/lab/{name}/joboutputs/heartbeat", token, b"1")
    elapsed = time.perf_counter() - started
    assert status == 204
    return elapsed


def test_flood_and_slow_clients_leave_a_machine_answered_and_the_cycles_their_files(flood_site):
    server, (legit, legit_token) = flood_site["server"], flood_site["machines"]["legit"]
    slow, slow_token = flood_site["machines"]["slow"]
    quiet_dir = flood_site["store"].machine_dir(flood_site["machines"]["quiet"][0])
    quiet_before = fingerprint(quiet_dir)
    baseline = [timed_put(server.port, legit, legit_token) for _ in range(5)]
    at_rest = server.open_files()
    # 1,100 idle connections, no byte sent: 100 from one address, then 1,000 from ten
    idle = []
    for i in range(FLOOD):
        idle.append(connect_from("127.0.0.40" if i < 100 else f"127.0.0.{2 + i % 10}", server.port))
        if i % 50 == 49:
            time.sleep(0.01)
    # slowloris: a request line and half a header, then nothing
    slowloris = [connect_from("127.0.0.30", server.port) for _ in range(20)]
    # lying Content-Length: the headers of a PUT whose body never comes
    liars = [connect_from("127.0.0.31", server.port) for _ in range(10)]
    time.sleep(0.5)
    for s in slowloris:
        s.setblocking(True)
        s.sendall(b"PUT /machines/lab/x/joboutputs/heartbeat HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    for s in liars:
        s.setblocking(True)
        s.sendall(f"PUT /machines/lab/{slow}/joboutputs/heartbeat HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {slow_token}\r\nContent-Length: 10\r\n\r\n1".encode())
    latencies = [timed_put(server.port, legit, legit_token) for _ in range(20)]
    assert statistics.median(latencies) < 0.1, (baseline, latencies)
    assert max(latencies) < 0.5, latencies
    assert server.counts()["emfile"] == 0
    assert server.open_files() <= server.max_connections + 64
    assert still_open(slowloris + liars, 5) == 0
    # What the server holds, whatever became of connections the kernel dropped before accepting them.
    deadline = time.monotonic() + 20
    while server.open_files() > at_rest + 8 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.open_files() <= at_rest + 8
    assert still_open(idle, 0.5) < len(idle) / 2  # most were answered 503 or closed idle, as the client sees it
    for s in idle + slowloris + liars:
        s.close()
    assert server.counts()["emfile"] == 0
    _, _, body = request(server.port, "GET", "/metrics")
    refused = dict(re.findall(r'vacagent_endpoint_refused_total\{reason="(\w+)"\} (\d+)', body.decode()))
    assert refused, body.decode()
    assert int(refused["connections_per_address"]) >= 100 - 32
    assert int(refused["idle_evicted"]) > 0
    assert int(refused["body_timeout"]) == len(liars)
    assert fingerprint(quiet_dir) == quiet_before
    assert len(b"".join(line.encode() for line in server.stderr)) < 1_000_000  # no log flood


MALFORMED = [
    b"PUT /machines/lab/%s/joboutputs/heartbeat HTTP/1.1\r\nAuthorization: Bearer %s\x01\r\n\r\n",
    b"P\x00T /machines/lab/%s/joboutputs/heartbeat HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n",
    b"PUT /machines/lab/%s/joboutputs/heartbeat HTTP/1.1\r\nAuthorization: Bearer %s\r\n"
    b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    b"PUT /machines/lab/%s/joboutputs/heartbeat?%s HTTP/1.1 HTTP/1.1\r\n\r\n",
    b"PUT /machines/lab/%s/joboutputs/heartbeat HTTP/1.1\r\nAuthorization: Bearer %s\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.mark.parametrize("template", MALFORMED)
def test_malformed_request_never_shows_its_token(flood_site, template):
    server, (name, token) = flood_site["server"], flood_site["machines"]["quiet"]
    secret = token.rsplit(".", 1)[1]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(template % (name.encode(), token.encode()))
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"aiohttp" not in head and b"python" not in head
    assert secret.encode() not in answer
    time.sleep(0.2)
    assert secret not in "".join(server.stderr)


# ---- what one machine may do to the others (in-process server) -----------------------------

SETTINGS = EndpointSettings(port=0, max_joboutputs_files=8)


@pytest.fixture
def site(tmp_path):
    state = tmp_path / "state"
    metrics = Metrics()
    server = EndpointServer(SETTINGS, state, SystemClock(), metrics)
    server.start()
    lab = actuator(state, "lab", server.public_url)
    mt = machinetype(tmp_path)
    machines = [create(lab, mt) for _ in range(2)]
    yield {"port": server.port, "machines": machines, "store": lab.store, "metrics": metrics}
    server.stop()


def test_joboutputs_file_count_is_capped(site):
    (name, token), _ = site["machines"]
    statuses = [request(site["port"], "PUT", f"/machines/lab/{name}/joboutputs/f{i}", token, b"x")[0]
                for i in range(12)]
    assert statuses == [204] * 8 + [413] * 4
    assert request(site["port"], "PUT", f"/machines/lab/{name}/joboutputs/f0", token, b"y")[0] == 204  # replace
    assert len(os.listdir(site["store"].machine_dir(name) / "joboutputs")) == 8
    _, _, body = request(site["port"], "GET", "/metrics")
    assert b'vacagent_endpoint_refused_total{reason="joboutputs_files"} 4.0' in body


def test_a_hard_link_to_another_machines_heartbeat_is_never_touched(site):
    (mine, token), (other, other_token) = site["machines"]
    assert request(site["port"], "PUT", f"/machines/lab/{other}/joboutputs/heartbeat", other_token, b"1")[0] == 204
    theirs = site["store"].machine_dir(other) / "joboutputs" / "heartbeat"
    os.utime(theirs, (1_000_000, 1_000_000))  # long stale: the cycle would end that machine
    own = site["store"].machine_dir(mine) / "joboutputs" / "heartbeat"
    os.link(theirs, own)  # a local-backend machine can do this: it runs as the daemon's user
    assert request(site["port"], "PUT", f"/machines/lab/{mine}/joboutputs/heartbeat", token, b"1")[0] == 204
    assert theirs.stat().st_mtime == 1_000_000
    assert own.stat().st_nlink == 1 and own.stat().st_mtime > 1_000_000


def test_one_machine_hammering_leaves_the_others_their_latency(site):
    (noisy, noisy_token), (calm, calm_token) = site["machines"]
    stop = threading.Event()

    def hammer():
        while not stop.is_set():
            request(site["port"], "PUT", f"/machines/lab/{noisy}/joboutputs/shutdown_message", noisy_token,
                    b"300 " + os.urandom(8).hex().encode())

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        latencies = [timed_put(site["port"], calm, calm_token) for _ in range(30)]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statistics.median(latencies) < 0.05, latencies
