"""s3 check against moto's S3 server, and real faults."""

from __future__ import annotations

import subprocess
import sys
import time

import boto3

from probed.model import Reason, Status
from tests.conftest import run_check
from tests.harness import S3Server
from tests.servers import closed_port, silent_listener

KEYS = {"access_key_id": "AKIATESTPROBED", "secret_access_key": "s3-secret-key/with+chars", "region": "us-east-1"}


def s3_options(server: S3Server, **extra: object) -> dict[str, object]:
    return {
        "type": "s3",
        "bucket": "app-media",
        "endpoint_url": server.endpoint,
        "addressing_style": "path",
        **KEYS,
        **extra,
    }


async def test_head_bucket_passes(s3_server: S3Server) -> None:
    result = await run_check(s3_options(s3_server))
    assert result.status is Status.PASS, result.output
    assert result.output == f"s3://app-media ({s3_server.endpoint}): head ok"


async def test_write_test_leaves_nothing_behind(s3_server: S3Server) -> None:
    result = await run_check(s3_options(s3_server, write_test=True, key_prefix="health/"))
    assert result.status is Status.PASS, result.output
    assert result.output.endswith("head, put, get, delete ok")
    client = boto3.client(
        "s3", endpoint_url=s3_server.endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert client.list_objects_v2(Bucket="app-media").get("KeyCount") == 0


async def test_missing_bucket(s3_server: S3Server) -> None:
    result = await run_check(s3_options(s3_server, bucket="no-such-bucket"))
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert result.output.endswith("bucket no-such-bucket not found")


async def test_refused_endpoint() -> None:
    port = closed_port()
    result = await run_check({"type": "s3", "bucket": "b", "endpoint_url": f"http://127.0.0.1:{port}", **KEYS})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED, result.output


async def test_silent_endpoint_times_out() -> None:
    with silent_listener() as port:
        start = time.monotonic()
        result = await run_check(
            {"type": "s3", "bucket": "b", "endpoint_url": f"http://127.0.0.1:{port}", "timeout": "500ms", **KEYS}
        )
    assert result.reason is Reason.TIMEOUT
    assert time.monotonic() - start < 1.5


async def test_secret_key_never_in_output(s3_server: S3Server) -> None:
    result = await run_check(s3_options(s3_server, bucket="no-such-bucket"))
    assert KEYS["secret_access_key"] not in result.output


def test_boto3_loads_only_with_an_s3_check(tmp_path: object) -> None:
    program = (
        "import sys\n"
        "from probed.config import parse_config\n"
        "from probed.checks import create_check\n"
        "config = parse_config(sys.argv[1], 't.yaml')\n"
        "[create_check(n, o) for n, o in config.checks.items()]\n"
        "print('boto3' in sys.modules, 'asyncpg' in sys.modules)\n"
    )
    disk_only = "checks:\n  d: {type: disk, path: /}\n"
    with_s3 = disk_only + "  m: {type: s3, bucket: b}\n"
    outputs = [
        subprocess.run([sys.executable, "-c", program, text], capture_output=True, text=True, check=True).stdout
        for text in (disk_only, with_s3)
    ]
    assert outputs == ["False False\n", "True False\n"]
