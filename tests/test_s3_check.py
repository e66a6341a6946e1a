"""s3 check against moto's S3 server, and real faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import boto3
import pytest

from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.checks import check_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port, free_port, port_open, wait_until
from tests.support.servers.s3 import S3Server

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
        result = await run_check(
            {"type": "s3", "bucket": "b", "endpoint_url": f"http://127.0.0.1:{port}", "timeout": "500ms", **KEYS}
        )
    assert result.reason is Reason.TIMEOUT


async def test_secret_key_never_in_output(s3_server: S3Server) -> None:
    result = await run_check(s3_options(s3_server, bucket="no-such-bucket"))
    assert KEYS["secret_access_key"] not in result.output


@pytest.fixture
def s3_with_auth() -> Iterator[tuple[str, dict[str, str]]]:
    """moto's S3 server enforcing IAM credentials after the first four calls,
    which create a bucket and a user allowed to use it: (endpoint, its keys)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: port_open(port), "moto server")
        endpoint = f"http://127.0.0.1:{port}"
        setup = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "AKIASETUP",
            "aws_secret_access_key": "setup",
        }
        boto3.client("s3", **setup).create_bucket(Bucket="private-media")
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="probe")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="probe", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="probe")["AccessKey"]
        yield endpoint, {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    finally:
        server.terminate()
        server.wait(10)


async def test_wrong_credentials_are_auth(s3_with_auth: tuple[str, dict[str, str]]) -> None:
    endpoint, keys = s3_with_auth
    base = {"type": "s3", "bucket": "private-media", "endpoint_url": endpoint, "region": "us-east-1"}
    good = await run_check({**base, **keys})
    wrong = await run_check({**base, "access_key_id": "AKIAWRONGKEY", "secret_access_key": "wrong-secret/x"})
    assert good.status is Status.PASS, good.output
    assert wrong.status is Status.FAIL
    assert wrong.reason is Reason.AUTH, wrong.output
    assert "wrong-secret" not in wrong.output and keys["secret_access_key"] not in good.output


async def test_unresolvable_endpoint() -> None:
    result = await run_check({"type": "s3", "bucket": "b", "endpoint_url": "http://s3.invalid:9000", **KEYS})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output


def test_boto3_loads_only_when_an_s3_check_is_created() -> None:
    program = (
        "import sys\n"
        "from probed.config import parse_config\n"
        "from probed.checks import create_check\n"
        "config = parse_config(sys.argv[1], 't.yaml')\n"
        "print('boto3' in sys.modules, end=' ')\n"
        "[create_check(n, o) for n, o in config.checks.items()]\n"
        "print('boto3' in sys.modules, 'asyncpg' in sys.modules)\n"
    )
    config = "checks:\n  m: {type: s3, bucket: b}\n  d: {type: disk, path: /}\n"
    output = subprocess.run([sys.executable, "-c", program, config], capture_output=True, text=True, check=True)
    # Validation reads the options alone; creating the check to run it loads its driver, and only its own.
    assert output.stdout == "False True False\n"


async def test_s3_checks_share_the_loaded_service_model_not_credentials(s3_server: S3Server) -> None:
    # A botocore session per check held its own copy of the S3 service model
    # and endpoint rules, about 15 MB each: 20 s3 checks took 360 MiB.
    first = check_from(s3_options(s3_server), "first")
    other_keys = {"access_key_id": "AKIAOTHERPROBED", "secret_access_key": "other-secret", "region": "eu-west-1"}
    second = check_from({**s3_options(s3_server), **other_keys}, "second")
    try:
        for check in (first, second):
            result = await run_once(check)
            assert result.status is Status.PASS, result.output
        clients = [check._client for check in (first, second)]  # type: ignore[attr-defined]
        models = [client.meta.service_model._service_description for client in clients]
        assert models[0] is models[1]  # loaded once
        keys = [client._request_signer._credentials.access_key for client in clients]
        assert keys == ["AKIATESTPROBED", "AKIAOTHERPROBED"]  # each its own
        assert [client.meta.region_name for client in clients] == ["us-east-1", "eu-west-1"]
    finally:
        await first.close()
        await second.close()
