"""What any peer can hold of the endpoint: its connections.

`BoundedServer` is aiohttp's low-level `web.Server` with caps on open
connections, checked when a connection is made (after the TLS handshake,
with TLS):

- per source address (`max_connections_per_address`): a newcomer over the
  cap is answered `503` and closed at once;
- in all (`connection_cap`: `max_connections`, lowered to the process's file
  limit minus FD_RESERVE, so that the cycles and the I/O threads always have
  file descriptors left): the oldest idle connection (no request being
  handled) gives way to the newcomer, so a flood of idle connections from
  many addresses delays no machine that sends its request; only when every
  connection is busy is the newcomer answered `503`.

A connection with no complete request within `idle_timeout_seconds` of being
made, or of its last response, is closed (aiohttp's keep-alive timer, which
runs from the start of the connection).  Requests aiohttp itself cannot parse
get a fixed body and no `Server` banner: never the request echoed back (it
may hold a token), and the log line goes through `logs`, which redacts.

Neighbours: `server` (runs it), `app` (the request handler), `metrics`.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from vacagent import logs

log = logs.get("vacagent.endpoint")

FD_RESERVE = 256  # file descriptors never given to connections: cycles, I/O threads, accept bursts
MIN_CONNECTIONS = 16
SERVER_HEADER = "vacagent"
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nServer: vacagent\r\nConnection: close\r\nRetry-After: 5\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s")


def connection_cap(configured: int, soft_limit: int | None = None) -> int:
    """The connections the endpoint may hold: `configured`, but never eating into FD_RESERVE."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY:
        return configured
    return max(MIN_CONNECTIONS, min(configured, soft_limit - FD_RESERVE))


class _Handler(RequestHandler):
    """aiohttp's per-connection protocol, answering its own parse errors without echo."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        log.debug("endpoint request unreadable", status=status, peer=request.remote,
                  error=type(exc).__name__ if exc else None, detail=str(exc) if exc else message)
        response = web.Response(status=status, text=f"{status} the request could not be read\n",
                                headers={"Server": SERVER_HEADER})
        response.force_close()
        return response


class BoundedServer(web.Server):
    """web.Server with the connection caps above; `refused(reason)` counts each refusal."""

    def __init__(self, handler: Callable[..., Any], *, max_connections: int, max_per_address: int,
                 refused: Callable[[str], None], **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.refused = refused
        self.busy: set[RequestHandler] = set()  # connections whose request is being handled (app marks them)
        self._open: dict[RequestHandler, str] = {}  # oldest first -> source address
        self._per_address: dict[str, int] = {}

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if self._per_address.get(address, 0) >= self.max_per_address:
            self._turn_away(handler, transport, "connections_per_address",
                            f"more than {self.max_per_address} connections from {address}")
            return
        if len(self._open) >= self.max_connections and not self._make_room():
            self._turn_away(handler, transport, "connections", f"more than {self.max_connections} connections")
            return
        self._open[handler] = address
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._forget(handler)
        self.busy.discard(handler)
        super().connection_lost(handler, exc)

    def _forget(self, handler: RequestHandler) -> None:
        address = self._open.pop(handler, None)
        if address is not None:
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    def _make_room(self) -> bool:
        """Close the oldest connection that is not handling a request; False if all are busy."""
        for handler in self._open:
            if handler not in self.busy:
                self._forget(handler)
                handler.force_close()
                self.refused("idle_evicted")
                return True
        return False

    def _turn_away(self, handler: RequestHandler, transport: asyncio.Transport, reason: str, why: str) -> None:
        self.refused(reason)
        body = f"the endpoint is busy: {why}; try again later\n".encode()
        transport.write(BUSY % (len(body), body))
        handler.force_close()
