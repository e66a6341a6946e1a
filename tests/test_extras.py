"""Optional check types: a missing driver is a config error that says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("type_name", "driver", "extra"), [("mysql", "asyncmy", "mysql"), ("amqp", "aiormq", "amqp")])
def test_a_missing_driver_is_one_config_line_naming_the_extra(
    tmp_path: Path, type_name: str, driver: str, extra: str
) -> None:
    """`probed validate` where the extra is not installed: sys.modules[driver] = None
    makes Python (and importlib.util.find_spec) treat the driver as absent."""
    config = tmp_path / "probed.yaml"
    config.write_text(f"checks:\n  broker:\n    type: {type_name}\n")
    blocked = f"import sys; sys.modules[{driver!r}] = None; from probed.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{config}:3: checks.broker.type: check type {type_name!r} needs {driver}: pip install 'probed[{extra}]'"
    ]


def test_a_peers_resolver_without_dnspython_is_one_config_line_naming_the_extra(tmp_path: Path) -> None:
    """The peer name asked of a given DNS server needs dnspython (the dns extra);
    the system resolver does not."""
    config = tmp_path / "probed.yaml"
    shared = "checks:\n  db: {type: disk, path: /, scope: shared}\n"
    config.write_text(f"peers:\n  dns: probed-peers.test\n  resolver: 127.0.0.1:5353\n{shared}")
    blocked = "import sys; sys.modules['dns'] = None; from probed.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{config}:3: peers.resolver: needs dnspython (the DNS client that asks it): pip install 'probed[dns]'"
    ]
    config.write_text(f"peers:\n  dns: probed-peers.test\n{shared}")
    done = subprocess.run(
        [sys.executable, "-c", blocked, "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{type: mysql}", "checks.db: give one of dsn (or dsn_file), host or socket"),
        (
            "{type: mysql, host: db, socket: /run/mysqld.sock}",
            "checks.db: give one of dsn (or dsn_file), host or socket",
        ),
        ("{type: mysql, dsn: 'postgres://u:s3cr3t@db/app'}", "checks.db.dsn: must start with mysql:// or mariadb://"),
        (
            "{type: mysql, dsn: 'mysql://u:s3cr3t@db/app?sslmode=on'}",
            "checks.db.dsn: unknown parameter sslmode (known: socket, tls)",
        ),
        (
            "{type: mysql, dsn: 'mysql://u:s3cr3t@db:port/app'}",
            "checks.db.dsn: not a valid URL (mysql://user:password@host:port/database)",
        ),
        (
            "{type: mysql, socket: /run/mysqld.sock, tls: true}",
            "checks.db.tls: not over a Unix socket (the server does not offer it there)",
        ),
        ("{type: amqp, url: 'http://u:s3cr3t@mq/'}", "checks.db.url: url must start with amqp:// or amqps://"),
        ("{type: amqp, max_messages: 10}", "checks.db.max_messages: needs queue"),
        (
            "{type: amqp, queue: q, warn_messages: 10, max_messages: 5}",
            "checks.db: warn_messages must not be above max_messages",
        ),
    ],
)
def test_bad_options_are_one_line_without_the_secret(tmp_path: Path, entry: str, problem: str) -> None:
    from probed.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(f"checks:\n  db: {entry}\n", "probed.yaml")
    assert caught.value.problems == [f"probed.yaml:2: {problem}"]
    assert "s3cr3t" not in caught.value.problems[0]
