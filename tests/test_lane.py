"""The probes' lane: a group's endpoint answered from a thread, the same bytes
as aiohttp's handler, everything else handed to aiohttp untouched."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from aiohttp import web

from probed import scheduler
from probed.connections import GuardedSite
from probed.lane import Probe, ProbeLane, parse_probe
from probed.model import Status
from tests.support.daemon import DISKS, Running, daemon, failed, passed
from tests.support.net import free_port

GROUPS = {"storage": ["root", "scratch"]}


@dataclass
class Sites:
    running: Running
    aiohttp_port: int  # aiohttp's own TCPSite: what the handlers send
    lane_port: int  # a ProbeLane alone on its socket, handing off to the same aiohttp server
    lane: ProbeLane


@asynccontextmanager
async def both_sites(idle_timeout: float = 15.0, limit: int = 64) -> AsyncIterator[Sites]:
    """One app, served by aiohttp's own site and by a lane alone on its socket
    (in `probed serve` the loop takes connections too: GuardedSite)."""
    running = daemon(DISKS, groups=GROUPS)
    runner = web.AppRunner(running.app, access_log=None, handle_signals=False)
    await runner.setup()
    plain = free_port()
    await web.TCPSite(runner, "127.0.0.1", plain).start()
    listener = socket.create_server(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    adopting: set[asyncio.Task[object]] = set()

    def adopt(sock: socket.socket) -> None:
        assert runner.server is not None
        task: asyncio.Task[object] = loop.create_task(loop.connect_accepted_socket(runner.server, sock))
        adopting.add(task)

    def hand_off(sock: socket.socket) -> None:
        loop.call_soon_threadsafe(adopt, sock)

    lane = ProbeLane([listener], running.daemon.group_answer, hand_off, idle_timeout, limit)
    lane.start()
    try:
        yield Sites(running, plain, listener.getsockname()[1], lane)
    finally:
        lane.stop()
        listener.close()
        await runner.cleanup()


def exchange(port: int, *requests: bytes) -> bytes:
    """Send the requests on one connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(requests))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def without_date(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"Date: "))


# Last on a kept-alive connection: the server closes after it.
CLOSE = b"GET /health/live HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n"
REQUESTS = [  # each on a connection of its own; a kept-alive one then asks CLOSE
    (b"GET /health/%s HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n", False),
    (b"GET /health/%s HTTP/1.1\r\nHost: probed\r\nUser-Agent: kube-probe/1.31\r\nAccept: */*\r\n\r\n", True),
    (b"HEAD /health/%s HTTP/1.1\r\nhost: probed\r\n\r\n", True),
    (b"GET /health/%s HTTP/1.0\r\n\r\n", False),
    (b"GET /health/%s HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", True),
    (b"HEAD /health/%s HTTP/1.0\r\n\r\n", False),
]


async def test_the_lane_answers_every_group_as_aiohttp_does() -> None:
    async with both_sites() as sites:
        store = sites.running.store

        def make_pass() -> None:
            store.record("root", passed())
            store.record("scratch", passed())

        states = {
            "pending": lambda: None,
            "pass": make_pass,
            "warn": lambda: store.record("scratch", failed()),  # not critical: ready warns
            "fail": lambda: store.record("root", failed()),
            "draining": store.drain,
        }
        seen = set()
        for state, make in states.items():
            make()
            for group in ("live", "ready", "startup", "storage"):
                for request, kept in REQUESTS:
                    asked = (request % group.encode(), CLOSE) if kept else (request % group.encode(),)
                    ours = await asyncio.to_thread(exchange, sites.lane_port, *asked)
                    theirs = await asyncio.to_thread(exchange, sites.aiohttp_port, *asked)
                    assert without_date(ours) == without_date(theirs), (state, asked)
                    seen.add(ours.split(b"\r\n")[0])
        # The first request of each connection is the lane's; a kept-alive one then moves to aiohttp.
        assert sites.lane.answered == len(states) * 4 * len(REQUESTS)
        assert sites.lane.handed_off == len(states) * 4 * sum(kept for _, kept in REQUESTS)
        assert {b"HTTP/1.1 200 OK", b"HTTP/1.1 503 Service Unavailable", b"HTTP/1.0 200 OK"} <= seen


