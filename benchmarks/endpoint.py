#!/usr/bin/env python3
"""Endpoint throughput: heartbeat PUTs per second and latency, on loopback.

    python benchmarks/endpoint.py [--clients 1,8,32,128] [--seconds 5] [--machines 1000] [--rate 2000]

Builds a real state directory with `--machines` machines (made by the
Actuator, so each has a real token), starts the endpoint exactly as the
daemon does (`EndpointServer`, metrics on) in a process of its own, and
loads it from this process with a small asyncio HTTP/1.1 client.  Every
PUT goes to the next machine in turn (as 10,000 machines heartbeating
every minute do: no machine twice in a row), so no cache flatters it.

Rows, per number of concurrent clients (a closed loop: each client sends
its next PUT as soon as the last is answered, so p99 there is mostly
queueing, about clients / throughput):

- keepalive-newbody:  one connection per client; each PUT carries a body
  the file does not hold yet (a new file every time: the worst case);
- keepalive-samebody: the body the file holds already (what the shipped
  reporters send by default: the endpoint then only updates the time);
- newconn-newbody:    one TCP connection per PUT, as curl from a VM does.

Then two open-loop rows (2000/s-newbody, 2000/s-samebody): PUTs offered
at `--rate` per second over 64 keep-alive connections, latency counted
from when each PUT was due, so a server that falls behind (or stalls)
shows it.  Target (issue 3): 2,000 PUT/s
with p99 under 50 ms on 2 cores; 10,000 machines heartbeating every
minute need about 170/s.

Columns: PUTs answered, PUT/s, p50 and p99 latency (ms), errors (any
status but 204), and the server process's CPU time per PUT (us), which
says more than PUT/s when other work shares the machine.  The client
shares the machine's cores with the server: the figures are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vacagent.actuate import Actuator  # noqa: E402
from vacagent.backends.base import BackendContext  # noqa: E402
from vacagent.backends.fake import FakeBackend  # noqa: E402
from vacagent.backoff import FeedbackState  # noqa: E402
from vacagent.clock import SystemClock  # noqa: E402
from vacagent.config import EndpointSettings  # noqa: E402
from vacagent.fetch import Fetcher  # noqa: E402
from vacagent.model import MachineType  # noqa: E402
from vacagent.report import Reporter  # noqa: E402
from vacagent.state.store import SpaceStore  # noqa: E402

SPACE = "bench"


def make_machines(state: Path, count: int) -> list[tuple[str, str]]:
    """(name, token) of `count` machines made by the real Actuator."""
    template = state.parent / "user_data"
    template.write_text("##user_data_token##")
    backend = FakeBackend(BackendContext("bench", SPACE, state, {}, SystemClock()))
    store = SpaceStore(state, SPACE, "bench")
    actuator = Actuator(SPACE, "bench", backend, store, Fetcher(state / "cache"), Reporter(),
                        endpoint_url="http://127.0.0.1:0")
    mt = MachineType("bench-a", user_data=str(template), heartbeat_file="heartbeat", heartbeat_seconds=60)
    store.save_definition(mt.name, {"heartbeat_file": "heartbeat", "heartbeat_seconds": 60})
    machines = []
    for _ in range(count):
        record, _ = actuator.create(mt, False, FeedbackState(), SystemClock().now())
        machines.append((record.name, backend.machines[record.name].user_data))
    return machines


def serve(state: str, port_file: str) -> None:
    """The server process: the daemon's EndpointServer until SIGTERM."""
    from vacagent.endpoint.server import EndpointServer
    from vacagent.metrics import Metrics

    server = EndpointServer(EndpointSettings(listen="127.0.0.1", port=0), Path(state), SystemClock(), Metrics())
    server.start()
    Path(port_file).write_text(str(server.port))
    signal.sigwait({signal.SIGTERM})
    server.stop()


