"""probed serve and probed check with every check type against real servers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import app_in_thread, target_app
from tests.support.certificates import issue_certificate
from tests.support.checks import NO_LEVELS_YAML
from tests.support.net import poll
from tests.support.probed import run_probed, serve_config, serving
from tests.support.servers.health_grpc import GrpcServer
from tests.support.servers.mariadb import MariaDbServer
from tests.support.servers.mosquitto import MosquittoServer
from tests.support.servers.nats import NatsServer
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.rabbitmq import RabbitMqServer
from tests.support.servers.redis import RedisServer
from tests.support.servers.s3 import S3Server
from tests.support.servers.smtp import SmtpServer

CHECKS = [
    "disk",
    "web",
    "db",
    "cache",
    "mail",
    "media",
    "events",
    "broker",
    "inventory",
    "port",
    "cert",
    "config",
    "orders",
    "jobs",
]


@pytest.fixture
def every_type(
    tmp_path: Path,
    own_postgres: PostgresServer,
    redis_server: RedisServer,
    smtp_server: SmtpServer,
    s3_server: S3Server,
    mariadb: MariaDbServer,
    rabbitmq: RabbitMqServer,
) -> Iterator[str]:
    """A config with a check of every type, each against a real server."""
    nats, mqtt, grpc = NatsServer(tmp_path / "nats"), MosquittoServer(tmp_path / "mqtt"), GrpcServer()
    for server in (nats, mqtt, grpc):
        server.start()
    certificate = issue_certificate(tmp_path, days=90)
    with app_in_thread(target_app()) as web:
        # A generous timeout: a loaded CI machine must not turn this test into one of speed.
        config = serve_config(
            tmp_path,
            f"""\
  disk: {{type: disk, path: '{tmp_path}', write_test: true, {NO_LEVELS_YAML}}}
  web: {{type: http, url: '{web}/json', expect_json: {{status: ok}}}}
  db: {{type: postgres, dsn: '{own_postgres.dsn()}', expect: primary}}
  cache: {{type: redis, url: '{redis_server.url()}', write_test: true}}
  mail: {{type: smtp, host: 127.0.0.1, port: {smtp_server.port}, critical: false}}
  media: {{type: s3, bucket: app-media, endpoint_url: '{s3_server.endpoint}', region: us-east-1,
          access_key_id: test, secret_access_key: test, write_test: true}}
  events: {{type: nats, url: '{nats.url()}'}}
  broker: {{type: mqtt, host: 127.0.0.1, port: {mqtt.port}, round_trip: true}}
  inventory: {{type: grpc, target: '127.0.0.1:{grpc.port}'}}
  port: {{type: tcp, host: 127.0.0.1, port: {web.rsplit(":", 1)[1]},
         send: 'GET /ok HTTP/1.0\\r\\n\\r\\n', expect: all good}}
  cert: {{type: tls, file: '{certificate.cert_file}'}}
  config: {{type: file, path: '{tmp_path}', max_age: 1h}}
  orders: {{type: mysql, dsn: '{mariadb.dsn()}', expect: primary}}
  jobs: {{type: amqp, url: '{rabbitmq.url()}', queue: work, max_messages: 100}}
""",
            interval="3s",
            timeout="2s",
        )
        yield config
    for server in (nats, mqtt, grpc):
        server.stop()


def test_check_passes_then_names_the_broken_dependency(every_type: str, redis_server: RedisServer) -> None:
    config = every_type
    healthy = run_probed("check", "--config", config, "-o", "json")
    assert healthy.returncode == 0, healthy.stdout
    report = json.loads(healthy.stdout)
    statuses = {name: entry[0]["status"] for name, entry in report["checks"].items()}
    assert statuses == dict.fromkeys(CHECKS, "pass")
    redis_server.stop()
    broken = run_probed("check", "--config", config)
    assert broken.returncode == 1
    [cache_row] = [line for line in broken.stdout.splitlines() if line.startswith("cache ")]
    columns = cache_row.split()
    assert columns[:3] == ["cache", "redis", "fail"] and columns[4] == "refused"
    assert broken.stdout.splitlines()[-1] == "overall: fail"


def test_serve_follows_a_postgres_outage(every_type: str, own_postgres: PostgresServer) -> None:
    config = every_type
    with serving(config, until="ready") as served:
        base = served.base
        _, metrics = poll(f"{base}/metrics", lambda _, body: 'probed_check_up{check="db",type="postgres"} 1.0' in body)
        assert "probed_ready 1.0" in metrics

        own_postgres.stop()
        poll(f"{base}/health/ready", lambda status, _: status == 503)
        _, body = poll(f"{base}/health/checks/db", lambda status, _: status == 503)
        [db] = json.loads(body)["checks"]["db"]
        assert db["reason"] == "refused" and db["output"].endswith("connection refused")
        _, metrics = poll(f"{base}/metrics", lambda _, body: 'probed_check_up{check="db",type="postgres"} 0.0' in body)
        assert "probed_ready 0.0" in metrics
        assert 'probed_check_failures_total{check="db",reason="refused",type="postgres"}' in metrics
        others = json.loads(poll(f"{base}/health", lambda *_: True)[1])["checks"]
        assert all(others[name][0]["status"] == "pass" for name in CHECKS if name != "db")

        own_postgres.start()
        poll(f"{base}/health/ready", lambda status, _: status == 200)
        poll(f"{base}/metrics", lambda _, body: 'probed_check_up{check="db",type="postgres"} 1.0' in body)
    assert served.transitions("db") == [("pending", "pass"), ("pass", "fail"), ("fail", "pass")]