HANDED_OFF = [
    b"GET /health HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /metrics HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/ready?verbose HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/ready?exclude=root HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"POST /health/ready HTTP/1.1\r\nHost: probed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"GET /health/ready HTTP/1.1\r\nHost: probed\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    b"GET /health/ready HTTP/1.1\r\nConnection: close\r\n\r\n",  # no Host: aiohttp's 400
    b"GET /health/ready HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    b"GET /health/ready HTTP/1.1\r\nHost: probed\r\nBad header\r\nConnection: close\r\n\r\n",
    b"GET /health/ready HTTP/1.1\r\nHost: probed\r\n folded: line\r\nConnection: close\r\n\r\n",
    b"GET /health/nosuchgroup HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/checks/root HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/ready/ HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/%72eady HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"GET /health/ready HTTP/2.0\r\nHost: probed\r\nConnection: close\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
    b"GET /health/ready HTTP/1.1\r\nHost: probed\r\n" + b"X: v\r\n" * 128 + b"Connection: close\r\n\r\n",
]


async def test_every_other_request_is_aiohttps_untouched() -> None:
    async with both_sites() as sites:
        sites.running.store.record("root", passed())
        for asked in HANDED_OFF:
            ours = await asyncio.to_thread(exchange, sites.lane_port, asked)
            theirs = await asyncio.to_thread(exchange, sites.aiohttp_port, asked)
            assert ours.split(b"\r\n")[0] == theirs.split(b"\r\n")[0], asked
            if b"/metrics" not in asked and b"GET /health " not in asked:  # bodies that change from one ask to the next
                assert without_date(ours) == without_date(theirs), asked
        assert (sites.lane.answered, sites.lane.handed_off) == (0, len(HANDED_OFF))


async def test_a_kept_alive_connection_moves_to_aiohttp_after_its_first_answer() -> None:
    probe = b"GET /health/ready HTTP/1.1\r\nHost: probed\r\n\r\n"
    metrics = b"GET /metrics HTTP/1.1\r\nHost: probed\r\n\r\n"
    async with both_sites() as sites:
        sites.running.store.record("root", passed())
        # Pipelined in one write: each answered in order, the first by the lane, the rest by aiohttp.
        answers = await asyncio.to_thread(exchange, sites.lane_port, probe, probe, metrics, probe, CLOSE)
        firsts = [chunk.split(b"\r\n")[0] for chunk in answers.split(b"HTTP/1.1 ")[1:]]
        assert firsts == [b"200 OK"] * 5
        assert b"probed_ready 1.0" in answers
        assert (sites.lane.answered, sites.lane.handed_off) == (1, 1)


async def test_a_kept_alive_probe_whose_client_closes_never_reaches_the_loop() -> None:
    async with both_sites() as sites:
        with socket.create_connection(("127.0.0.1", sites.lane_port), timeout=5) as client:
            client.sendall(b"GET /health/live HTTP/1.1\r\nHost: probed\r\n\r\n")  # kept alive, as http.client asks
            assert client.recv(4096).startswith(b"HTTP/1.1 200 OK")
            await asyncio.sleep(0.05)
            assert sites.lane.held == 1
        for _ in range(100):  # the lane sees the close
            if sites.lane.held == 0:
                break
            await asyncio.sleep(0.01)
        assert (sites.lane.held, sites.lane.answered, sites.lane.handed_off) == (0, 1, 0)


async def test_a_probe_is_answered_while_the_event_loop_computes() -> None:
    async with both_sites() as sites:
        sites.running.store.record("root", passed())
        answered = threading.Event()
        answers: list[bytes] = []

        def ask() -> None:
            answers.append(exchange(sites.lane_port, b"GET /health/ready HTTP/1.0\r\n\r\n"))
            answered.set()

        threading.Thread(target=ask).start()
        deadline = time.monotonic() + 10
        while not answered.is_set() and time.monotonic() < deadline:  # the loop never yields meanwhile
            sum(range(1000))
        assert answered.is_set(), "the probe waited for the event loop"
        assert answers[0].startswith(b"HTTP/1.0 200 OK")


