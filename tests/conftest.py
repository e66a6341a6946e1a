"""One fixture per throwaway server (tests/support/servers), named after it:
`NAME` is shared by the tests that do not break it, `own_NAME` is a test's
own, to stop, pause or reconfigure. Helpers live in tests/support, never here."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from tests.support.apps import serve_app, target_app
from tests.support.certificates import Certificate, self_signed_certificate
from tests.support.servers import PASSWORD, temp_dir
from tests.support.servers.mariadb import MariaDbServer
from tests.support.servers.memcached import MemcachedServer
from tests.support.servers.nats import NatsServer
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.rabbitmq import RabbitMqServer
from tests.support.servers.redis import RedisServer
from tests.support.servers.s3 import S3Server
from tests.support.servers.slapd import SlapdServer
from tests.support.servers.smtp import SmtpServer
from tests.support.servers.sshd import SshdServer


class Startable(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


Server = TypeVar("Server", bound=Startable)


def started(server: Server, base: Path | None = None) -> Iterator[Server]:
    """Start a server, yield it, stop it (and remove its directory `base`)."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if base is not None:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """Base URL of a real local HTTP server with /ok, /error, /json, /slow, ..."""
    async with serve_app(target_app()) as url:
        yield url


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


# -- PostgreSQL ------------------------------------------------------------------------


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


# -- MariaDB ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb_template() -> Iterator[MariaDbServer]:
    """An installed, stopped server with its users; tests copy it."""
    base = temp_dir("probed-mariadb-")
    yield MariaDbServer.create(base / "template")
    shutil.rmtree(base, ignore_errors=True)


def _running_mariadb(template: MariaDbServer, name: str, server_id: int = 1) -> Iterator[MariaDbServer]:
    base = temp_dir(f"probed-mariadb-{name}-")
    yield from started(template.copy(base, server_id), base)


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


# -- Redis, memcached -------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test, no password."""
    yield from started(RedisServer(tmp_path / "redis"))


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test that wants PASSWORD."""
    yield from started(RedisServer(tmp_path / "redis-auth", password=PASSWORD))


@pytest.fixture
def memcached(tmp_path: Path) -> Iterator[MemcachedServer]:
    """A memcached for one test, no login."""
    yield from started(MemcachedServer(tmp_path / "memcached"))


@pytest.fixture
def memcached_with_login(tmp_path: Path) -> Iterator[MemcachedServer]:
    """A memcached for one test where `probe` logs in with PASSWORD."""
    yield from started(MemcachedServer(tmp_path / "memcached-auth", users={"probe": PASSWORD}))


# -- SMTP, S3, NATS ---------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (aiosmtpd) for one test, no AUTH."""
    yield from started(SmtpServer())


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server with the bucket `app-media`: tests must not stop it."""
    server = S3Server()
    server.start()
    server.create_bucket("app-media")
    yield server
    server.stop()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream for one test, no auth."""
    yield from started(NatsServer(tmp_path / "nats"))


# -- RabbitMQ ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rabbitmq(tls_certificate: Certificate) -> Iterator[RabbitMqServer]:
    """One node for the session (a cold start takes 5 to 60 s): tests must not stop it."""
    base = temp_dir("probed-rabbitmq-")
    yield from started(RabbitMqServer(base, tls=(tls_certificate.cert_file, tls_certificate.key_file)), base)


# -- slapd, sshd --------------------------------------------------------------------------


def _slapd(certificate: Certificate) -> Iterator[SlapdServer]:
    base = temp_dir("probed-slapd-")
    yield from started(SlapdServer(base / "slapd", (certificate.cert_file, certificate.key_file)), base)


@pytest.fixture(scope="session")
def slapd(tls_certificate: Certificate) -> Iterator[SlapdServer]:
    """One slapd for the tests that do not break it."""
    yield from _slapd(tls_certificate)


@pytest.fixture
def own_slapd(tls_certificate: Certificate) -> Iterator[SlapdServer]:
    """A slapd for one test, which may stop or pause it."""
    yield from _slapd(tls_certificate)


def _sshd() -> Iterator[SshdServer]:
    base = temp_dir("probed-sshd-")
    yield from started(SshdServer(base / "sshd"), base)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshdServer]:
    """One sshd for the tests that do not break it."""
    yield from _sshd()


@pytest.fixture
def own_sshd() -> Iterator[SshdServer]:
    """An sshd for one test, which may stop or pause it."""
    yield from _sshd()
