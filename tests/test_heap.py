"""The daemon freezes its heap out of the collector's sight (probed/heap.py),
only when nothing in flight can end in a reference cycle, and thaws it when
checks that may leave one are retired."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

import probed.loop
from probed.checks.http import HttpCheck
from probed.config import load_config
from probed.daemon import Daemon
from tests.support.checks import disk_yaml
from tests.support.daemon import wait_for_runs
from tests.support.faults import silent_listener


@pytest.fixture(autouse=True)
def thawed_after() -> Iterator[None]:
    yield
    gc.unfreeze()  # the test process's heap as other tests expect it
    gc.enable()


def on_probed_loop(path: Path, work: Callable[[Daemon], Awaitable[None]]) -> None:
    """Run a daemon of `path` on probed's own loop, its heap frozen every 0.1 s."""

    async def main() -> None:
        daemon = Daemon(load_config(str(path)), str(path), initial_offset=lambda check: 0.0)
        daemon.heap.first = daemon.heap.period = 0.1
        await daemon.start()
        try:
            await work(daemon)
        finally:
            await daemon.stop()

    probed.loop.run(main())


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def with_a_hanging_tcp_check(tmp_path: Path, port: int, timeout: str, **extra: str) -> Path:
    """A config of a disk check and a tcp check (a type that may leave cycles) to a silent port."""
    options = {"type": "tcp", "host": "127.0.0.1", "port": port, "interval": "10s", "timeout": timeout, **extra}
    tcp = "{" + ", ".join(f"{key}: {value}" for key, value in options.items()) + "}"
    path = tmp_path / "probed.yaml"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  line: {tcp}\n")
    return path


def test_the_heap_is_frozen_while_only_acyclic_runs_are_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "probed.yaml"
    with silent_listener() as port:
        # An http run that hangs for its whole timeout: in flight at every freeze.
        http = f"{{type: http, url: 'http://127.0.0.1:{port}/', interval: 2s, timeout: 1500ms}}"
        path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  web: {http}\n")

        async def work(daemon: Daemon) -> None:
            await until(lambda: daemon.heap.freezes >= 3)
            assert gc.get_freeze_count() > 0

        on_probed_loop(path, work)


def test_no_freeze_while_a_run_that_may_leave_a_cycle_is_in_flight(tmp_path: Path) -> None:
    with silent_listener() as port:
        path = with_a_hanging_tcp_check(tmp_path, port, "2s", send="hi", expect="ok")

        async def work(daemon: Daemon) -> None:
            await until(lambda: daemon.scheduler.cyclic_runs == 1)
            frozen = daemon.heap.freezes
            await asyncio.sleep(1.0)  # ten periods, the tcp run waiting for its answer all along
            assert daemon.scheduler.cyclic_runs == 1 and daemon.heap.freezes == frozen
            await until(lambda: daemon.scheduler.cyclic_runs == 0)
            await until(lambda: daemon.heap.freezes > frozen)  # once it ended, freezing goes on

        on_probed_loop(path, work)


def test_retiring_checks_that_may_leave_cycles_thaws_the_heap(tmp_path: Path) -> None:
    with silent_listener() as port:
        path = with_a_hanging_tcp_check(tmp_path, port, "200ms")

        async def work(daemon: Daemon) -> None:
            await wait_for_runs(daemon, ["a", "line"])
            await until(lambda: daemon.heap.freezes >= 1 and gc.get_freeze_count() > 0)
            daemon.heap.period = 3600.0  # no freeze between the reload and the look at the heap
            await asyncio.sleep(0.3)
            path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n")
            assert await daemon.reload() is True
            assert gc.get_freeze_count() == 0  # the tcp check's cycles are the collector's again

        on_probed_loop(path, work)


def test_what_a_reload_replaces_is_freed_without_the_collector(tmp_path: Path) -> None:
    # The store, the scheduler, the config and an http check (with its connector)
    # may be frozen when a reload drops them: none may be held by a cycle.
    path = tmp_path / "probed.yaml"
    web = "{type: http, url: 'http://127.0.0.1:9/%s', interval: 1s, timeout: 500ms}"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  web: {web % 'one'}\n")

    async def work(daemon: Daemon) -> None:
        await wait_for_runs(daemon, ["a", "web"])
        web_check = daemon.checks[1]
        assert isinstance(web_check, HttpCheck)
        replaced = [daemon.store, daemon.scheduler, daemon.config, web_check, web_check._client.connector]
        refs = [weakref.ref(thing) for thing in replaced]
        del replaced, web_check
        gc.disable()
        path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  web: {web % 'two'}\n")
        assert await daemon.reload() is True
        await wait_for_runs(daemon, ["web"])
        await asyncio.sleep(0.1)
        assert [ref() for ref in refs] == [None] * 5

    on_probed_loop(path, work)


def test_with_checks_that_may_leave_cycles_the_heap_is_thawed_on_schedule(tmp_path: Path) -> None:
    # A kept object a driver drops in a later run may be frozen by then: a
    # thaw now and then lets the collector see everything, so nothing leaks.
    with silent_listener() as port:
        path = with_a_hanging_tcp_check(tmp_path, port, "200ms")

        async def work(daemon: Daemon) -> None:
            daemon.heap.thaw_period = 0.3
            await until(lambda: daemon.heap.thaws >= 2 and daemon.heap.freezes >= 2)

        on_probed_loop(path, work)

    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n")  # acyclic only: never thawed on schedule

    async def acyclic_only(daemon: Daemon) -> None:
        daemon.heap.thaw_period = 0.1
        await until(lambda: daemon.heap.freezes >= 5)
        assert daemon.heap.thaws == 0

    on_probed_loop(path, acyclic_only)
