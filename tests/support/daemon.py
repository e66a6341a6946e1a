"""A Daemon in the test's own process, its app and registry not yet serving,
and the results tests put in its store by hand."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from probed.daemon import Daemon
from probed.metrics import create_registry
from probed.model import Observation, Reason, Result, Status
from probed.store import Store
from probed.web import create_app
from tests.support.checks import config_from

NEVER = 3600.0  # an initial offset that keeps a check pending for the whole test
DISKS = {"root": {"type": "disk", "path": "/"}, "scratch": {"type": "disk", "path": "/tmp", "critical": False}}


@dataclass
class Running:
    app: web.Application
    daemon: Daemon
    registry: CollectorRegistry

    @property
    def store(self) -> Store:
        return self.daemon.store


def daemon(checks: dict[str, Any], offset: float = NEVER, **sections: Any) -> Running:
    config = config_from(checks, **sections)
    probed = Daemon(config, initial_offset=lambda check: offset)
    registry = create_registry(probed)
    return Running(create_app(probed), probed, registry)


def passed(free_ratio: float = 0.5) -> Result:
    observed = {"free_ratio": Observation(free_ratio, "ratio"), "free_bytes": Observation(123456, "bytes")}
    return Result(Status.PASS, 1_700_000_000.0, 0.002, "/: 50% free", None, observed)


def failed() -> Result:
    return Result(Status.FAIL, 1_700_000_010.0, 0.5, "/: 1% free, below the fail level of 5%", Reason.UNEXPECTED)


async def wait_for_runs(daemon: Daemon, names: list[str]) -> None:
    """Until each of these checks has a result (about 5 s at most)."""
    for _ in range(100):
        if all(daemon.store.checks[name].last is not None for name in names):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{names} never ran")
