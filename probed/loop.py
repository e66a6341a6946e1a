"""The event loop probed runs on: asyncio's own, with one fault of CPython
3.11 mended.

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
import sys
from asyncio import selector_events
from collections.abc import Coroutine
from typing import Any, TypeVar

Result = TypeVar("Result")

NEEDS_MENDING = sys.version_info < (3, 12)  # 3.12 releases the callback on close itself


class _Transport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined,misc]
    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            super()._call_connection_lost(exc)
        finally:
            self._read_ready_cb = None  # the bound method that held the transport in a cycle


class _Loop(asyncio.SelectorEventLoop):
    def _make_socket_transport(
        self,
        sock: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> asyncio.Transport:
        transport: asyncio.Transport = _Transport(self, sock, protocol, waiter, extra, server)
        return transport


def new_loop() -> asyncio.AbstractEventLoop:
    return _Loop() if NEEDS_MENDING else asyncio.new_event_loop()


def sound(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a connection on this loop ends without a reference cycle."""
    return not NEEDS_MENDING or isinstance(loop, _Loop)


def run(main: Coroutine[Any, Any, Result]) -> Result:
    """asyncio.run on probed's loop."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
