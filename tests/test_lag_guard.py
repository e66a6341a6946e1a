"""The lag guard: no check of any type (tests/every_type.py) holds the event
loop's thread for more than 20 ms at a stretch, healthy or against a server
that hangs, closes at once or sends garbage.

What is judged is CPU time, not wall time. A sampler wakes every 5 ms and
reads the loop thread's CPU clock (time.thread_time); the CPU that thread
spent between two wake-ups is what a callback took without yielding. The
wall-clock lag of the same wake-ups (or of the loop's turns, what
probed_event_loop_lag_seconds exports) also grows when the machine is
loaded, another process or one of the test's own server threads holding
the core or the GIL, so on a shared machine it would measure the machine,
not probed. The CPU time of the one
thread grows only with work done on it: a check that builds an SSL context,
imports a driver or parses a large reply inside a run shows at any load,
and nothing else does.

A check is created before the sampler starts: creation is where that work
belongs (issue 16, item 1). Its runs and its close are judged. The test
process's heap is frozen out of the garbage collector first: a full
collection over everything the earlier tests left (100 ms and more) would
be charged to whichever check ran when it struck.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest

from probed.runner import run_once
from tests.support.apps import app_in_thread, target_app
from tests.support.checks import check_from
from tests.support.every_type import AT_PORT, DATAGRAM, LOCAL, Options
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import udp_closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.dnsmasq import DnsServer
from tests.support.servers.health_grpc import GrpcServer
from tests.support.servers.memcached import MemcachedServer
from tests.support.servers.mosquitto import MosquittoServer
from tests.support.servers.nats import NatsServer
from tests.support.servers.redis import RedisServer
from tests.support.servers.slapd import LDAP_USER
from tests.support.servers.smtp import SmtpServer
from tests.support.servers.sshd import SSH_USER
from tests.support.servers.udp_echo import UdpEchoServer
from tests.support.servers.websocket import WebsocketServer

SAMPLE = 0.005  # seconds between the sampler's wake-ups
LIMIT = 0.020  # seconds of the loop thread's CPU allowed between two of them
RUNS = 3  # a first run and later ones: each may do different work
GARBAGE = b"\x00\xff garbage\r\n" * 3

FAULTS: dict[str, Callable[[], AbstractContextManager[int]]] = {
    "hangs": silent_listener,
    "closes at once": lambda: answering_listener(b""),
    "sends garbage": lambda: answering_listener(GARBAGE),
}


class BusiestStretch:
    """A sampler waking every SAMPLE, keeping the most CPU the loop's thread spent between two wake-ups."""

    def __init__(self) -> None:
        self.busiest = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        busy_since = time.thread_time()
        while True:
            await asyncio.sleep(SAMPLE)
            now_busy = time.thread_time()
            self.busiest = max(self.busiest, now_busy - busy_since)
            busy_since = now_busy


async def busiest_stretch(options: Options) -> float:
    """Create the check, then run it RUNS times and close it under the sampler:
    the longest stretch of CPU the loop's thread spent without a wake-up."""
    check = check_from(options)
    sampler = BusiestStretch()
    gc.collect()
    gc.freeze()
    sampler.start()
    try:
        await asyncio.sleep(2 * SAMPLE)  # the sampler is waiting on its timer
        for _ in range(RUNS):
            await run_once(check)
    finally:
        await check.close()
        await asyncio.sleep(2 * SAMPLE)  # the stretch that holds the close ends with a wake-up
        await sampler.stop()
        gc.unfreeze()
    return sampler.busiest


def served(stack: ExitStack, server: Any) -> Any:
    server.start()
    stack.callback(server.stop)
    return server


def healthy(type_name: str, stack: ExitStack, work: Path, request: pytest.FixtureRequest) -> Options:
    """A check of the type against a real server that answers as it should.
    Servers run in processes or threads of their own: their CPU is not the loop thread's."""
    if type_name in LOCAL:
        return LOCAL[type_name]()
    if type_name == "http":
        return {"type": "http", "url": f"{stack.enter_context(app_in_thread(target_app()))}/ok"}
    if type_name == "postgres":
        return {"type": "postgres", "dsn": request.getfixturevalue("postgres").dsn()}
    if type_name == "mysql":
        return {"type": "mysql", "dsn": request.getfixturevalue("mariadb").dsn()}
    if type_name == "amqp":
        return {"type": "amqp", "url": request.getfixturevalue("rabbitmq").url()}
    if type_name == "s3":
        s3 = request.getfixturevalue("s3_server")
        return {**AT_PORT["s3"](0), "endpoint_url": s3.endpoint}
    if type_name in ("redis", "tcp", "tls"):
        return redis_options(type_name, stack, work, request)
    return served_options(type_name, stack, work, request)


