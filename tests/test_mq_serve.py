"""probed serve with mysql and amqp checks against real servers: an outage of
each, followed by /health/ready and /metrics, and no password anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.net import poll
from tests.support.probed import serve_config, serving
from tests.support.servers import ENCODED_PASSWORD, PASSWORD
from tests.support.servers.mariadb import MariaDbServer
from tests.support.servers.rabbitmq import RabbitMqServer

pytest.importorskip("asyncmy", reason="the mysql extra is not installed: pip install 'probed[mysql]'")
pytest.importorskip("aiormq", reason="the amqp extra is not installed: pip install 'probed[amqp]'")


def test_serve_follows_a_mariadb_outage_and_exports_queue_gauges(
    tmp_path: Path, own_mariadb: MariaDbServer, rabbitmq: RabbitMqServer
) -> None:
    config = serve_config(
        tmp_path,
        f"  db: {{type: mysql, dsn: '{own_mariadb.dsn()}', expect: primary, failure_threshold: 2}}\n"
        f"  broker: {{type: amqp, url: '{rabbitmq.url()}', queue: work, max_messages: 1000, min_consumers: 0}}\n",
    )
    with serving(config, until="ready") as served:
        base = served.base
        _, metrics = poll(f"{base}/metrics", lambda _, body: 'probed_amqp_queue_messages{check="broker"' in body)
        assert 'probed_amqp_queue_messages{check="broker",type="amqp"} 0.0' in metrics
        assert 'probed_amqp_queue_consumers{check="broker",type="amqp"} 0.0' in metrics
        assert 'probed_mysql_query_value{check="db",type="mysql"} 1.0' in metrics

        own_mariadb.stop()
        _, body = poll(f"{base}/health/checks/db", lambda status, _: status == 503)
        [db] = json.loads(body)["checks"]["db"]
        assert db["reason"] == "refused" and db["output"].endswith("connection refused")
        poll(f"{base}/health/ready", lambda status, _: status == 503)
        _, everything = poll(f"{base}/health", lambda *_: True)
        assert json.loads(everything)["checks"]["broker"][0]["status"] == "pass"

        own_mariadb.start()
        poll(f"{base}/health/ready", lambda status, _: status == 200)
        _, metrics = poll(f"{base}/metrics", lambda _, body: 'probed_check_up{check="db",type="mysql"} 1.0' in body)
    out, err = served.out, served.err
    assert served.transitions("db") == [
        ("pending", "pass"),
        ("pass", "fail"),
        ("fail", "pass"),
    ]
    for text in (out, err, everything, metrics, body):
        assert PASSWORD not in text and ENCODED_PASSWORD not in text
