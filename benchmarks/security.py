#!/usr/bin/env python3
"""Security figures (issue 14): what hostile peers get from a running endpoint.

    python benchmarks/security.py [--nofile 1024] [--flood 1100] [--puts 200]

Builds a state directory with three machines made by the Actuator (real
tokens), starts the endpoint in a process of its own under `--nofile` file
descriptors (systemd's default is 1024) with the daemon's default limits
(tests/flood_server.py; beside it a thread opens 64 files every 50 ms as a
cycle would), and measures a legitimate machine's heartbeat PUT (one new
connection per PUT, as curl does):

- at rest;
- under attack, all at once: `--flood` idle connections from 11 source
  addresses, 50 slowloris connections (half a header, then nothing), 20
  PUTs with a lying Content-Length, 16 loops of a second machine PUTting as
  fast as it can, and a stream of malformed requests carrying a token.

Prints: legitimate PUT latency (p50, p99, max, ms) at rest and under
attack; the cap hits by reason (/metrics); EMFILE failures of the
"cycle" thread; the most file descriptors the server held; whether a third,
quiet machine's directory is byte-for-byte unchanged; whether the token of
the malformed requests appears in any response or log; the log's size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from endpoint_support import actuator, create, fingerprint, machinetype, request  # noqa: E402


def put_latency(port: int, name: str, token: str) -> float:
    started = time.perf_counter()
    status = request(port, "PUT", f"/machines/lab/{name}/joboutputs/heartbeat", token, b"1")[0]
    if status != 204:
        raise SystemExit(f"legitimate PUT answered {status}")
    return (time.perf_counter() - started) * 1000


def figures(latencies: list[float]) -> str:
    latencies = sorted(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return f"p50 {statistics.median(latencies):6.1f}  p99 {p99:6.1f}  max {latencies[-1]:6.1f} ms"


def connect(address: str, port: int, payload: bytes = b"") -> socket.socket:
    s = socket.socket()
    s.bind((address, 0))
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        if payload:
            s.sendall(payload)
    except OSError:
        pass
    return s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int, default=1024)
    parser.add_argument("--flood", type=int, default=1100)
    parser.add_argument("--puts", type=int, default=200)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.flood + 1024), hard))
    tmp = Path(tempfile.mkdtemp(prefix="vacagent-security-"))
    state = tmp / "state"
    lab = actuator(state, "lab", "http://127.0.0.1:1")
    mt = machinetype(tmp)
    (legit, legit_token), (noisy, noisy_token), (quiet, quiet_token) = (create(lab, mt) for _ in range(3))
    quiet_before = fingerprint(lab.store.machine_dir(quiet))
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "flood_server.py"), str(state), str(args.nofile)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = json.loads(server.stdout.readline())
    port = info["port"]
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(server.stderr), daemon=True).start()
    most_fds = [0]
    stop = threading.Event()

    def watch_fds() -> None:
        while not stop.wait(0.05):
            most_fds[0] = max(most_fds[0], len(os.listdir(f"/proc/{server.pid}/fd")))

    def hammer() -> None:
        while not stop.is_set():
            request(port, "PUT", f"/machines/lab/{noisy}/joboutputs/shutdown_message", noisy_token, b"300 again")

    answers: list[bytes] = []

    def malformed() -> None:
        while not stop.wait(0.02):
            with connect("127.0.0.50", port, b"PUT /machines/lab/%s/joboutputs/heartbeat HTTP/1.1\r\n"
                         b"Authorization: Bearer %s\x01\r\n\r\n" % (quiet.encode(), quiet_token.encode())) as s:
                try:
                    answers.append(s.recv(4096))
                except OSError:
                    pass

    rest = [put_latency(port, legit, legit_token) for _ in range(args.puts)]
    helpers = [threading.Thread(target=f, daemon=True) for f in [watch_fds, malformed] + [hammer] * 16]
    for t in helpers:
        t.start()
    held = [connect(f"127.0.0.{2 + i % 11}", port) for i in range(args.flood)]
    held += [connect("127.0.0.30", port, b"PUT /x HTTP/1.1\r\nHost: x\r\nX-Slow: a") for _ in range(50)]
    held += [connect("127.0.0.31", port, f"PUT /machines/lab/{quiet}/joboutputs/heartbeat HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {quiet_token}\r\nContent-Length: 10\r\n\r\n1".encode())
             for _ in range(20)]
    attacked = [put_latency(port, legit, legit_token) for _ in range(args.puts)]
    stop.set()
    for t in helpers:
        t.join(5)
    server.stdin.write("report\n")
    server.stdin.flush()
    counts = json.loads(server.stdout.readline())
    metrics = request(port, "GET", "/metrics")[2].decode()
    for s in held:
        s.close()
    server.stdin.close()
    server.wait(30)
    secret = quiet_token.rsplit(".", 1)[1]
    refused = re.findall(r'vacagent_endpoint_refused_total\{reason="(\w+)"\} ([\d.]+)', metrics)
    statuses = re.findall(r'vacagent_endpoint_requests_total\{route="(\w+)",status="(\d+)"\} ([\d.]+)', metrics)
    print(f"endpoint under {args.nofile} file descriptors, connection cap {info['max_connections']}")
    print(f"legitimate PUT at rest:      {figures(rest)}")
    print(f"legitimate PUT under attack: {figures(attacked)}")
    print("cap hits: " + ", ".join(f"{reason} {float(n):.0f}" for reason, n in refused))
    print("requests by status: " + ", ".join(f"{route}/{status} {float(n):.0f}" for route, status, n in statuses))
    print(f"cycle thread: {counts['opens']} opens, {counts['emfile']} failed with EMFILE; "
          f"server held at most {most_fds[0]} file descriptors")
    print(f"quiet machine's directory unchanged: {fingerprint(lab.store.machine_dir(quiet)) == quiet_before}")
    print(f"malformed requests answered: {len(answers)}; token in a response: "
          f"{any(secret.encode() in a for a in answers)}; in the log: {secret in ''.join(log)}; "
          f"log {sum(len(line) for line in log)} bytes")


if __name__ == "__main__":
    main()
