"""Each dependency check through a real outage: pass, stop, fail past the
threshold, restart, pass again past the threshold."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from probed.model import Status
from probed.runner import run_once
from probed.store import Store
from tests.support.checks import check_from
from tests.support.servers.health_grpc import GrpcServer
from tests.support.servers.mosquitto import MosquittoServer
from tests.support.servers.nats import NatsServer
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.redis import RedisServer
from tests.support.servers.s3 import S3Server
from tests.support.servers.smtp import SmtpServer


@dataclass
class Dependency:
    options: dict[str, Any]
    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(params=["postgres", "redis", "smtp", "s3", "nats", "mqtt", "grpc"])
def dependency(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Dependency]:
    kind = request.param
    if kind == "postgres":
        pg: PostgresServer = request.getfixturevalue("own_postgres")
        yield Dependency({"type": "postgres", "dsn": pg.dsn()}, pg.stop, pg.start)
    elif kind == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        yield Dependency({"type": "redis", "url": redis.url()}, redis.stop, redis.start)
    elif kind == "smtp":
        smtp: SmtpServer = request.getfixturevalue("smtp_server")
        yield Dependency({"type": "smtp", "host": "127.0.0.1", "port": smtp.port}, smtp.stop, smtp.start)
    elif kind == "nats":
        nats: NatsServer = request.getfixturevalue("nats_server")
        yield Dependency({"type": "nats", "url": nats.url()}, nats.stop, nats.start)
    elif kind == "mqtt":
        mqtt = MosquittoServer(tmp_path / "mqtt")
        mqtt.start()
        options = {"type": "mqtt", "host": "127.0.0.1", "port": mqtt.port, "round_trip": True}
        yield Dependency(options, mqtt.stop, mqtt.start)
        mqtt.stop()
    elif kind == "grpc":
        grpc = GrpcServer()
        grpc.start()
        yield Dependency({"type": "grpc", "target": f"127.0.0.1:{grpc.port}"}, grpc.stop, grpc.start)
        grpc.stop()
    else:
        s3 = S3Server()
        s3.start()
        s3.create_bucket("media")

        def restart() -> None:
            s3.start()
            s3.create_bucket("media")  # moto keeps no state across restarts

        options = {
            "type": "s3",
            "bucket": "media",
            "endpoint_url": s3.endpoint,
            "region": "us-east-1",
            "access_key_id": "test",
            "secret_access_key": "test",
        }
        yield Dependency(options, s3.stop, restart)
        s3.stop()


async def test_outage_and_recovery_with_thresholds(dependency: Dependency) -> None:
    check = check_from({**dependency.options, "failure_threshold": 2, "success_threshold": 2})
    store = Store([check])
    state = store.checks[check.name]

    async def run() -> Status | None:
        store.record(check.name, await run_once(check))
        return state.effective

    try:
        assert await run() is Status.PASS, state.output
        dependency.stop()
        assert await run() is Status.PASS  # one failure is below the threshold
        assert state.last is not None and state.last.status is Status.FAIL
        assert await run() is Status.FAIL
        dependency.start()
        assert await run() is Status.FAIL  # one success is below the threshold
        assert await run() is Status.PASS, state.output
    finally:
        await check.close()
