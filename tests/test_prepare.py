"""Checks are prepared when they are created, not inside a timed run: TLS
files are read and contexts built by create_check (at start and on reload),
and a check whose preparation fails fails its own runs, not probed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from probed.daemon import Daemon
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate, self_signed_certificate, tls_endpoint
from tests.support.checks import check_from, config_from
from tests.support.servers.redis import RedisServer


def trusting(options: dict[str, Any], ca_file: Path) -> dict[str, Any]:
    return {**options, "ca_file": str(ca_file)}


@pytest.mark.parametrize(
    "type_options",
    [
        {"type": "tls", "host": "127.0.0.1"},
        {"type": "tcp", "host": "127.0.0.1", "tls": True},
    ],
    ids=["tls", "tcp"],
)
async def test_the_ca_file_is_read_when_the_check_is_created(tmp_path: Path, type_options: dict[str, Any]) -> None:
    """A run after the CA file is gone still verifies with it: the context
    was built at creation. Without a CA the server's certificate is rejected."""
    certificate = self_signed_certificate(tmp_path)
    ca_file = tmp_path / "ca.pem"
    shutil.copy(certificate.cert_file, ca_file)
    async with tls_endpoint(certificate) as port:
        check = check_from(trusting({**type_options, "port": port}, ca_file))
        ca_file.unlink()
        try:
            result = await run_once(check)
        finally:
            await check.close()
        unverified = check_from({**type_options, "port": port})
        try:
            rejected = await run_once(unverified)
        finally:
            await unverified.close()
    assert result.status is Status.PASS, result.output
    assert (rejected.status, rejected.reason) == (Status.FAIL, Reason.TLS), rejected.output


async def test_a_rediss_check_verifies_with_the_ca_read_at_creation(
    tmp_path: Path, tls_certificate: Certificate
) -> None:
    """redis-py would build its TLS context at the first connection, on the
    loop; the check hands it one built when the check was created."""
    ca_file = tmp_path / "ca.pem"
    shutil.copy(tls_certificate.cert_file, ca_file)
    server = RedisServer(tmp_path / "redis-tls", tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        check = check_from({"type": "redis", "url": server.url(), "ca_file": str(ca_file)})
        ca_file.unlink()
        try:
            results = [await run_once(check) for _ in range(2)]  # the kept client connects again
        finally:
            await check.close()
    finally:
        server.stop()
    assert [r.status for r in results] == [Status.PASS, Status.PASS], [r.output for r in results]


@pytest.mark.parametrize(
    ("endpoint", "target"),
    [
        ({"type": "tcp", "host": "127.0.0.1", "port": 1, "tls": True}, "tcp://127.0.0.1:1"),
        ({"type": "http", "url": "https://127.0.0.1:1/"}, "https://127.0.0.1:1/"),
        ({"type": "websocket", "url": "wss://127.0.0.1:1/"}, "wss://127.0.0.1:1/"),
    ],
    ids=["tcp", "http", "websocket"],
)
async def test_a_check_that_cannot_be_prepared_fails_its_runs_and_probed_goes_on(
    tmp_path: Path, endpoint: dict[str, Any], target: str
) -> None:
    """A key that does not match its certificate: the daemon starts, the check
    fails each run with reason tls and says why, the other check passes."""
    certificate = self_signed_certificate(tmp_path, name="one")
    other = self_signed_certificate(tmp_path, name="two")
    checks = {
        "mtls": {**endpoint, "cert_file": str(certificate.cert_file), "key_file": str(other.key_file)},
        "root": {"type": "disk", "path": "/"},
    }
    daemon = Daemon(config_from(checks))
    try:
        by_name = {check.name: check for check in daemon.checks}
        results = [await run_once(by_name["mtls"]) for _ in range(2)]
        disk = await run_once(by_name["root"])
    finally:
        await daemon.stop()
    for result in results:
        assert (result.status, result.reason) == (Status.FAIL, Reason.TLS)
        assert f"{target}: TLS failed:" in result.output
    assert results[0].output == results[1].output  # said the same way each time, nothing piles up
    assert disk.status is Status.PASS