def redis_options(type_name: str, stack: ExitStack, work: Path, request: pytest.FixtureRequest) -> Options:
    """redis, and tcp and tls against it (PING answers +PONG; a TLS redis a handshake)."""
    if type_name == "tls":
        certificate = request.getfixturevalue("tls_certificate")
        server = served(stack, RedisServer(work / "redis-tls", tls=(certificate.cert_file, certificate.key_file)))
        return {"type": "tls", "host": "127.0.0.1", "port": server.port, "ca_file": str(certificate.cert_file)}
    server = served(stack, RedisServer(work / "redis"))
    if type_name == "tcp":
        return {**AT_PORT["tcp"](server.port), "expect": "PONG"}
    return {"type": "redis", "url": server.url()}


def served_options(type_name: str, stack: ExitStack, work: Path, request: pytest.FixtureRequest) -> Options:
    if type_name == "ldap":
        slapd = request.getfixturevalue("slapd")
        return {**AT_PORT["ldap"](slapd.port), "username": LDAP_USER, "password": PASSWORD}
    if type_name == "ssh":
        sshd = request.getfixturevalue("sshd")
        login = {"username": SSH_USER, "password": PASSWORD, "known_hosts": str(sshd.known_hosts())}
        return {**AT_PORT["ssh"](sshd.port), **login}
    if type_name == "dns":
        dns = DnsServer(work / "dns")
        dns.start({"probe.test": ["192.0.2.10"]})
        stack.callback(dns.stop)
        return AT_PORT["dns"](dns.port)
    if type_name == "udp":
        return DATAGRAM["udp"](served(stack, UdpEchoServer()).port)
    servers: dict[str, Callable[[], Any]] = {
        "smtp": SmtpServer,
        "nats": lambda: NatsServer(work / "nats"),
        "mqtt": lambda: MosquittoServer(work / "mqtt"),
        "grpc": GrpcServer,
        "memcached": lambda: MemcachedServer(work / "memcached"),
        "websocket": WebsocketServer,
    }
    return AT_PORT[type_name](served(stack, servers[type_name]()).port)


ALL_TYPES = [*AT_PORT, *DATAGRAM, *LOCAL]


@pytest.mark.parametrize("type_name", ALL_TYPES)
async def test_a_healthy_check_never_holds_the_loop(
    type_name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with ExitStack() as stack:
        options = {**healthy(type_name, stack, tmp_path, request), "timeout": "5s", "interval": "10s"}
        busiest = await busiest_stretch(options)
    assert busiest <= LIMIT, f"{type_name} held the loop's thread for {busiest * 1000:.1f} ms of CPU"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type_name", AT_PORT)
async def test_a_failing_check_never_holds_the_loop(type_name: str, fault: str) -> None:
    with FAULTS[fault]() as port:
        options = {**AT_PORT[type_name](port), "timeout": "100ms", "interval": "1s"}
        busiest = await busiest_stretch(options)
    assert busiest <= LIMIT, f"{type_name} ({fault}) held the loop's thread for {busiest * 1000:.1f} ms of CPU"


async def test_a_udp_check_with_no_answer_never_holds_the_loop() -> None:
    options = {**DATAGRAM["udp"](udp_closed_port()), "timeout": "100ms", "interval": "1s"}
    assert await busiest_stretch(options) <= LIMIT


async def test_the_guard_sees_a_check_that_holds_the_loop() -> None:
    """The guard can fail: CPU work on the loop that does not yield (what a
    context built inside a run would be) is seen."""
    sampler = BusiestStretch()
    sampler.start()
    try:
        await asyncio.sleep(2 * SAMPLE)
        spin_until = time.thread_time() + 3 * LIMIT
        while time.thread_time() < spin_until:
            pass
        await asyncio.sleep(2 * SAMPLE)
    finally:
        await sampler.stop()
    assert sampler.busiest > LIMIT
