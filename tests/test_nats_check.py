"""nats check against real nats-server processes: auth of every kind, TLS,
JetStream streams and consumers, stopped and paused servers."""

from __future__ import annotations

import asyncio
import gc
import os
from pathlib import Path

import nats
import nkeys
import pytest

from probed.model import Reason, Status
from tests.support.certificates import Certificate
from tests.support.checks import run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port, sockets_left
from tests.support.servers import PASSWORD
from tests.support.servers.nats import NatsServer

TOKEN = "s3cr3t-t0ken-for-nats"


def user_nkey() -> tuple[str, str]:
    """A user nkey: (seed, public key)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode(), nkeys.from_seed(seed).public_key.decode()


async def test_ping_round_trip(nats_server: NatsServer) -> None:
    result = await run_check({"type": "nats", "url": nats_server.url()})
    assert result.status is Status.PASS, result.output
    assert result.output == f"nats://127.0.0.1:{nats_server.port}: PONG"
    assert 0 < float(result.observed["rtt"].value) < 3


async def test_user_and_password(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", auth=f'authorization {{ user: probe, password: "{PASSWORD}" }}')
    server.start()
    try:
        base = {"type": "nats", "url": server.url(), "username": "probe"}
        good = await run_check({**base, "password": PASSWORD})
        wrong = await run_check({**base, "password": "not-it"})
        missing = await run_check({"type": "nats", "url": server.url()})
    finally:
        server.stop()
    assert good.status is Status.PASS, good.output
    assert wrong.status is Status.FAIL and wrong.reason is Reason.AUTH, wrong.output
    assert missing.reason is Reason.AUTH
    assert "not-it" not in wrong.output and PASSWORD not in wrong.output


async def test_token_is_used_and_never_shown(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", auth=f'authorization {{ token: "{TOKEN}" }}')
    server.start()
    try:
        good = await run_check({"type": "nats", "url": server.url(), "token": TOKEN})
        wrong = await run_check({"type": "nats", "url": server.url(), "token": "wrong-token"})
        in_url = await run_check({"type": "nats", "url": server.url(credentials=TOKEN)})
    finally:
        server.stop()
    assert good.status is Status.PASS, good.output
    assert wrong.reason is Reason.AUTH
    assert in_url.status is Status.PASS, in_url.output
    for result in (good, wrong, in_url):
        assert TOKEN not in result.output and "wrong-token" not in result.output


async def test_nkey_seed(tmp_path: Path) -> None:
    seed, public = user_nkey()
    other_seed, _ = user_nkey()
    server = NatsServer(tmp_path / "nats", auth=f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}')
    server.start()
    seed_file = tmp_path / "probe.nk"
    seed_file.write_text(seed + "\n")
    try:
        good = await run_check({"type": "nats", "url": server.url(), "nkey_seed_file": str(seed_file)})
        wrong = await run_check({"type": "nats", "url": server.url(), "nkey_seed": other_seed})
    finally:
        server.stop()
    assert good.status is Status.PASS, good.output
    assert wrong.reason is Reason.AUTH, wrong.output
    assert other_seed not in wrong.output


async def test_tls(tmp_path: Path, tls_certificate: Certificate) -> None:
    server = NatsServer(tmp_path / "nats", tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        trusted = await run_check({"type": "nats", "url": server.url(), "ca_file": str(tls_certificate.cert_file)})
        untrusted = await run_check({"type": "nats", "url": server.url()})
        left = await sockets_left(server.port)
    finally:
        server.stop()
    assert trusted.status is Status.PASS, trusted.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert left == 0


async def jetstream_with_backlog(server: NatsServer) -> None:
    """Stream ORDERS with 5 messages; consumer billing has taken 2 and acked none."""
    client = await nats.connect(server.url())
    try:
        jetstream = client.jetstream()
        await jetstream.add_stream(name="ORDERS", subjects=["orders.*"])
        for index in range(5):
            await jetstream.publish("orders.new", f"order {index}".encode())
        subscription = await jetstream.pull_subscribe("orders.*", durable="billing", stream="ORDERS")
        await subscription.fetch(2, timeout=2)
    finally:
        await client.close()


async def test_stream_and_consumer_state_with_levels(nats_server: NatsServer) -> None:
    await jetstream_with_backlog(nats_server)
    base = {"type": "nats", "url": nats_server.url(), "stream": "ORDERS"}
    stream = await run_check(base)
    consumer = await run_check({**base, "consumer": "billing", "levels": {"pending": {"warn_above": 2}}})
    backlog = await run_check({**base, "consumer": "billing", "levels": {"ack_pending": {"fail_above": 1}}})
    assert stream.status is Status.PASS, stream.output
    assert stream.observed["messages"].value == 5
    assert consumer.status is Status.WARN, consumer.output
    assert consumer.observed["pending"].value == 3 and consumer.observed["ack_pending"].value == 2
    assert "pending is 3, above the warn level of 2" in consumer.output
    assert backlog.status is Status.FAIL and backlog.reason is Reason.UNEXPECTED


async def test_missing_stream_and_consumer(nats_server: NatsServer) -> None:
    await jetstream_with_backlog(nats_server)
    no_stream = await run_check({"type": "nats", "url": nats_server.url(), "stream": "NOPE"})
    no_consumer = await run_check({"type": "nats", "url": nats_server.url(), "stream": "ORDERS", "consumer": "nope"})
    assert no_stream.reason is Reason.UNEXPECTED and "stream NOPE not found" in no_stream.output
    assert no_consumer.reason is Reason.UNEXPECTED and "consumer ORDERS/nope not found" in no_consumer.output


async def test_refused_and_silent() -> None:
    refused = await run_check({"type": "nats", "url": f"nats://127.0.0.1:{closed_port()}"})
    with silent_listener() as port:
        silent = await run_check({"type": "nats", "url": f"nats://127.0.0.1:{port}", "timeout": "500ms"})
    assert refused.reason is Reason.REFUSED, refused.output
    assert silent.reason is Reason.TIMEOUT, silent.output


async def test_stopped_paused_and_back(nats_server: NatsServer) -> None:
    options = {"type": "nats", "url": nats_server.url(), "timeout": "500ms"}
    assert (await run_check(options)).status is Status.PASS
    nats_server.pause()
    try:
        paused = await run_check(options)
    finally:
        nats_server.resume()
    assert paused.reason is Reason.TIMEOUT, paused.output
    nats_server.stop()
    stopped = await run_check(options)
    assert stopped.reason is Reason.REFUSED, stopped.output
    nats_server.start()
    await asyncio.sleep(0)
    assert (await run_check(options)).status is Status.PASS


def test_one_way_to_log_in() -> None:
    from probed.config import ConfigError
    from tests.support.checks import config_from

    with pytest.raises(ConfigError) as error:
        config_from({"n": {"type": "nats", "username": "u", "password": "p", "token": "t"}})
    assert "choose one of username/password, token, nkey_seed or creds_file" in str(error.value)


async def test_no_connection_leaks_over_many_runs(nats_server: NatsServer) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    options = {"type": "nats", "url": nats_server.url(), "timeout": "300ms"}
    await run_check(options)  # warm up: the driver's own lazily made objects
    before = open_fds()
    for _ in range(100):
        assert (await run_check(options)).status is Status.PASS
    with silent_listener() as port:
        for _ in range(20):
            assert (await run_check({**options, "url": f"nats://127.0.0.1:{port}"})).reason is Reason.TIMEOUT
    # Sockets of cancelled connects close in the loop iterations after the
    # cancellation, and the driver's reference cycles at the next collection.
    await asyncio.sleep(0.1)
    gc.collect()
    assert open_fds() <= before + 2
