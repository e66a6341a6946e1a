"""redis check against a real redis-server, and real faults."""

from __future__ import annotations

from pathlib import Path

import redis

from probed.checks import create_check
from probed.config import load_config
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate
from tests.support.checks import run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers import ENCODED_PASSWORD, PASSWORD
from tests.support.servers.redis import RedisServer


async def test_ping_passes(redis_server: RedisServer) -> None:
    result = await run_check({"type": "redis", "url": redis_server.url()})
    assert result.status is Status.PASS, result.output
    assert result.output == f"redis://127.0.0.1:{redis_server.port}/0: primary, PONG"
    assert result.observed["role"].value == "primary"
    assert int(result.observed["used_memory"].value) > 0
    assert next(iter(result.observed)) == "ping_time"


async def test_password_in_url_or_field(redis_with_password: RedisServer, tmp_path: Path) -> None:
    (tmp_path / "redis-password").write_text(PASSWORD)
    in_url = await run_check({"type": "redis", "url": redis_with_password.url(password=ENCODED_PASSWORD)})
    in_file = await run_check(
        {"type": "redis", "url": redis_with_password.url(), "password_file": str(tmp_path / "redis-password")}
    )
    assert in_url.status is Status.PASS, in_url.output
    assert in_file.status is Status.PASS, in_file.output
    assert PASSWORD not in in_url.output and ENCODED_PASSWORD not in in_url.output
    assert f"redis://:***@127.0.0.1:{redis_with_password.port}/0" in in_url.output


async def test_wrong_or_missing_password_is_auth(redis_with_password: RedisServer) -> None:
    wrong = await run_check({"type": "redis", "url": redis_with_password.url(password="nope")})
    missing = await run_check({"type": "redis", "url": redis_with_password.url()})
    assert wrong.status is Status.FAIL and wrong.reason is Reason.AUTH, wrong.output
    assert missing.status is Status.FAIL and missing.reason is Reason.AUTH, missing.output
    assert "nope" not in wrong.output


async def test_refused_fails_at_once() -> None:
    port = closed_port()
    result = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{port}/0"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED
    assert result.output == f"redis://127.0.0.1:{port}/0: connection refused"


async def test_tls(tmp_path: Path, tls_certificate: Certificate) -> None:
    server = RedisServer(tmp_path / "redis-tls", tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        verified = await run_check({"type": "redis", "url": server.url(), "ca_file": str(tls_certificate.cert_file)})
        untrusted = await run_check({"type": "redis", "url": server.url()})
        unverified = await run_check({"type": "redis", "url": server.url(), "tls_verify": False})
    finally:
        server.stop()
    assert verified.status is Status.PASS, verified.output
    assert verified.output.startswith("rediss://127.0.0.1:")
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert unverified.status is Status.PASS, unverified.output


async def test_unresolvable_host() -> None:
    result = await run_check({"type": "redis", "url": "redis://cache.invalid:6379/0"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output


async def test_paused_server_times_out(redis_server: RedisServer) -> None:
    redis_server.pause()
    try:
        result = await run_check({"type": "redis", "url": redis_server.url(), "timeout": "400ms"})
        assert result.reason is Reason.TIMEOUT
    finally:
        redis_server.resume()


async def test_silent_port_times_out() -> None:
    with silent_listener() as port:
        result = await run_check({"type": "redis", "url": f"redis://127.0.0.1:{port}/0", "timeout": "300ms"})
    assert result.reason is Reason.TIMEOUT


async def test_role_expectation_with_a_real_replica(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = RedisServer(tmp_path / "replica", replica_of=redis_server.port)
    replica.start()
    try:
        is_replica = await run_check({"type": "redis", "url": replica.url(), "expect": "replica"})
        not_master = await run_check({"type": "redis", "url": replica.url(), "expect": "master"})
        write = await run_check({"type": "redis", "url": replica.url(), "write_test": True})
    finally:
        replica.stop()
    assert is_replica.status is Status.PASS, is_replica.output
    assert not_master.status is Status.FAIL and not_master.reason is Reason.UNEXPECTED
    assert not_master.output.endswith("is a replica, expected a primary")
    assert write.status is Status.FAIL and "read-only" in write.output


async def test_write_test_leaves_no_key(redis_server: RedisServer) -> None:
    result = await run_check({"type": "redis", "url": redis_server.url(db=3), "write_test": True})
    assert result.status is Status.PASS, result.output
    assert redis.Redis(port=redis_server.port, db=3).keys("*") == []


async def test_info_levels(redis_server: RedisServer) -> None:
    redis.Redis(port=redis_server.port).config_set("maxmemory", "100mb")
    base = {"type": "redis", "url": redis_server.url()}
    ok = await run_check({**base, "levels": {"connected_clients": {"warn_above": 100}}})
    warn = await run_check({**base, "levels": {"connected_clients": {"warn_above": 0}}})
    fail = await run_check({**base, "levels": {"used_memory_ratio": {"fail_above": 0.0001}}})
    unknown = await run_check({**base, "levels": {"no_such_field": {"fail_above": 1}}})
    assert ok.status is Status.PASS
    assert warn.status is Status.WARN and "connected_clients is 1, above the warn level of 0" in warn.output
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    assert 0 < float(fail.observed["used_memory_ratio"].value) < 1
    # A level on a value this run did not observe is said, not turned into a failure.
    assert unknown.status is Status.WARN and "no_such_field not observed this run" in unknown.output


async def test_stopped_then_restarted_server(redis_server: RedisServer) -> None:
    options = {"type": "redis", "url": redis_server.url()}
    assert (await run_check(options)).status is Status.PASS
    redis_server.stop()
    assert (await run_check(options)).reason is Reason.REFUSED
    redis_server.start()
    assert (await run_check(options)).status is Status.PASS


async def test_the_example_configs_cache_check_passes_on_a_stock_redis(redis_server: RedisServer) -> None:
    example = Path(__file__).parent.parent / "config" / "probed.example.yaml"
    config = load_config(str(example), environ={"REDIS_URL": redis_server.url()})
    result = await run_once(create_check("cache", config.checks["cache"]))
    assert result.status in (Status.PASS, Status.WARN), result.output  # ping_time may warn on a busy machine
