"""The image's contract, run for real without Docker: its entrypoint, default
config and HEALTHCHECK command, exactly as the Dockerfile declares them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.net import free_port, poll
from tests.support.probed import serving

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instruction(name: str) -> str:
    """The argument of the last `NAME ...` instruction, continuation lines joined."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")][-1]


def exec_form(text: str) -> list[str]:
    value = json.loads(text)
    assert isinstance(value, list), f"use the exec form: {text}"
    return [str(v) for v in value]


def test_image_basics() -> None:
    assert re.match(r"\d+:\d+$", instruction("USER")) and not instruction("USER").startswith("0")
    assert instruction("EXPOSE") == "8080"
    assert "PROBED_CONFIG=/etc/probed/probed.yaml" in instruction("ENV")
    assert "COPY config/probed.container.yaml /etc/probed/probed.yaml" in DOCKERFILE
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!config/probed.container.yaml" in ignored


def test_entrypoint_serves_the_default_config_and_healthcheck_passes(tmp_path: Path) -> None:
    command = exec_form(instruction("ENTRYPOINT")) + exec_form(instruction("CMD"))
    healthcheck = exec_form(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
    assert command == ["probed", "serve"]
    port = free_port()
    env = {
        **os.environ,
        "PROBED_CONFIG": str(ROOT / "config" / "probed.container.yaml"),  # what /etc/probed/probed.yaml holds
        "PROBED_LISTEN": f"127.0.0.1:{port}",  # the image listens on 0.0.0.0:8080
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    probed = Path(sys.executable).parent / "probed"
    with serving(None, *command[2:], command=[str(probed)], env=env, until="ran", logs=tmp_path) as served:
        _, body = poll(f"{served.base}/health", lambda *_: True)
        assert set(json.loads(body)["checks"]) == {"root-disk", "tmp-writable"}
        # as declared: it follows PROBED_LISTEN through the config, so a moved port stays healthy
        check = subprocess.run([str(probed), *healthcheck[1:]], env=env, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stderr
    stopped = subprocess.run([str(probed), *healthcheck[1:]], env=env, capture_output=True, timeout=30)
    assert stopped.returncode == 1
