from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import Config, parse_config
from probed.model import Result
from probed.runner import run_once
from tests.harness import (
    PASSWORD,
    MariaDbServer,
    PostgresServer,
    RabbitMqServer,
    RedisServer,
    S3Server,
    SmtpServer,
    temp_dir,
)
from tests.servers import Certificate, self_signed_certificate, serve_app, target_app


def config_from(checks: dict[str, Any], **sections: Any) -> Config:
    """A Config built through the real YAML loader and validation."""
    return parse_config(yaml.safe_dump({**sections, "checks": checks}), "test.yaml")


def check_from(options: dict[str, Any], name: str = "t") -> AnyCheck:
    config = config_from({name: options})
    return create_check(name, config.checks[name])


async def run_check(options: dict[str, Any]) -> Result:
    check = check_from(options)
    try:
        return await run_once(check)
    finally:
        await check.close()


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """Base URL of a real local HTTP server with /ok, /error, /json, /slow, ..."""
    async with serve_app(target_app()) as url:
        yield url


# -- real dependency servers (tests/harness.py) ---------------------------------------


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresServer]:
    """An initialised, stopped cluster with the role `probe` (PASSWORD) owning
    database `app`; tests copy it instead of running initdb each time."""
    base = temp_dir("probed-pg-")
    template = PostgresServer.create(base / "template")
    template.start()
    template.add_app_role()
    template.stop()
    yield template
    shutil.rmtree(base, ignore_errors=True)


@contextmanager
def running(make: Callable[[Path], PostgresServer]) -> Iterator[PostgresServer]:
    """A PostgreSQL made in a fresh directory, started, and removed afterwards."""
    base = temp_dir("probed-pg-")
    server = make(base)
    server.start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(postgres_template: PostgresServer) -> Iterator[PostgresServer]:
    """A running PostgreSQL shared by the tests that do not break it."""
    with running(lambda base: postgres_template.copy(base / "shared")) as server:
        yield server


@pytest.fixture
def own_postgres(postgres_template: PostgresServer) -> Iterator[PostgresServer]:
    """A running PostgreSQL for one test, which may stop or pause it."""
    with running(lambda base: postgres_template.copy(base / "own")) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_replica(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """A streaming replica of `postgres`."""
    with running(lambda base: postgres.replica(base / "replica")) as server:
        yield server


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-auth", password=PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    server.create_bucket("app-media")
    yield server
    server.stop()


# -- MariaDB and RabbitMQ (the mysql and amqp checks) ---------------------------------


@pytest.fixture(scope="session")
def mariadb_template() -> Iterator[MariaDbServer]:
    """An installed, stopped server with its users; tests copy it."""
    base = temp_dir("probed-mariadb-")
    yield MariaDbServer.create(base / "template")
    shutil.rmtree(base, ignore_errors=True)


def _running_mariadb(template: MariaDbServer, name: str, server_id: int = 1) -> Iterator[MariaDbServer]:
    base = temp_dir(f"probed-mariadb-{name}-")
    server = template.copy(base, server_id)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(mariadb_template: MariaDbServer) -> Iterator[MariaDbServer]:
    """A running server shared by the tests that do not break it."""
    yield from _running_mariadb(mariadb_template, "shared")


@pytest.fixture
def own_mariadb(mariadb_template: MariaDbServer) -> Iterator[MariaDbServer]:
    """A running server for one test, which may stop, pause or reconfigure it."""
    yield from _running_mariadb(mariadb_template, "own")


@pytest.fixture(scope="session")
def mariadb_replica(mariadb: MariaDbServer, mariadb_template: MariaDbServer) -> Iterator[MariaDbServer]:
    """A replica of `mariadb`, replicating."""
    for server in _running_mariadb(mariadb_template, "replica", server_id=2):
        server.replicate_from(mariadb)
        yield server


@pytest.fixture(scope="session")
def rabbitmq(tls_certificate: Certificate) -> Iterator[RabbitMqServer]:
    """One node for the session (a cold start takes 5 to 60 s): tests must not stop it."""
    base = temp_dir("probed-rabbitmq-")
    server = RabbitMqServer(base, tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(base, ignore_errors=True)
