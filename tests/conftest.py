from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import Config, parse_config
from probed.model import Result
from probed.runner import run_once
from tests.servers import serve_app, target_app


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


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """Base URL of a real local HTTP server with /ok, /error, /json, /slow, ..."""
    async with serve_app(target_app()) as url:
        yield url
