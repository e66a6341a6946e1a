"""Servers of the tests' own for the websocket, udp and icmp checks: an aiohttp
WebSocket app (in the test's loop, or in a process of its own that a test can
pause), an asyncio UDP echo, network namespaces of the icmp tests' own (their
loopback answering, ignoring or dropping echoes, sysctls and iptables rules of
their own) with checks run inside them as root or as nobody, and the socket
counts that prove a run leaves nothing behind. (Kept in one file so they can
move as a whole.)

`python -m tests.servers_websocket_udp_icmp PORT [CERT KEY]` serves the
WebSocket app on 127.0.0.1:PORT until terminated; `... udp PORT` the UDP echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import pickle
import shutil
import socket
import ssl
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aiohttp import WSMsgType, web

from probed.checks.http_client import basic_authorization
from tests.harness import PASSWORD, ServerProcess, port_open, wait_until
from tests.servers import free_port

if TYPE_CHECKING:
    from probed.model import Result

T = TypeVar("T")
WS_TOKEN = "ws-s3cret-token-value"  # the X-Api-Key /private wants
WS_SUBPROTOCOL = "probe.v1"


def websocket_app() -> web.Application:
    """A WebSocket dependency with every behaviour the websocket check must judge."""

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=(WS_SUBPROTOCOL,))  # answers pings itself (autoping)
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    async def slow(request: web.Request) -> web.WebSocketResponse:
        """Waits ?seconds= before its 101 answer, then echoes: a slow upgrade."""
        await asyncio.sleep(float(request.query.get("seconds", "0")))
        return await echo(request)

    async def greet(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("welcome, probe")
        async for _ in ws:
            pass
        return ws

    async def wrong(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(f"nope, not {message.data[::-1]}")
        return ws

    async def chatty(request: web.Request) -> web.WebSocketResponse:
        """Pings the client and pushes news before its pong: the check must see past both."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.ping(b"server-ping")
        await ws.send_str("news")
        async for _ in ws:
            pass
        return ws

    async def no_pong(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # receives pings, answers none
        await ws.prepare(request)
        async for _ in ws:
            pass
        return ws

    async def close_at_once(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close(code=1011, message=b"going away")
        return ws

    async def big(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("x" * 100_000)
        async for _ in ws:
            pass
        return ws

    async def private(request: web.Request) -> web.StreamResponse:
        """Lets in the X-Api-Key WS_TOKEN or probe's Basic login, then says the
        credential back: a server that echoes a secret."""
        credential = request.headers.get("X-Api-Key") or request.headers.get("Authorization", "")
        if credential not in (WS_TOKEN, basic_authorization("probe", PASSWORD)):
            return web.Response(status=401, text="who are you")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello, {credential}")
        async for _ in ws:
            pass
        return ws

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database exploded")

    app = web.Application()
    for path, handler in [
        ("/echo", echo),
        ("/slow", slow),
        ("/greet", greet),
        ("/wrong", wrong),
        ("/chatty", chatty),
        ("/no-pong", no_pong),
        ("/close", close_at_once),
        ("/big", big),
        ("/private", private),
        ("/error", error),
    ]:
        app.router.add_get(path, handler)
    return app


class WebsocketServer(ServerProcess):
    """websocket_app() in a process of its own, so tests can stop and pause it."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        tls = [str(path) for path in self.tls] if self.tls else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.servers_websocket_udp_icmp", str(self.port), *tls],
            cwd=Path(__file__).parent.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"WebSocket server on port {self.port}")


# -- UDP ----------------------------------------------------------------------------------

UDP_GARBAGE = b"\x00\xff\xfe garbage \x07"


class _Answering(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the selector's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def udp_echo(data: bytes) -> bytes:
    return data


@contextlib.asynccontextmanager
async def udp_server(answer: Callable[[bytes], bytes | None], host: str = "127.0.0.1") -> AsyncIterator[int]:
    """An asyncio UDP server in the test's loop that answers each datagram with
    answer(datagram) (None: no reply, a silent server); yields its port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Answering(answer), local_addr=(host, 0))
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def udp_closed_port() -> int:
    """A UDP port nothing listens on: a datagram to it draws an ICMP port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def udp_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.connect(("127.0.0.1", port))
        sock.send(b"ready?")
        try:
            return sock.recv(64) == b"ready?"
        except OSError:  # no reply yet, or refused: not listening yet
            return False


class UdpEchoServer(ServerProcess):
    """udp_server(udp_echo) in a process of its own, so tests can stop and pause it."""

    def __init__(self) -> None:
        self.port = udp_closed_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.servers_websocket_udp_icmp", "udp", str(self.port)],
            cwd=Path(__file__).parent.parent,
        )
        wait_until(lambda: udp_answers(self.port), f"UDP echo on port {self.port}")


async def _serve_udp(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Answering(udp_echo), local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


# -- socket counts ------------------------------------------------------------------------


def own_sockets(tables: tuple[str, ...], port: int | None = None) -> int:
    """This process's sockets listed in /proc/thread-self/net/<table> (the
    calling thread's network namespace), to remote `port` when given."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the directory's own descriptor, gone by now
            inodes.add(os.readlink(f"/proc/self/fd/{fd}"))
    count = 0
    for table in tables:
        with contextlib.suppress(FileNotFoundError), open(f"/proc/thread-self/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (port is None or remote_port == port) and f"socket:[{fields[9]}]" in inodes:
                    count += 1
    return count


async def sockets_after_runs(
    options: dict[str, Any], tables: tuple[str, ...], port: int | None = None, runs: int = 20
) -> int:
    """Run a check `runs` times (each must fail); this process's sockets then
    left in /proc/thread-self/net/<tables>, to remote `port` when given."""
    from probed.model import Status
    from probed.runner import run_once
    from tests.conftest import check_from

    check = check_from(options)
    try:
        for _ in range(runs):
            result = await run_once(check)
            assert result.status is Status.FAIL, result.output
    finally:
        await check.close()
    for _ in range(3):  # the callbacks a cancelled run's end scheduled
        await asyncio.sleep(0)
    return own_sockets(tables, port)


# -- network namespaces for the icmp check --------------------------------------------------

NOBODY = 65534
ICMP_TABLES = ("icmp", "icmp6", "raw", "raw6")  # the datagram and raw sockets of /proc/net
_CLONE_NEWNET = 0x40000000


def namespaces_usable() -> str | None:
    """Why the tests cannot make network namespaces here; None when they can."""
    if os.geteuid() != 0:
        return "network namespaces of the tests' own need root"
    if shutil.which("ip") is None:
        return "ip (iproute2) is not installed: scripts/install-test-deps.sh"
    return None


@contextlib.contextmanager
def netns(sysctls: dict[str, str], rules: tuple[tuple[str, ...], ...] = ()) -> Iterator[str]:
    """A network namespace of its own with its loopback up (127.0.0.1 and ::1),
    these sysctls (per namespace: ping_group_range, echo_ignore_all) and these
    iptables/ip6tables rules; yields its name, deletes it afterwards."""
    name = f"probed-test-{os.getpid()}-{next(_NAMESPACES)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        for key, value in sysctls.items():
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", f"{key}={value}"], check=True)
        for rule in rules:
            subprocess.run(["ip", "netns", "exec", name, *rule], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


_NAMESPACES = itertools.count()


def in_netns(name: str, work: Callable[[], T], user: int | None = None) -> T:
    """work() in a forked child that entered namespace `name` (and became
    uid/gid `user` with no groups and no capabilities, when given); its return
    value, or the child's traceback as an AssertionError."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: never back into pytest
        os.close(read)
        try:
            with open(f"/run/netns/{name}") as namespace:
                if ctypes.CDLL(None, use_errno=True).setns(namespace.fileno(), _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            if user is not None:
                os.setgroups([])
                os.setresgid(user, user, user)
                os.setresuid(user, user, user)  # drops every capability
            answer: tuple[bool, Any] = (True, work())
        except BaseException:
            answer = (False, traceback.format_exc())
        with os.fdopen(write, "wb") as out:
            pickle.dump(answer, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as given:
        data = given.read()
    os.waitpid(child, 0)
    ok, value = pickle.loads(data)
    if not ok:
        raise AssertionError(f"in namespace {name}:\n{value}")
    return cast(T, value)


def icmp_runs(options: dict[str, Any], runs: int = 1) -> tuple[list[Result], int]:
    """Run an icmp check `runs` times (created here, so in the caller's
    namespace and privileges): the results, and this process's ICMP sockets left."""
    from probed.runner import run_once
    from tests.conftest import check_from

    async def go() -> list[Result]:
        check = check_from(options)
        try:
            return [await run_once(check) for _ in range(runs)]
        finally:
            await check.close()

    results = asyncio.run(go())
    return results, own_sockets(ICMP_TABLES)


# -- serving the WebSocket app in a process ------------------------------------------------


async def _serve(port: int, context: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(websocket_app(), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    if argv[0] == "udp":
        asyncio.run(_serve_udp(int(argv[1])))
        return
    context = None
    if len(argv) == 3:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(argv[1], argv[2])
    asyncio.run(_serve(int(argv[0]), context))


if __name__ == "__main__":
    main(sys.argv[1:])
