"""The listening socket, bounded: no client can hold the sockets probes need.

Two limits keep idle clients from starving kubelet's probes of file
descriptors. Every connection may sit idle (no request yet, a half-sent
request, or kept alive between requests) for at most `idle_timeout`: aiohttp's
keep-alive timer starts when the connection is accepted, so it also bounds the
wait for the first request's headers. And the number of open connections is
capped well below RLIMIT_NOFILE: at the cap, a new connection closes the
oldest idle one, so a probe arriving on a fresh connection is always served,
and only when every connection is busy is the new one refused.

Two hands take connections from the listening sockets: the event loop, as
any asyncio server, and the probes' thread (probed/lane.py), whichever is
free first. The loop serves what it takes with aiohttp; the thread answers a
group's endpoint itself and hands every other connection to the loop, where
the guard takes it as if the loop had accepted it. So a free loop answers a
probe at once, with no wait for the interpreter's lock, and a busy one
leaves it to the thread (docs/benchmarks.md). The two share the limit: the
thread, which holds a connection only until its first request and then
its close, a quarter of it (at least MIN_LANE_CONNECTIONS), the loop the rest.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from probed.lane import Decide, ProbeLane

log = structlog.get_logger("probed.connections")

MIN_CONNECTIONS = 16
MIN_LANE_CONNECTIONS = 8
MAX_CONNECTIONS = 1024
EVICTION_LOG_PERIOD = 60.0  # seconds: under a flood, one summary line a minute, not one per connection


def connection_limit(nofile: int | None = None) -> int:
    """A quarter of the file descriptors, the rest left to checks' sockets,
    log files and the interpreter: a health sidecar needs few HTTP clients."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, nofile // 4))


class ConnectionGuard:
    """The listening socket's protocol factory: aiohttp's, behind a limit."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self.limit = limit
        self.evicted = 0
        self.refused = 0
        self._last_logged = 0.0

    def __call__(self) -> asyncio.BaseProtocol:
        # server.connections is in accept order: the oldest first.
        open_now = [handler for handler in self._server.connections if handler.transport is not None]
        if len(open_now) >= self.limit:
            idle = next((handler for handler in open_now if _idle(handler)), None)
            if idle is None:
                self.refused += 1
                self._log_pressure()
                return _Refuse()
            idle.force_close()
            self.evicted += 1
            self._log_pressure()
        return self._server()

    def _log_pressure(self) -> None:
        now = time.monotonic()
        if now - self._last_logged >= EVICTION_LOG_PERIOD:
            self._last_logged = now
            log.warning(
                "http_connection_limit_reached",
                limit=self.limit,
                closed_idle=self.evicted,
                refused=self.refused,
            )


def _idle(handler: RequestHandler) -> bool:
    # aiohttp has no public flag for "between requests"; if the private one
    # goes away, the oldest connection is closed whatever it does.
    return not getattr(handler, "_request_in_progress", False)


class _Refuse(asyncio.Protocol):
    """Every connection is busy with a request: close the new one at once."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class GuardedSite(web.BaseSite):
    """web.TCPSite with the probes' thread beside the loop on the listening
    sockets, and a ConnectionGuard in front of aiohttp's protocol factory."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        decide: Decide,
        idle_timeout: float,
        limit: int | None = None,
    ) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self._decide, self._idle_timeout = decide, idle_timeout
        self.limit = connection_limit() if limit is None else limit
        self.guard: ConnectionGuard | None = None
        self.lane: ProbeLane | None = None
        self._adopting: set[asyncio.Task[object]] = set()
        self._servers: list[asyncio.Server] = []

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        lane_limit = max(MIN_LANE_CONNECTIONS, self.limit // 4)
        self.guard = ConnectionGuard(server, self.limit - lane_limit)
        loop = asyncio.get_running_loop()
        listeners = await listening_sockets(self._host, self._port, self._backlog)

        def hand_off(sock: socket.socket) -> None:  # in the lane's thread
            loop.call_soon_threadsafe(self._adopt, sock)

        self._servers = [await loop.create_server(self.guard, sock=sock, backlog=self._backlog) for sock in listeners]
        self.lane = ProbeLane(listeners, self._decide, hand_off, self._idle_timeout, lane_limit)
        self.lane.start()

    async def stop(self) -> None:
        if self.lane is not None:
            self.lane.stop()  # a few milliseconds: the thread only waits in select
        await asyncio.sleep(0)  # the hand-offs it queued before it stopped
        # Adopted before aiohttp's shutdown, which closes the connections it has.
        await asyncio.gather(*self._adopting, return_exceptions=True)
        for server in self._servers:  # closes the listening sockets
            server.close()
        await super().stop()

    def _adopt(self, sock: socket.socket) -> None:
        """A connection the lane gave away, its request unread: aiohttp's, through the guard."""
        assert self.guard is not None
        loop = asyncio.get_running_loop()
        task: asyncio.Task[object] = loop.create_task(loop.connect_accepted_socket(self.guard, sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopted)

    def _adopted(self, task: asyncio.Task[object]) -> None:
        self._adopting.discard(task)
        if not task.cancelled() and task.exception() is not None:  # the client left first: asyncio closed it
            log.debug("http_connection_not_adopted", error=str(task.exception()))


async def listening_sockets(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bound and listening, one per address of `host`, as asyncio's create_server makes them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio: an IPv6 socket beside the IPv4 one, not over it
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
