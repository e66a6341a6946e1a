"""mqtt check against real mosquitto brokers: logins, ACLs, TLS, a QoS 1
round trip, stopped and paused brokers."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from probed.model import Reason, Status
from tests.support.certificates import Certificate
from tests.support.checks import run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.mosquitto import MosquittoServer

ACL = """
user probe
topic readwrite probed/#

user reader
topic read probed/#
"""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(tmp_path / "mqtt", users={"probe": PASSWORD, "reader": "reader-pw"}, acl=ACL)
    server.start()
    yield server
    server.stop()


def options(broker: MosquittoServer, **extra: object) -> dict[str, object]:
    return {
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": broker.port,
        "username": "probe",
        "password": PASSWORD,
        **extra,
    }


async def test_connect_and_round_trip(broker: MosquittoServer) -> None:
    connected = await run_check(options(broker))
    round_trip = await run_check(options(broker, round_trip=True))
    assert connected.status is Status.PASS, connected.output
    assert round_trip.status is Status.PASS, round_trip.output
    assert round_trip.output == f"mqtt://127.0.0.1:{broker.port}: message round trip on probed/t ok"
    assert 0 < float(round_trip.observed["round_trip_time"].value) < 3


async def test_mqtt_5(broker: MosquittoServer) -> None:
    result = await run_check(options(broker, round_trip=True, protocol="5"))
    assert result.status is Status.PASS, result.output


async def test_wrong_and_missing_credentials(broker: MosquittoServer) -> None:
    wrong = await run_check(options(broker, password="not-it"))
    anonymous = await run_check({"type": "mqtt", "host": "127.0.0.1", "port": broker.port})
    assert wrong.status is Status.FAIL and wrong.reason is Reason.AUTH, wrong.output
    assert anonymous.reason is Reason.AUTH, anonymous.output
    assert "not-it" not in wrong.output and PASSWORD not in wrong.output


async def test_acl_that_denies_the_probe_topic(broker: MosquittoServer) -> None:
    # `reader` may read probed/# but not publish there: the message never comes back.
    denied = await run_check(
        {**options(broker, round_trip=True), "username": "reader", "password": "reader-pw", "timeout": "1s"}
    )
    assert denied.status is Status.FAIL and denied.reason is Reason.UNEXPECTED, denied.output
    assert "did not come back" in denied.output


async def test_tls(tmp_path: Path, tls_certificate: Certificate) -> None:
    server = MosquittoServer(tmp_path / "mqtts", tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        base = {"type": "mqtt", "host": "127.0.0.1", "port": server.port, "tls": True, "round_trip": True}
        trusted = await run_check({**base, "ca_file": str(tls_certificate.cert_file)})
        untrusted = await run_check(base)
    finally:
        server.stop()
    assert trusted.status is Status.PASS, trusted.output
    assert untrusted.reason is Reason.TLS, untrusted.output


async def test_refused_silent_stopped_paused(broker: MosquittoServer) -> None:
    refused = await run_check({"type": "mqtt", "host": "127.0.0.1", "port": closed_port()})
    with silent_listener() as port:
        silent = await run_check({"type": "mqtt", "host": "127.0.0.1", "port": port, "timeout": "500ms"})
    assert refused.reason is Reason.REFUSED, refused.output
    assert silent.reason is Reason.TIMEOUT, silent.output
    broker.pause()
    try:
        paused = await run_check(options(broker, timeout="500ms"))
    finally:
        broker.resume()
    assert paused.reason is Reason.TIMEOUT, paused.output
    broker.stop()
    assert (await run_check(options(broker))).reason is Reason.REFUSED
    broker.start()
    assert (await run_check(options(broker, round_trip=True))).status is Status.PASS


async def test_no_connection_leaks_over_many_runs(broker: MosquittoServer) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    await run_check(options(broker))
    before = open_fds()
    for _ in range(50):
        assert (await run_check(options(broker, round_trip=True))).status is Status.PASS
    with silent_listener() as port:
        for _ in range(20):
            silent = await run_check({"type": "mqtt", "host": "127.0.0.1", "port": port, "timeout": "200ms"})
            assert silent.reason is Reason.TIMEOUT
    await asyncio.sleep(0.1)  # cancelled connections close in the next loop iterations
    gc.collect()
    assert open_fds() <= before + 2
