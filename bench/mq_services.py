"""MariaDB and RabbitMQ for the cost-per-run rows of the mysql and amqp types, each its own process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import temp_dir
from tests.support.servers.mariadb import MariaDbServer
from tests.support.servers.rabbitmq import RabbitMqServer


@contextmanager
def mq_services() -> Iterator[dict[str, Any]]:
    """cost.py options for the mysql and amqp checks against servers of their own."""
    base = temp_dir("probed-bench-mq-")
    mariadb = MariaDbServer.create(base / "mariadb")
    mariadb.start()
    rabbitmq = RabbitMqServer(base / "rabbitmq")
    try:
        rabbitmq.start()
        yield {
            "mysql (fresh connection)": {"type": "mysql", "dsn": mariadb.dsn(), "expect": "primary"},
            "mysql (kept connection)": {
                "type": "mysql",
                "dsn": mariadb.dsn(),
                "expect": "primary",
                "keep_connection": True,
            },
            "amqp (connect, channel)": {"type": "amqp", "url": rabbitmq.url()},
            "amqp (with a passive queue declare)": {"type": "amqp", "url": rabbitmq.url(), "queue": "work"},
        }
    finally:
        rabbitmq.stop()
        mariadb.stop()
        shutil.rmtree(base, ignore_errors=True)
