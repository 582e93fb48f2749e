"""The endpoint's HTTP handlers (aiohttp) and the order of its checks.

For a request under /machines/, each check in turn, the first failing one
answering (docs/machine-protocol.md has the table):

    400  malformed path: percent-encoding, '.'/'..' or empty segments,
         a query, an absolute-form target, a bad file name
    404  not /machines/<space>/<machine>/<kind>/<file>, unknown kind,
         unknown space, or a machine with no directory (live or finished)
    405  GET on joboutputs, PUT on features, any other method
    401  no bearer token, a malformed one, or one that does not verify
    403  a genuine token of another machine, or the machine's record is closed
    409  a symlink or non-regular file in the way (never followed)
    413  body over its cap, or joboutputs over the machine's total cap
    404  GET of a feature key that does not exist
    200  GET: the feature's value;  204  PUT: stored
    500 / 507  the state directory failed (507: full), logged

File I/O runs in a thread pool, so a slow (shared) filesystem never
stalls the event loop, and the loop never stalls the decision cycle, which
runs in threads of its own.  Tokens are never logged.

Neighbours: `paths`, `machines`, `server` (runs this app), `metrics`.
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
from vacagent.endpoint.machines import Directory
from vacagent.endpoint.paths import Refused
from vacagent.metrics import Metrics
from vacagent.state.store import SHUTDOWN_MESSAGE

log = logs.get("vacagent.endpoint")


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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_route("*", "/machines/{tail:.*}", self.machines)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _count(self, route: str, status: int, started: float) -> None:
        if self.metrics is not None:
            self.metrics.endpoint_request(route, status, self.clock.now() - started)

    async def machines(self, request: web.Request) -> web.StreamResponse:
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
                data = await self._io(self.directory.get, target, token)
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

    async def _put(self, request: web.Request, target: paths.Target, token: str | None) -> bytes:
        small = self.directory.settings.max_message_bytes
        if request.content_length is not None and request.content_length <= small:
            # A heartbeat or a shutdown message: read it (a few KiB at most, even for
            # a stranger) and check and write in one trip to the I/O threads.
            body = await _read_body(request, small)
            await self._io(self.directory.put, target, token, body, self.clock.now())
            return body
        machine = await self._io(self.directory.authorize, target.space, target.machine, token)
        body = await _read_body(request, self.directory.cap(machine, target.key))
        await self._io(self.directory.write, machine, target.key, body, self.clock.now())
        return body

    def _refuse(self, request: web.Request, refusal: Refused, target: paths.Target | None) -> web.Response:
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
        return web.Response(status=refusal.status, text=refusal.reason + "\n", headers=headers)

    async def healthz(self, request: web.Request) -> web.Response:
        started = self.clock.now()
        ok = await self._io(os.access, self.directory.spaces.parent, os.W_OK)
        status = 200 if ok else 503
        body = {"status": "ok" if ok else "state directory not writable", "up_since": self.up_since}
        self._count("healthz", status, started)
        return web.Response(status=status, text=json.dumps(body) + "\n", content_type="application/json")

    async def metrics_page(self, request: web.Request) -> web.Response:
        started = self.clock.now()
        if self.metrics is None:
            self._count("metrics", 404, started)
            return web.Response(status=404, text="metrics are not collected by this process\n")
        body, content_type = self.metrics.exposition()
        self._count("metrics", 200, started)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def not_found(self, request: web.Request) -> web.Response:
        self._count("other", 404, self.clock.now())
        return web.Response(status=404, text="no such resource\n")


async def _read_body(request: web.Request, cap: int) -> bytes:
    length = request.content_length
    if length is not None and length > cap:
        raise Refused(413, f"body larger than {cap} bytes")
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
            raise Refused(413, f"body larger than {cap} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
