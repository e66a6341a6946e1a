"""Checks built and run in the test's own process, through the real config
loader: the way most check tests drive a check type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import Config, parse_config
from probed.model import Result, Status
from probed.runner import run_once
from tests.support.net import TCP, sockets_left

# A disk check's levels turned off: it passes on any disk, however full.
NO_LEVELS: dict[str, Any] = {
    "warn_free_percent": None,
    "fail_free_percent": None,
    "warn_free_inodes_percent": None,
    "fail_free_inodes_percent": None,
}
NO_LEVELS_YAML = ", ".join(f"{option}: null" for option in NO_LEVELS)  # the same inside a YAML {...}


def disk_yaml(path: Path, **extra: str) -> str:
    """A disk check on `path` without levels, every second, as a YAML flow mapping."""
    options = "".join(f", {key}: {value}" for key, value in extra.items())
    return f"{{type: disk, path: '{path}', interval: 1s, timeout: 500ms, {NO_LEVELS_YAML}{options}}}"


def config_from(checks: dict[str, Any], **sections: Any) -> Config:
    """A Config built through the real YAML loader and validation."""
    return parse_config(yaml.safe_dump({**sections, "checks": checks}), "test.yaml")


def check_from(options: dict[str, Any], name: str = "t") -> AnyCheck:
    config = config_from({name: options})
    return create_check(name, config.checks[name])


async def run_check(options: dict[str, Any]) -> Result:
    check = check_from(options)
    try:
        return await run_once(check)
    finally:
        await check.close()


async def sockets_after_failing_runs(
    options: dict[str, Any], port: int | None, runs: int = 20, tables: tuple[str, ...] = TCP
) -> int:
    """Run a check `runs` times against a port where each run fails; the
    sockets it still holds then (to `port`, in /proc/thread-self/net/<tables>),
    before it is closed: a run, by any end, leaves none behind (a kept
    connection is counted too)."""
    check = check_from(options)
    try:
        for _ in range(runs):
            result = await run_once(check)
            assert result.status is Status.FAIL, result.output
        return await sockets_left(port, tables=tables)
    finally:
        await check.close()
