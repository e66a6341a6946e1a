"""The container image built from the Dockerfile and run for real with Podman:
read-only root with only /tmp writable, as user 65532, HEALTHCHECK healthy,
every endpoint answering, SIGTERM ending it with exit 0. Its core variant
(`--build-arg EXTRAS=core`, the sidecar's) too: small, the core types working
(s3 with botocore's trimmed service models), the others naming their extra.

Podman runs with runc (crun refuses these machines' mixed cgroup layout),
builds with --format docker (the OCI format drops HEALTHCHECK), and the
base image is a local stand-in when no registry can be reached
(scripts/standin-base-image.sh).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.net import free_port, http_get, poll
from tests.support.servers.s3 import S3Server

ROOT = Path(__file__).parent.parent
TAG = "localhost/probed:test"
CORE_TAG = "localhost/probed:test-core"
BASE = "python:3.11-slim"
CORE_MAX_ADDED_BYTES = 60e6  # README, "What a pod pays"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def build(tag: str, *args: str) -> str:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: run scripts/install-test-deps.sh")
    subprocess.run([str(ROOT / "scripts" / "standin-base-image.sh")], check=True, timeout=900)
    # The host's CA bundle lets pip inside the build verify the package index
    # through whatever TLS-inspecting proxy the host trusts.
    mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    podman(
        "build",
        "--pull=never",
        "--format",
        "docker",
        "--network",
        "host",
        *mounts,
        *args,
        "-t",
        tag,
        str(ROOT),
        timeout=900,
    )
    return tag


@pytest.fixture(scope="module")
def image() -> str:
    return build(TAG)


@pytest.fixture(scope="module")
def core_image() -> str:
    return build(CORE_TAG, "--build-arg", "EXTRAS=core")  # the layers before the install are shared


def size(tag: str) -> int:
    return int(json.loads(podman("image", "inspect", tag).stdout)[0]["Size"])


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    name, port = f"probed-test-{uuid.uuid4().hex[:8]}", free_port()
    podman(
        "run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
        "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
        "-p", f"127.0.0.1:{port}:8080", image,
    )  # fmt: skip
    try:
        yield name, port
    finally:
        podman("rm", "-f", name, check=False)


def test_image_keeps_its_healthcheck(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    assert inspected["Healthcheck"]["Test"] == ["CMD", "probed", "probe"]  # asks where serve listens
    assert inspected["Config"]["User"] == "65532:65532"
    print(f"image size: {inspected['Size'] / 1e6:.0f} MB")  # shown with -s; README states it


def test_runs_read_only_unprivileged_healthy_and_stops_on_sigterm(container: tuple[str, int]) -> None:
    name, port = container
    base = f"http://127.0.0.1:{port}"
    poll(f"{base}/health/ready", lambda status, _: status == 200, seconds=60)
    for path in ("/health/live", "/health/ready", "/health", "/metrics"):
        status, body = http_get(base + path)
        assert status == 200, (path, body)
    assert "probed_ready 1.0" in http_get(f"{base}/metrics")[1]

    assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's own HEALTHCHECK
    assert podman("exec", name, "id", "-u").stdout.strip() == "65532"
    assert podman("exec", name, "sh", "-c", "echo x > /tmp/probe-test", check=False).returncode == 0
    read_only = podman("exec", name, "sh", "-c", "echo x > /etc/probe-test", check=False)
    assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr

    podman("stop", "--time", "10", name)  # SIGTERM; SIGKILL only after 10 s
    state = json.loads(podman("inspect", name).stdout)[0]["State"]
    assert state["ExitCode"] == 0, podman("logs", name).stdout[-2000:]


def test_core_image_adds_at_most_60_mb_to_its_base(core_image: str) -> None:
    added = size(core_image) - size(BASE)
    print(f"core image adds {added / 1e6:.0f} MB")  # shown with -s; README states it
    assert added <= CORE_MAX_ADDED_BYTES


def run_in(image: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`probed ARGS` in a throwaway container of image, config mounted as the default one."""
    return podman(
        "run", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
        "-v", f"{config}:/etc/probed/probed.yaml:ro", image, *args, check=False,
    )  # fmt: skip


def test_core_image_runs_an_s3_check_and_names_the_extra_of_other_types(core_image: str, tmp_path: Path) -> None:
    s3 = S3Server()
    s3.start()
    try:
        s3.create_bucket("app-media")
        config = tmp_path / "s3.yaml"
        config.write_text(
            "checks:\n  media:\n    type: s3\n    bucket: app-media\n    region: us-east-1\n"
            f"    endpoint_url: {s3.endpoint}\n    addressing_style: path\n"
            "    access_key_id: probe\n    secret_access_key: secret\n    write_test: true\n"
        )
        config.chmod(0o644)
        checked = run_in(core_image, config, "check", "--output", "json")
    finally:
        s3.stop()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["checks"]["media"][0]["status"] == "pass"

    mysql = tmp_path / "mysql.yaml"
    mysql.write_text("checks:\n  orders:\n    type: mysql\n    dsn: mysql://probe@127.0.0.1:3306/orders\n")
    mysql.chmod(0o644)
    validated = run_in(core_image, mysql, "validate")
    assert validated.returncode == 2
    assert "pip install 'probed[mysql]'" in validated.stderr