async def test_liveness_fails_while_the_event_loop_is_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "LIVENESS_GRACE", 1.5)
    async with both_sites() as sites:
        await asyncio.sleep(0.2)  # the watchdog's first heartbeat
        before = await asyncio.to_thread(exchange, sites.lane_port, b"GET /health/live HTTP/1.0\r\n\r\n")
        answers: list[bytes] = []

        def ask_later() -> None:
            time.sleep(3)
            answers.append(exchange(sites.lane_port, b"GET /health/live HTTP/1.0\r\n\r\n"))

        asker = threading.Thread(target=ask_later)
        asker.start()
        time.sleep(4)  # the loop is stuck: no heartbeat for longer than the grace
        asker.join()
        assert before.startswith(b"HTTP/1.0 200 OK")
        assert answers[0].startswith(b"HTTP/1.0 503 Service Unavailable")
        assert b"scheduler failed" in answers[0]


async def test_connections_awaiting_their_first_request_are_bounded_by_the_idle_timeout_and_the_cap() -> None:
    async with both_sites(idle_timeout=0.5, limit=2) as sites:
        lane = sites.lane
        clients: list[socket.socket] = []
        try:
            for _ in range(3):  # connected, nothing sent yet
                clients.append(socket.create_connection(("127.0.0.1", sites.lane_port), timeout=5))
            assert await asyncio.to_thread(clients[0].recv, 4096) == b""  # the cap closed the oldest
            assert lane.held == 2
            for client in clients[1:]:  # then the idle timeout the others
                assert await asyncio.to_thread(client.recv, 4096) == b""
            assert lane.held == 0
        finally:
            for client in clients:
                client.close()


async def test_probed_serves_probes_from_both_hands_and_stops_listening_when_it_stops() -> None:
    """GuardedSite, as `probed serve` listens: the loop and the lane take
    connections from the same socket; either way the answer is the same."""
    running = daemon(DISKS, groups=GROUPS)
    running.store.record("root", passed())
    runner = web.AppRunner(running.app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    site = GuardedSite(runner, "127.0.0.1", port, running.daemon.group_answer, 15.0)
    await site.start()
    try:
        probe = b"GET /health/ready HTTP/1.1\r\nHost: probed\r\nConnection: close\r\n\r\n"
        answers = {without_date(await asyncio.to_thread(exchange, port, probe)) for _ in range(40)}
        assert len(answers) == 1 and next(iter(answers)).startswith(b"HTTP/1.1 200 OK")
        metrics = await asyncio.to_thread(exchange, port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert b"probed_ready 1.0" in metrics
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET /health/live HTTP/1.1\r\nHost: probed\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200 OK")
    finally:
        await runner.cleanup()
    assert await asyncio.to_thread(client.recv, 4096) == b""  # whichever hand held it closed it
    client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize(
    ("head", "probe"),
    [
        (b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n", Probe("ready", False, 1, True)),
        (b"HEAD /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Probe("live", True, 1, False)),
        (b"GET /health/my.group-2 HTTP/1.0\r\n\r\n", Probe("my.group-2", False, 0, False)),
        (b"GET /health/ready HTTP/1.0\r\nConnection: keep-alive, TE\r\n\r\n", Probe("ready", False, 0, True)),
        (b"GET /health/ready HTTP/1.1\r\nHost:x\r\nX-Empty:\r\nX: a b \r\n\r\n", Probe("ready", False, 1, True)),
        (b"get /health/ready HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET  /health/ready HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.1\r\nHost : x\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", None),
        (b"GET /health/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET http://x/health/ready HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"GET /health/ready HTTP/1.0\r\n" + b"X: v\r\n" * 128 + b"\r\n", Probe("ready", False, 0, False)),
        (b"GET /health/ready HTTP/1.0\r\n" + b"X: v\r\n" * 129 + b"\r\n", None),  # aiohttp: too many headers
        (b"GET /health/ready HTTP/1.0\r\nX: " + b"v" * 8187 + b"\r\n\r\n", Probe("ready", False, 0, False)),
        (b"GET /health/ready HTTP/1.0\r\nX: " + b"v" * 8188 + b"\r\n\r\n", None),  # a line over 8190 bytes
    ],
)
def test_what_the_lane_takes_for_a_probe(head: bytes, probe: Probe | None) -> None:
    assert parse_probe(head) == probe


def test_a_probe_answer_says_what_the_store_decided() -> None:
    running = daemon(DISKS)
    running.store.record("root", passed())
    assert running.daemon.group_answer("ready") is not None
    assert running.daemon.group_answer("nosuchgroup") is None
    answer = running.daemon.group_answer("ready")
    assert answer is not None and answer.status is Status.PASS
