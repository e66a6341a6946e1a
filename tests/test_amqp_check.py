"""amqp check against a real RabbitMQ node of its own, and real faults."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from probed.model import Reason, Status
from probed.runner import run_once
from probed.store import Store
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers import ENCODED_PASSWORD, PASSWORD, temp_dir
from tests.support.servers.rabbitmq import RabbitMqServer

pytest.importorskip("aiormq", reason="the amqp extra is not installed: pip install 'probed[amqp]'")

WRONG = "n0t-th3-p4ss"


@pytest.fixture
async def work_queue(rabbitmq: RabbitMqServer) -> AsyncIterator[str]:
    """A fresh, empty queue in vhost app, deleted afterwards."""
    import aiormq

    name = f"probe-{os.urandom(4).hex()}"
    connection = await aiormq.connect(rabbitmq.url())
    channel = await connection.channel()
    await channel.queue_declare(name)
    yield name
    await channel.queue_delete(name)
    await connection.close()


async def test_passes_and_opens_a_channel(rabbitmq: RabbitMqServer) -> None:
    result = await run_check({"type": "amqp", "url": rabbitmq.url()})
    assert result.status is Status.PASS, result.output
    assert result.output == f"amqp://probe:***@127.0.0.1:{rabbitmq.port}/app: channel open"
    assert str(result.observed["server_version"].value)[0].isdigit()
    assert float(result.observed["connect_time"].value) > 0


async def test_default_vhost_and_credentials_as_fields(rabbitmq: RabbitMqServer, tmp_path: Path) -> None:
    secret = tmp_path / "amqp-password"
    secret.write_text(PASSWORD + "\n")
    url = f"amqp://127.0.0.1:{rabbitmq.port}/%2F"
    result = await run_check({"type": "amqp", "url": url, "username": "probe", "password_file": str(secret)})
    assert result.status is Status.PASS, result.output


async def test_queue_counts_and_levels(rabbitmq: RabbitMqServer, work_queue: str) -> None:
    import aiormq

    connection = await aiormq.connect(rabbitmq.url())
    try:
        channel = await connection.channel()
        for number in range(3):
            await channel.basic_publish(f"job {number}".encode(), routing_key=work_queue)
        base = {"type": "amqp", "url": rabbitmq.url(), "queue": work_queue}
        seen = await run_check(base)
        warn = await run_check({**base, "warn_messages": 2, "max_messages": 10})
        fail = await run_check({**base, "max_messages": 2})
        lonely = await run_check({**base, "min_consumers": 1})
        consumer = await connection.channel()
        await consumer.basic_qos(prefetch_count=1)
        await consumer.basic_consume(work_queue, lambda message: _ignore(message))
        served = await run_check({**base, "min_consumers": 1, "levels": {"messages": {"warn_above": 100}}})
    finally:
        await connection.close()
    assert seen.status is Status.PASS, seen.output
    assert seen.output.endswith(f"queue {work_queue}: 3 ready")
    assert (seen.observed["messages"].value, seen.observed["consumers"].value) == (3, 0)
    assert warn.status is Status.WARN and "messages is 3, above the warn level of 2" in warn.output
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    assert lonely.status is Status.FAIL and "consumers is 0, below the fail level of 1" in lonely.output
    assert served.status is Status.PASS, served.output
    assert served.observed["consumers"].value == 1
    assert served.observed["messages"].value == 2  # one is delivered, unacknowledged: no longer ready


async def _ignore(message: object) -> None:
    """A consumer that never acknowledges: its one prefetched message stays unacknowledged."""


async def test_missing_queue_is_unexpected(rabbitmq: RabbitMqServer) -> None:
    result = await run_check({"type": "amqp", "url": rabbitmq.url(), "queue": "nope"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert result.output.endswith("queue 'nope' does not exist in vhost 'app'")


async def test_wrong_credentials_are_auth(rabbitmq: RabbitMqServer) -> None:
    wrong_password = await run_check({"type": "amqp", "url": rabbitmq.url(password=WRONG)})
    unknown_user = await run_check({"type": "amqp", "url": rabbitmq.url(user="nobody", password=WRONG)})
    for result in (wrong_password, unknown_user):
        assert result.status is Status.FAIL
        assert result.reason is Reason.AUTH
        assert "authentication failed" in result.output
        assert WRONG not in result.output


async def test_missing_or_forbidden_vhost(rabbitmq: RabbitMqServer) -> None:
    missing = await run_check({"type": "amqp", "url": rabbitmq.url(vhost="nope")})
    forbidden = await run_check({"type": "amqp", "url": rabbitmq.url(vhost="other")})
    for result, vhost in ((missing, "nope"), (forbidden, "other")):
        assert result.status is Status.FAIL and result.reason is Reason.AUTH
        assert f"the broker refused vhost '{vhost}': it does not exist, or this user has no permission" in result.output


async def test_tls(rabbitmq: RabbitMqServer, tls_certificate: Certificate) -> None:
    url = rabbitmq.url(tls=True)
    verified = await run_check({"type": "amqp", "url": url, "ca_file": str(tls_certificate.cert_file)})
    untrusted = await run_check({"type": "amqp", "url": url})
    unverified = await run_check({"type": "amqp", "url": url, "tls_verify": False})
    assert verified.status is Status.PASS, verified.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert unverified.status is Status.PASS, unverified.output


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "amqp", "url": f"amqp://probe:{ENCODED_PASSWORD}@127.0.0.1:{port}/app"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED
    assert result.output == f"amqp://probe:***@127.0.0.1:{port}/app: connection refused"


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_silent_port_times_out_and_leaks_nothing() -> None:
    with silent_listener() as port:
        check = check_from({"type": "amqp", "url": f"amqp://127.0.0.1:{port}/", "timeout": "200ms", "interval": "1s"})
        first = await run_once(check)
        before = _open_fds()
        for _ in range(20):
            await run_once(check)
        after = _open_fds()
    assert first.status is Status.FAIL and first.reason is Reason.TIMEOUT, first.output
    assert after <= before


async def test_many_runs_leave_no_connection_open(rabbitmq: RabbitMqServer, work_queue: str) -> None:
    check = check_from({"type": "amqp", "url": rabbitmq.url(), "queue": work_queue})
    missing = check_from({"type": "amqp", "url": rabbitmq.url(), "queue": "nope"}, name="missing")
    await run_once(check)
    before = _open_fds()
    for _ in range(100):
        assert (await run_once(check)).status is Status.PASS
        assert (await run_once(missing)).status is Status.FAIL
    assert _open_fds() <= before
    assert rabbitmq.connection_names() == []  # the broker agrees: every connection was closed


async def test_outage_with_thresholds_then_recovery() -> None:
    """Its own node: stopped (refused, fail past the threshold), started again (pass), paused and resumed."""
    base = temp_dir("probed-rabbitmq-outage-")
    server = RabbitMqServer(base)
    server.start()
    check = check_from({"type": "amqp", "url": server.url(), "queue": "work", "failure_threshold": 2})
    store = Store([check])
    state = store.checks[check.name]

    async def run() -> Status | None:
        store.record(check.name, await run_once(check))
        return state.effective

    try:
        assert await run() is Status.PASS, state.output
        server.stop()
        assert await run() is Status.PASS  # one failure is below the threshold
        assert state.last is not None and state.last.reason is Reason.REFUSED
        assert await run() is Status.FAIL
        server.start()
        assert await run() is Status.PASS, state.output

        # Paused (SIGSTOP): the handshake never comes; each run costs its timeout, no socket is left.
        paused = check_from({"type": "amqp", "url": server.url(), "timeout": "500ms"}, name="paused")
        fds = _open_fds()
        server.pause()
        try:
            results = [await run_once(paused) for _ in range(3)]
        finally:
            server.resume()
        assert [r.reason for r in results] == [Reason.TIMEOUT] * 3, results[0].output
        assert (await run_once(paused)).status is Status.PASS
        for _ in range(100):  # abandoned runs get a second to say goodbye (amqp.py's _close)
            if _open_fds() <= fds:
                break
            await asyncio.sleep(0.1)
        assert _open_fds() <= fds
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_password_never_in_output(rabbitmq: RabbitMqServer) -> None:
    closed = closed_port()
    urls = [
        rabbitmq.url(),
        rabbitmq.url(vhost="nope"),
        rabbitmq.url(password=ENCODED_PASSWORD + "x"),
        f"amqp://probe:{ENCODED_PASSWORD}@127.0.0.1:{closed}/app",
    ]
    for url in urls:
        for queue in (None, "nope"):
            result = await run_check({"type": "amqp", "url": url, **({"queue": queue} if queue else {})})
            for secret in (PASSWORD, ENCODED_PASSWORD):
                assert secret not in result.output
    as_field = await run_check(
        {"type": "amqp", "url": f"amqp://127.0.0.1:{closed}/", "username": "probe", "password": PASSWORD}
    )
    assert PASSWORD not in as_field.output and as_field.output.startswith(f"amqp://127.0.0.1:{closed}/")


async def test_unresolvable_host() -> None:
    result = await run_check({"type": "amqp", "url": "amqp://probe@mq.invalid/"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output
