"""docs/openapi.yaml is the HTTP API: every route the app serves is in it, and
schemathesis, generating requests from it against a live `probed serve`,
finds no 5xx and no answer that disagrees with it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from probed.config import parse_config
from probed.daemon import Daemon
from probed.web import create_app
from tests.support.net import free_port
from tests.support.probed import serving

SPEC = Path(__file__).parent.parent / "docs" / "openapi.yaml"
TOKEN = "openapi-test-token"


def spec_paths() -> set[tuple[str, str]]:
    document = yaml.safe_load(SPEC.read_text())
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_every_route_is_documented_and_every_documented_path_is_served() -> None:
    config = parse_config("checks:\n  disk: {type: disk, path: /}\n", "t.yaml")
    app = create_app(Daemon(config))
    served = {
        (route.method, re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical))
        for route in app.router.routes()
        # aiohttp adds HEAD beside every GET; the catch-all ("*") answers 404 and 405 for the rest
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    assert served == spec_paths()


@pytest.fixture(scope="module")
def live_probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """probed serve with a passing, a failing and a non-critical check, a heartbeat
    check, details behind a token (the heartbeat's token too)."""
    directory = tmp_path_factory.mktemp("openapi")
    port = free_port()
    config = directory / "probed.yaml"
    config.write_text(
        f"""
server: {{listen: '127.0.0.1:{port}', details: token, token: {TOKEN}, exclusions_token: {TOKEN}}}
defaults: {{interval: 1s, timeout: 500ms}}
checks:
  disk: {{type: disk, path: '{directory}'}}
  missing: {{type: disk, path: '{directory}/missing', critical: false}}
  nightly-backup: {{type: heartbeat, ttl: 1h, token: {TOKEN}, critical: false}}
"""
    )
    with serving(config, until="ready") as served:
        yield served.base
    assert "Traceback" not in served.err


@pytest.mark.parametrize("authorization", ["none", "token", "wrong token"])
def test_api_answers_as_documented(live_probed: str, authorization: str, tmp_path: Path) -> None:
    headers = {
        "none": [],
        "token": ["-H", f"Authorization: Bearer {TOKEN}"],
        "wrong token": ["-H", "Authorization: Bearer x"],
    }[authorization]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            str(SPEC),
            "--url",
            live_probed,
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--seed",
            "1",
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # schemathesis keeps a cache in its working directory
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert TOKEN not in result.stdout
