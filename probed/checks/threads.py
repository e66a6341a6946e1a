"""Blocking calls of a check, run in a thread pool one at a time.

A blocking call (statvfs on a dead NFS mount, boto3 on a silent endpoint) can
outlive the run that started it: the runner gives up at the timeout, the
thread does not. Starting another call beside it would pile up threads until
the pool is full for every check; instead the next run fails at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from probed.model import CheckFailed, Reason

T = TypeVar("T")


class OneAtATime(Generic[T]):
    def __init__(self, executor: ThreadPoolExecutor, still_busy: str) -> None:
        self._executor = executor
        self._still_busy = still_busy  # the failure message while the last call hangs
        self._pending: Future[T] | None = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        if self._pending is not None and not self._pending.done():
            raise CheckFailed(self._still_busy, Reason.TIMEOUT)
        self._pending = self._executor.submit(function, *args)
        return await asyncio.wrap_future(self._pending)
