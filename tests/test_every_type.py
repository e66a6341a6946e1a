"""Guards every check type meets, run from one table (tests/support/every_type.py),
so a new type is held to them as soon as it is registered: no socket
outlives a run, a server that closes at once is a fast failure, and a type
that says it leaves no reference cycle (`acyclic`) leaves none."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest
from aiohttp import web

import probed.loop
from probed.checks import TYPES, load_type
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.apps import serve_app, target_app
from tests.support.checks import check_from, run_check, sockets_after_failing_runs
from tests.support.every_type import AT_PORT, DATAGRAM, LOCAL
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import free_port
from tests.support.servers.websocket import websocket_app

GARBAGE = b"\x00\xff garbage\r\n" * 3

# Servers that misbehave, each a context manager giving its port.
FAULTS: dict[str, Callable[[], AbstractContextManager[int]]] = {
    "hangs": silent_listener,
    "closes at once": lambda: answering_listener(b""),
    "sends garbage": lambda: answering_listener(GARBAGE),
}


def test_every_type_has_an_entry() -> None:
    """A registered type missing from the table would escape every guard here."""
    assert set(TYPES) == set(AT_PORT) | set(DATAGRAM) | set(LOCAL), "add the type to tests/support/every_type.py"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type_name", AT_PORT)
async def test_no_socket_outlives_a_run(type_name: str, fault: str) -> None:
    """20 runs that fail by timeout, close or garbage: not one connection left to the port."""
    with FAULTS[fault]() as port:
        options = {**AT_PORT[type_name](port), "timeout": "100ms", "interval": "1s"}
        assert await sockets_after_failing_runs(options, port) == 0


@pytest.mark.parametrize("type_name", AT_PORT)
async def test_a_server_that_closes_at_once_is_a_fast_failure(type_name: str) -> None:
    """Never `timeout`: the server said something (by closing), and the verdict says what."""
    with answering_listener(b"") as port:
        result = await run_check({**AT_PORT[type_name](port), "timeout": "5s", "interval": "10s"})
    assert result.status is Status.FAIL
    assert result.reason in (Reason.ERROR, Reason.UNEXPECTED), result.output


# -- reference cycles (probed/heap.py freezes the heap only while the runs in
# flight are of types that leave none, `acyclic`) ------------------------------

ACYCLIC_AT_PORT = [name for name in AT_PORT if load_type(name).acyclic]
ACYCLIC_LOCAL = {name: make for name, make in LOCAL.items() if load_type(name).acyclic}
HEALTHY: dict[str, Callable[[str], dict[str, Any]]] = {  # given the base URL of the test's own app
    "http": lambda base: {"type": "http", "url": f"{base}/ok", "expect_body_contains": "good"},
    "websocket": lambda base: {"type": "websocket", "url": f"{base.replace('http', 'ws', 1)}/echo", "send": "hi"},
}


def cycles_left(options: dict[str, Any], app: web.Application | None = None, runs: int = 5) -> list[str]:
    """On probed's loop: what `runs` runs of a check and its close left in
    reference cycles (the collector's garbage), by type name."""

    async def measure(base: str) -> list[str]:
        check = check_from({**(HEALTHY[options["type"]](base) if app else options), "interval": "10s"})
        await run_once(check)  # the first run builds what the later ones reuse
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(runs):
                await run_once(check)
            await check.close()
            del check
            await asyncio.sleep(0.05)  # transports close on the next turns
            gc.collect()
            return sorted(type(thing).__qualname__ for thing in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    async def main() -> list[str]:
        if app is None:
            return await measure("")
        async with serve_app(app) as base:  # on the same loop: its connections count too
            return await measure(base)

    return probed.loop.run(main())


def test_the_acyclic_types_are_the_expected_ones() -> None:
    """A type that starts claiming `acyclic` is held to the tests below; one that stops is noticed."""
    acyclic = {name for name in TYPES if load_type(name).acyclic}
    assert acyclic == {"http", "websocket", "udp", "icmp", "disk", "file", "heartbeat"}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type_name", ACYCLIC_AT_PORT)
def test_an_acyclic_type_leaves_no_cycle_when_its_server_fails(type_name: str, fault: str) -> None:
    with FAULTS[fault]() as port:
        assert cycles_left({**AT_PORT[type_name](port), "timeout": "100ms"}) == []


@pytest.mark.parametrize("type_name", sorted(HEALTHY))
def test_an_acyclic_type_leaves_no_cycle_when_its_server_answers(type_name: str) -> None:
    app = target_app() if type_name == "http" else websocket_app()
    assert cycles_left({"type": type_name}, app) == []


@pytest.mark.parametrize(
    "options",
    [
        *(make() for make in ACYCLIC_LOCAL.values()),
        *(make(free_port()) for make in DATAGRAM.values()),  # nobody there: refused
        {"type": "file", "path": "/nonexistent/probed"},
    ],
    ids=lambda options: f"{options['type']}:{options.get('command') or options.get('path') or ''}",
)
def test_an_acyclic_local_type_leaves_no_cycle(options: dict[str, Any]) -> None:
    assert cycles_left(options) == []


def test_probed_loop_frees_a_closed_connection_without_the_collector() -> None:
    """CPython 3.11's transports keep a bound method of themselves after closing
    (gh-100348): on asyncio's own loop each connection ends as a cycle."""

    async def cycles_per_connection() -> int:
        with answering_listener(b"hello\r\n") as port:
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                for _ in range(3):
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    await reader.read()
                    writer.close()
                    await writer.wait_closed()
                del reader, writer
                await asyncio.sleep(0.01)
                gc.collect()
                return sum(1 for thing in gc.garbage if isinstance(thing, asyncio.Transport))
            finally:
                gc.set_debug(0)
                gc.garbage.clear()

    assert probed.loop.run(cycles_per_connection()) == 0
    if probed.loop.NEEDS_MENDING:  # the fault is real where the mending applies
        assert asyncio.run(cycles_per_connection()) == 3
