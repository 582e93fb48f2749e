"""Run the endpoint: an aiohttp server on an event loop in a background thread.

The daemon starts one `EndpointServer` beside its space threads; `start()`
returns once the port is bound (or raises ConfigError naming the
configuration key when it cannot be), `stop()` closes it.  Once listening,
it records the time in `STATE/endpoint.json` (see `state.uptime`), from
which the cycle grants machines a heartbeat grace period.

With `tls_cert` and `tls_key`, it speaks HTTPS (TLS 1.2 or newer);
without, plain HTTP, fit for loopback or behind a TLS-terminating proxy.

Neighbours: `app` (the handlers), `daemon` (starts and stops it).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web

from vacagent import logs
from vacagent.clock import Clock
from vacagent.config import EndpointSettings
from vacagent.endpoint.app import Endpoint
from vacagent.endpoint.connections import BoundedServer, connection_cap
from vacagent.endpoint.machines import Directory
from vacagent.errors import ConfigError
from vacagent.metrics import Metrics
from vacagent.state import uptime

log = logs.get("vacagent.endpoint")
IO_THREADS = 8
ACCEPT_BACKLOG = 16  # accepted per loop turn; a few turns of these can be open before the caps close them
KERNEL_BACKLOG = 4096


def tls_context(settings: EndpointSettings) -> ssl.SSLContext | None:
    if not settings.tls_cert or not settings.tls_key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"{settings.config_file}: endpoint.tls_cert: cannot load {settings.tls_cert} "
                          f"with {settings.tls_key}: {e}") from e
    return context


def _deepen_queue(fd: int) -> None:
    """Give the kernel's queue of connections not yet accepted KERNEL_BACKLOG places.

    asyncio passes one number as both the listen() backlog and how many
    connections it accepts in one go; the second must stay small (each is a
    file descriptor before the caps can close it), the first large, or a
    flood fills it and a machine's connection waits a whole SYN retry (1 s)."""
    with socket.socket(fileno=os.dup(fd)) as listening:
        listening.listen(KERNEL_BACKLOG)


class EndpointServer:
    def __init__(self, settings: EndpointSettings, state_dir: Path, clock: Clock, metrics: Metrics | None = None):
        self.settings = settings
        self.state_dir = state_dir
        self.clock = clock
        self.metrics = metrics
        self.port: int | None = None  # the port actually bound
        self.max_connections: int | None = None  # the connection cap in force (file limit considered)
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="endpoint-io")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def public_url(self) -> str | None:
        """The base URL machines are given."""
        return self.settings.base_url(self.port)

    def start(self) -> None:
        context = tls_context(self.settings)
        self._thread = threading.Thread(target=self._serve, args=(context,), name="endpoint", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            self._pool.shutdown(wait=False)
            e = self._error
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise ConfigError(f"{self.settings.config_file}: endpoint.port: cannot listen on "
                              f"{self.settings.listen}:{self.settings.port}: {reason}") from e
        now = self.clock.now()
        try:
            uptime.record_up(self.state_dir, now, self.public_url, f"{self.settings.listen}:{self.port}")
        except OSError as e:  # a full disk must not keep machines from reporting
            log.error("cannot record when the endpoint came up", file=self.state_dir / uptime.FILE, why=e.strerror,
                      then="heartbeats are counted without the grace of this start")
        log.info("endpoint listening", listen=f"{self.settings.listen}:{self.port}", url=self.public_url,
                 tls=bool(context) or None, max_connections=self.max_connections)

    def _serve(self, context: ssl.SSLContext | None) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind(context))
        except BaseException as e:  # noqa: BLE001 - reported to start()'s caller
            self._error = e
            loop.close()
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _bind(self, context: ssl.SSLContext | None) -> None:
        endpoint = Endpoint(Directory(self.state_dir, self.settings), self.clock, self.metrics, self._pool)
        self.max_connections = connection_cap(self.settings.max_connections)
        server = BoundedServer(endpoint.handle, max_connections=self.max_connections,
                               max_per_address=self.settings.max_connections_per_address, refused=endpoint.refused,
                               keepalive_timeout=self.settings.idle_timeout_seconds, lingering_time=0,
                               access_log=None)
        endpoint.busy = server.busy
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        # The backlog is also how many connections asyncio accepts in one go: keep it
        # well below the file descriptors held in reserve (connections.FD_RESERVE);
        # the kernel's queue is deepened once listening (_deepen_queue).
        site = web.TCPSite(self._runner, self.settings.listen, self.settings.port, ssl_context=context,
                           backlog=ACCEPT_BACKLOG, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        for listening in site._server.sockets if site._server else ():
            _deepen_queue(listening.fileno())
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._pool.shutdown(wait=True)
        log.info("endpoint stopped", listen=f"{self.settings.listen}:{self.port}")