def request_bytes(name: str, token: str, body: bytes, keep_alive: bool) -> bytes:
    return (f"PUT /machines/{SPACE}/{name}/joboutputs/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


class Load:
    """Who sends what: machines in turn; a body new to the file, or the one it holds."""

    def __init__(self, machines: list[tuple[str, str]], new_body: bool, keep_alive: bool):
        self.machines = machines
        self.new_body = new_body
        self.keep_alive = keep_alive
        self.sent = 0
        self.latencies: list[float] = []
        self.errors = 0

    def next_request(self) -> bytes:
        name, token = self.machines[self.sent % len(self.machines)]
        self.sent += 1
        return request_bytes(name, token, b"%d" % self.sent if self.new_body else b"", self.keep_alive)


async def client(port: int, load: Load, deadline: float, schedule=None) -> None:
    """Send PUTs until `deadline`; with `schedule` (an iterator of due times), only when due."""
    reader = writer = None
    while True:
        due = next(schedule) if schedule else time.perf_counter()
        if due >= deadline:
            break
        if schedule and due > time.perf_counter():
            await asyncio.sleep(due - time.perf_counter())
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(load.next_request())
            status = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError):
            load.errors += 1
            writer = None
            continue
        load.latencies.append(time.perf_counter() - due)
        if status != 204:
            load.errors += 1
        if not load.keep_alive:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def closed_loop(port: int, load: Load, clients: int, seconds: float) -> float:
    started = time.perf_counter()
    await asyncio.gather(*(client(port, load, started + seconds) for _ in range(clients)))
    return time.perf_counter() - started


async def open_loop(port: int, load: Load, rate: float, seconds: float, connections: int = 64) -> float:
    started = time.perf_counter() + 0.2  # after the connections are made
    deadline = started + seconds

    def due_times(i: int):
        k = 0
        while True:
            yield started + (k * connections + i) / rate
            k += 1

    await asyncio.gather(*(client(port, load, deadline, due_times(i)) for i in range(connections)))
    return seconds


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=1000)[int(p * 10) - 1] if len(values) > 1 else values[0]


def row(label: str, clients, load: Load, elapsed: float, cpu: float) -> None:
    ms = [x * 1000 for x in load.latencies]
    done = len(ms)
    print(f"{label:<22} {clients:>7} {done:>8} {done / elapsed:>7.0f} {percentile(ms, 50):>7.2f} "
          f"{percentile(ms, 99):>7.2f} {load.errors:>6} {cpu / max(done, 1) * 1e6:>8.0f}", flush=True)


MODES = {  # name: (new body, keep-alive)
    "keepalive-newbody": (True, True),
    "keepalive-samebody": (False, True),
    "newconn-newbody": (True, False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,8,32,128", help="concurrent clients per run (default 1,8,32,128)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run (default 5)")
    parser.add_argument("--machines", type=int, default=1000, help="machines in the state directory (default 1000)")
    parser.add_argument("--rate", type=float, default=2000, help="offered PUT/s of the open-loop row (0: none)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"closed-loop rows (default: {', '.join(MODES)})")
    parser.add_argument("--serve", nargs=2, metavar=("STATE", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0

    with tempfile.TemporaryDirectory(prefix="vacagent-bench-") as tmp:
        state = Path(tmp) / "state"
        machines = make_machines(state, args.machines)
        port_file = Path(tmp) / "port"
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(state), str(port_file)])
        try:
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None:
                    raise SystemExit("the endpoint did not start")
                time.sleep(0.05)
            port = int(port_file.read_text())
            print(f"vacagent endpoint, heartbeat PUTs on loopback: {os.cpu_count()} cores, "
                  f"Python {platform.python_version()}, {args.machines} machines, {args.seconds:g} s per row, "
                  f"state directory in {tmp}")
            print(f"{'mode':<22} {'clients':>7} {'PUTs':>8} {'PUT/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
                  f"{'errors':>6} {'CPU us/PUT':>10}")
            for mode in args.modes.split(","):
                new_body, keep_alive = MODES[mode.strip()]
                for clients in (int(c) for c in args.clients.split(",")):
                    load = Load(machines, new_body, keep_alive)
                    cpu = cpu_seconds(server.pid)
                    elapsed = asyncio.run(closed_loop(port, load, clients, args.seconds))
                    row(mode.strip(), clients, load, elapsed, cpu_seconds(server.pid) - cpu)
            for new_body in (True, False) if args.rate else ():
                load = Load(machines, new_body, True)
                cpu = cpu_seconds(server.pid)
                elapsed = asyncio.run(open_loop(port, load, args.rate, args.seconds))
                label = f"{args.rate:g}/s-{'newbody' if new_body else 'samebody'}"
                row(label, 64, load, elapsed, cpu_seconds(server.pid) - cpu)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
