"""The endpoint's HTTP handlers (aiohttp) and the order of its checks.

For a request under /machines/, each check in turn, the first failing one
answering (docs/machine-protocol.md has the table):

    400  malformed path: percent-encoding, '.'/'..' or empty segments,
         a query, an absolute-form target, a bad file name
    404  not /machines/<space>/<machine>/<kind>/<file>, unknown kind,
         unknown space, or a machine with no directory (live or finished)
    405  GET on joboutputs, PUT on features, any other method
    429  the machine already has max_machine_requests requests waiting
    401  no bearer token, a malformed one, or one that does not verify
    403  a genuine token of another machine, or the machine's record is closed
    408  the body did not arrive within body_timeout_seconds
    409  a symlink or non-regular file in the way (never followed)
    413  body over its cap, or joboutputs over the machine's total cap or file count
    404  GET of a feature key that does not exist
    200  GET: the feature's value;  204  PUT: stored
    500 / 507  the state directory failed (507: full), logged

(and 503, before any of these, from `connections`: too many connections).
Refusals of 408, 413 and 429 are counted in `/metrics` as cap hits too
(`vacagent_endpoint_refused_total{reason}`).  No response carries a
`Server` version banner or echoes anything the client sent.

File I/O runs in a thread pool, so a slow (shared) filesystem never
stalls the event loop, and the loop never stalls the decision cycle, which
runs in threads of its own.  Tokens are never logged.

Neighbours: `paths`, `machines`, `connections` (the server it runs in),
`server`, `metrics`.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from aiohttp import web

from vacagent import logs
from vacagent.clock import Clock
from vacagent.endpoint import paths
from vacagent.endpoint.connections import SERVER_HEADER
from vacagent.endpoint.machines import Directory
from vacagent.endpoint.paths import Refused
from vacagent.metrics import Metrics
from vacagent.state.store import SHUTDOWN_MESSAGE

log = logs.get("vacagent.endpoint")
IO_SLOTS_PER_MACHINE = 2


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


class Endpoint:
    def __init__(self, directory: Directory, clock: Clock, metrics: Metrics | None, pool: ThreadPoolExecutor):
        self.directory = directory
        self.clock = clock
        self.metrics = metrics
        self.pool = pool
        self.up_since = clock.now()

        self.busy: set[Any] = set()  # connections handling a request: `connections` evicts only idle ones
        self._waiting: dict[tuple[str, str], int] = {}  # (space, machine) -> its requests handled now
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}  # (space, machine) -> its I/O threads

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Every request: one of the four routes, marked busy while it is handled."""
        self.busy.add(request.protocol)
        try:
            path = request.path  # decoded, absolute-form reduced: only to pick the route; `paths` checks raw_path
            if path.startswith(paths.PREFIX):
                response = await self.machines(request)
            elif path in self._pages:
                if request.method in ("GET", "HEAD"):
                    response = await self._pages[path](request)
                else:
                    response = web.Response(status=405, text="GET only\n", headers={"Allow": "GET, HEAD"})
            else:
                response = await self.not_found(request)
        finally:
            self.busy.discard(request.protocol)
        response.headers["Server"] = SERVER_HEADER
        return response

    @property
    def _pages(self) -> dict[str, Callable[[web.BaseRequest], Any]]:
        return {"/healthz": self.healthz, "/metrics": self.metrics_page}

    def refused(self, reason: str) -> None:
        """A cap hit: counted by reason in /metrics."""
        if self.metrics is not None:
            self.metrics.endpoint_refused(reason)

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _count(self, route: str, status: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.endpoint_request(route, status, self.clock.now() - started)

    async def machines(self, request: web.BaseRequest) -> web.StreamResponse:
        started = self.clock.now()
        route, target = "invalid", None
        try:
            target = paths.parse(request.raw_path)
            route = target.kind
            allowed = paths.KINDS[target.kind]
            if request.method != allowed and not (allowed == "GET" and request.method == "HEAD"):
                raise Refused(405, f"{target.kind} accepts {allowed} only")
            token = bearer(request.headers.get("Authorization"))
            if target.kind == "joboutputs":
                body = await self._put(request, target, token)
                if target.key == SHUTDOWN_MESSAGE:
                    log.info("shutdown message received", space=target.space, machine=target.machine,
                             message=body[:200].decode("utf-8", "replace").strip())
                response = web.Response(status=204)
            else:
                data = await self._machine_io(target, self.directory.get, target, token)
                response = web.Response(body=data, content_type="text/plain")
        except Refused as e:
            response = self._refuse(request, e, target)
        except ConnectionError:
            raise  # the client went away mid-request: nothing to answer
        except OSError as e:  # the state directory failed us (full, read-only, gone): say so, once per request
            log.error("endpoint request failed", method=request.method, space=target.space if target else None,
                      machine=target.machine if target else None, error=type(e).__name__, detail=str(e))
            status = 507 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 500
            response = web.Response(status=status, text="the state directory cannot be written now\n")
        self._count(route, response.status, started)
        return response

    async def _machine_io(self, target: paths.Target, fn: Callable[..., Any], *args: Any) -> Any:
        """An I/O trip for the machine `target` names: at most IO_SLOTS_PER_MACHINE of its trips
        hold I/O threads at once, the next wait here (holding no thread), and beyond
        max_machine_requests waiting, 429.  So a machine looping over PUTs never takes the
        threads every other machine's requests need."""
        key = (target.space, target.machine)
        waiting = self._waiting.get(key, 0)
        if waiting >= self.directory.settings.max_machine_requests:
            raise Refused(429, f"this machine already has {waiting} requests waiting", cap="machine_requests")
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(IO_SLOTS_PER_MACHINE)
        self._waiting[key] = waiting + 1
        try:
            async with slots:
                return await self._io(fn, *args)
        finally:
            left = self._waiting[key] - 1
            if left:
                self._waiting[key] = left
            else:
                del self._waiting[key], self._slots[key]

    async def _body(self, request: web.BaseRequest, cap: int) -> bytes:
        try:
            return await asyncio.wait_for(_read_body(request, cap), self.directory.settings.body_timeout_seconds)
        except asyncio.TimeoutError:
            raise Refused(408, f"the body did not arrive within {self.directory.settings.body_timeout_seconds}s",
                          cap="body_timeout") from None

    async def _put(self, request: web.BaseRequest, target: paths.Target, token: str | None) -> bytes:
        small = self.directory.settings.max_message_bytes
        if request.content_length is not None and request.content_length <= small:
            # A heartbeat or a shutdown message: read it (a few KiB at most, even for
            # a stranger) and check and write in one trip to the I/O threads.
            body = await self._body(request, small)
            await self._machine_io(target, self.directory.put, target, token, body, self.clock.now())
            return body
        machine = await self._machine_io(target, self.directory.authorize, target.space, target.machine, token)
        body = await self._body(request, self.directory.cap(machine, target.key))
        await self._machine_io(target, self.directory.write, machine, target.key, body, self.clock.now())
        return body

    def _refuse(self, request: web.BaseRequest, refusal: Refused, target: paths.Target | None) -> web.Response:
        headers = {}
        if refusal.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="vacagent"'
        elif refusal.status == 405 and target is not None:
            headers["Allow"] = "GET, HEAD" if paths.KINDS[target.kind] == "GET" else "PUT"
        # 401/403 may be a machine using a dead token, or someone trying another's: worth a line.
        emit = log.info if refusal.status in (401, 403) else log.debug
        emit("endpoint request refused", status=refusal.status, reason=refusal.reason, method=request.method,
             space=target.space if target else None, machine=target.machine if target else None,
             peer=request.remote)
        if refusal.cap:
            self.refused(refusal.cap)
        response = web.Response(status=refusal.status, text=refusal.reason + "\n", headers=headers)
        if request.method == "PUT":
            response.force_close()  # the body may be unread: never linger reading it
        return response

    async def healthz(self, request: web.BaseRequest) -> web.Response:
        started = self.clock.now()
        ok = await self._io(os.access, self.directory.spaces.parent, os.W_OK)
        status = 200 if ok else 503
        body = {"status": "ok" if ok else "state directory not writable", "up_since": self.up_since}
        self._count("healthz", status, started)
        return web.Response(status=status, text=json.dumps(body) + "\n", content_type="application/json")

    async def metrics_page(self, request: web.BaseRequest) -> web.Response:
        started = self.clock.now()
        if self.metrics is None:
            self._count("metrics", 404, started)
            return web.Response(status=404, text="metrics are not collected by this process\n")
        body, content_type = self.metrics.exposition()
        self._count("metrics", 200, started)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def not_found(self, request: web.BaseRequest) -> web.Response:
        self._count("other", 404, self.clock.now())
        return web.Response(status=404, text="no such resource\n")


async def _read_body(request: web.BaseRequest, cap: int) -> bytes:
    length = request.content_length
    if length is not None and length > cap:
        raise Refused(413, f"body larger than {cap} bytes", cap="body_bytes")
    if length == 0:
        return b""
    if length is not None:
        try:
            return await request.content.readexactly(length)
        except asyncio.IncompleteReadError:
            raise Refused(400, "body shorter than its Content-Length") from None
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > cap:
            raise Refused(413, f"body larger than {cap} bytes", cap="body_bytes")
        chunks.append(chunk)
    return b"".join(chunks)
