"""The event loop probed runs on: asyncio's own, timing its turns, with one
fault of CPython 3.11 mended.

Each turn of the loop runs every callback that is ready, then selects again;
an event that arrives meanwhile (a probe's connection, a check's reply, a
timer) waits for the turn to end. The selector times each turn, from one
select's return to the next select, and hands it to whoever listens
(probed/lag.py): the loop's lag is known without a timer that wakes it.

In 3.11 every socket transport keeps a bound method of itself
(`_read_ready_cb`) after it closes, so each connection probed makes or
accepts (a check's, a probe's) ends as a reference cycle that only the
garbage collector frees (CPython gh-100348, fixed in 3.12). At 2,000 checks
that is thousands of dead transports a minute, and they keep the collector's
full passes, which pause every probe, frequent and long. Breaking the cycle
when the connection is lost lets reference counting free the transport at
once, as 3.12 does.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from asyncio import selector_events
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

Result = TypeVar("Result")

NEEDS_MENDING = sys.version_info < (3, 12)  # 3.12 releases the callback on close itself


class _Transport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined,misc]
    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            super()._call_connection_lost(exc)
        finally:
            self._read_ready_cb = None  # the bound method that held the transport in a cycle


Turn = Callable[[float, float], None]  # (seconds the turn took, when it ended: time.monotonic())


class TurnTimer(selectors.DefaultSelector):
    """The loop's selector, telling `on_turn` how long each turn took: two
    clock readings a turn, against a wake of the loop a timer would cost."""

    def __init__(self) -> None:
        super().__init__()
        self.on_turn: Turn | None = None
        self._woke = time.monotonic()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        on_turn = self.on_turn
        if on_turn is not None:
            now = time.monotonic()
            on_turn(now - self._woke, now)
        ready: list[tuple[selectors.SelectorKey, int]] = super().select(timeout)
        self._woke = time.monotonic()
        return ready


class Loop(asyncio.SelectorEventLoop):
    """probed's loop: its selector times the turns (`turns`)."""

    def __init__(self) -> None:
        self.turns = TurnTimer()
        super().__init__(self.turns)

    def _make_socket_transport(
        self,
        sock: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> asyncio.Transport:
        if not NEEDS_MENDING:
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra, server=server)  # type: ignore[misc,no-any-return]
        transport: asyncio.Transport = _Transport(self, sock, protocol, waiter, extra, server)
        return transport


def new_loop() -> asyncio.AbstractEventLoop:
    return Loop()


def sound(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a connection on this loop ends without a reference cycle."""
    return not NEEDS_MENDING or isinstance(loop, Loop)


def run(main: Coroutine[Any, Any, Result]) -> Result:
    """asyncio.run on probed's loop."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
