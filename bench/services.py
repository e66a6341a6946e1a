"""Real dependency servers for the cost-per-run benchmark, each its own process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.ldap_ssh_memcached_services import ldap_ssh_memcached_services
from bench.mq_services import mq_services
from bench.websocket_udp_icmp_services import websocket_udp_icmp_services
from tests.support.certificates import issue_certificate
from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ENCODED_PASSWORD, temp_dir
from tests.support.servers.dnsmasq import DnsServer
from tests.support.servers.mosquitto import MosquittoServer
from tests.support.servers.nats import NatsServer
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.redis import RedisServer


@contextmanager
def dependency_services(work: Path, target: str) -> Iterator[dict[str, Any]]:
    base = temp_dir("probed-bench-pg-")
    postgres = PostgresServer.create(base / "pg")
    postgres.start()
    postgres.add_app_role()
    redis = RedisServer(work / "redis")
    redis.start()
    # A TLS endpoint for the tcp (tls: true) and tls checks: redis-server over TLS.
    certificate = issue_certificate(work, days=90)
    redis_tls = RedisServer(work / "redis-tls", tls=(certificate.cert_file, certificate.key_file))
    redis_tls.start()
    backup = work / "backup.dump"
    backup.write_bytes(b"x" * 4096)
    target_port = int(target.split(":")[2].split("/")[0])
    nats = NatsServer(work / "nats")
    nats.start()
    mqtt = MosquittoServer(work / "mqtt")
    mqtt.start()
    dns = DnsServer(work / "dns")
    dns.start({"www.bench.test": ["192.0.2.10", "192.0.2.11"]})
    smtp_port, s3_port, grpc_port = free_port(), free_port(), free_port()
    grpc = subprocess.Popen([sys.executable, "-m", "tests.support.servers.health_grpc", str(grpc_port)])
    smtp = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    s3 = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    optional = ExitStack()
    try:
        optional_types = optional.enter_context(mq_services())  # MariaDB and RabbitMQ
        optional_types |= optional.enter_context(ldap_ssh_memcached_services())  # slapd, sshd, memcached
        optional_types |= optional.enter_context(websocket_udp_icmp_services())  # the tests' own servers
        wait_until(lambda: port_open(smtp_port) and port_open(s3_port) and port_open(grpc_port), "smtp, s3, grpc")
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{s3_port}",
            region_name="us-east-1",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        ).create_bucket(Bucket="bench")
        admin = f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
        dsn = f"postgresql://probe:{ENCODED_PASSWORD}@127.0.0.1:{postgres.port}/app"
        yield {
            "configs": {
                "disk": {"type": "disk", "path": str(work)},
                "http": {"type": "http", "url": target},
                "postgres (fresh connection)": {"type": "postgres", "dsn": dsn, "_sessions_dsn": admin},
                "postgres (kept connection)": {
                    "type": "postgres",
                    "dsn": dsn,
                    "keep_connection": True,
                    "_sessions_dsn": admin,
                },
                "redis": {"type": "redis", "url": redis.url()},
                "smtp": {"type": "smtp", "host": "127.0.0.1", "port": smtp_port},
                "tcp": {"type": "tcp", "host": "127.0.0.1", "port": target_port},
                "tcp (send / expect)": {
                    "type": "tcp",
                    "host": "127.0.0.1",
                    "port": target_port,
                    "send": "GET /health HTTP/1.0\\r\\n\\r\\n",
                    "expect": "^HTTP/1\\.[01] 200",
                },
                "tcp (TLS)": {
                    "type": "tcp",
                    "host": "127.0.0.1",
                    "port": redis_tls.port,
                    "tls": True,
                    "ca_file": str(certificate.cert_file),
                },
                "tls (endpoint)": {
                    "type": "tls",
                    "host": "127.0.0.1",
                    "port": redis_tls.port,
                    "ca_file": str(certificate.cert_file),
                },
                "tls (file)": {"type": "tls", "file": str(certificate.cert_file)},
                "file": {"type": "file", "path": str(backup), "max_age": "1h", "min_size": 1000},
                "s3": {
                    "type": "s3",
                    "bucket": "bench",
                    "endpoint_url": f"http://127.0.0.1:{s3_port}",
                    "region": "us-east-1",
                    "access_key_id": "a",
                    "secret_access_key": "b",
                },
                "nats": {"type": "nats", "url": nats.url()},
                "mqtt (connect)": {"type": "mqtt", "host": "127.0.0.1", "port": mqtt.port},
                "mqtt (QoS 1 round trip)": {"type": "mqtt", "host": "127.0.0.1", "port": mqtt.port, "round_trip": True},
                "grpc": {"type": "grpc", "target": f"127.0.0.1:{grpc_port}"},
                "dns": {"type": "dns", "name": "www.bench.test", "server": "127.0.0.1", "port": dns.port},
                "command (check_tcp; probed's side only)": {
                    "type": "command",
                    "command": ["/usr/lib/nagios/plugins/check_tcp", "-H", "127.0.0.1", "-p", str(redis.port)],
                },
                "heartbeat": {"type": "heartbeat", "ttl": "1h", "token": "bench"},
                **optional_types,
            }
        }
    finally:
        optional.close()
        for proc in (smtp, s3, grpc):
            proc.terminate()
            proc.wait(10)
        nats.stop()
        mqtt.stop()
        dns.stop()
        redis.stop()
        redis_tls.stop()
        postgres.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
