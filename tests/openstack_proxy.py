"""A fault-injecting HTTP proxy in front of the real nova API, for the failures nova cannot be made to give.

The control plane registers it as the compute endpoint of a second region
(`openstack_support.FAULTY_REGION`); a backend configured with that region
talks to the real nova through it.  With nothing queued it forwards every
request unchanged.  `inject(method, path_pattern, status=..., body=...,
headers=..., delay=...)` queues a one-shot fault for the next matching
request: an answer of its own (5xx, 429 with Retry-After, 401, 409), or a
delay before forwarding (a timeout for a client with a shorter one).

Real 403 quota refusals, "No valid host" and flavor/image errors come from
nova itself (quotas, oversized flavors); only what nova cannot be made to
do on demand goes through here.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "host"}


@dataclass
class Fault:
    method: str
    path: re.Pattern
    status: int | None = None  # answer this instead of forwarding
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # wait this long first


class FaultProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str, int]] = []  # (method, path, status) of every request answered
        self.arrived: list[tuple[str, str]] = []  # (method, path) of every request, as it arrives
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FaultProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def inject(self, method: str, path: str, status: int | None = None, body: dict | None = None,
               headers: dict | None = None, delay: float = 0.0) -> None:
        with self.lock:
            self.faults.append(Fault(method, re.compile(path), status, body or {}, headers or {}, delay))

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.arrived.clear()
            self.seen.clear()

    def _take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for i, fault in enumerate(self.faults):
                if fault.method == method and fault.path.search(path):
                    return self.faults.pop(i)
        return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.arrived.append((self.command, self.path))
                fault = proxy._take(self.command, self.path)
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status is not None:
                    payload = json.dumps(fault.body).encode()
                    self._answer(fault.status, {"Content-Type": "application/json", **fault.headers}, payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=data or None, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}}
                upstream.close()
                self._answer(response.status, kept, payload)

            def _answer(self, status, headers, payload):
                with proxy.lock:
                    proxy.seen.append((self.command, self.path, status))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        return Handler
