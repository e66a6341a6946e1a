"""Every registered check type, pointed at a port: the table the guards of
every type (sockets left, a fast failure from a server that closes, the
event loop's lag) run from. A type added to probed.checks.TYPES without an
entry here fails test_every_type_has_an_entry, so no type escapes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Options = dict[str, Any]

# Networked types over TCP: the options of a check reaching 127.0.0.1:port,
# logging in where the type can, so a misbehaving server meets the whole dialogue.
AT_PORT: dict[str, Callable[[int], Options]] = {
    "http": lambda port: {"type": "http", "url": f"http://127.0.0.1:{port}/health"},
    "postgres": lambda port: {"type": "postgres", "dsn": f"postgresql://probe:secret@127.0.0.1:{port}/app"},
    "redis": lambda port: {"type": "redis", "url": f"redis://127.0.0.1:{port}/0"},
    "smtp": lambda port: {"type": "smtp", "host": "127.0.0.1", "port": port},
    "s3": lambda port: {
        "type": "s3",
        "bucket": "app-media",
        "region": "us-east-1",
        "endpoint_url": f"http://127.0.0.1:{port}",
        "addressing_style": "path",
        "access_key_id": "probe",
        "secret_access_key": "secret",
    },
    "nats": lambda port: {"type": "nats", "url": f"nats://127.0.0.1:{port}"},
    "mqtt": lambda port: {"type": "mqtt", "host": "127.0.0.1", "port": port},
    "grpc": lambda port: {"type": "grpc", "target": f"127.0.0.1:{port}"},
    "tcp": lambda port: {"type": "tcp", "host": "127.0.0.1", "port": port, "send": "PING\\r\\n", "expect": "^PONG"},
    "tls": lambda port: {"type": "tls", "host": "127.0.0.1", "port": port},
    "dns": lambda port: {"type": "dns", "name": "probe.test", "server": "127.0.0.1", "port": port, "tcp": True},
    "mysql": lambda port: {"type": "mysql", "dsn": f"mysql://probe:secret@127.0.0.1:{port}/app"},
    "amqp": lambda port: {"type": "amqp", "url": f"amqp://probe:secret@127.0.0.1:{port}/%2F"},
    "memcached": lambda port: {"type": "memcached", "host": "127.0.0.1", "port": port},
    "ldap": lambda port: {
        "type": "ldap",
        "url": f"ldap://127.0.0.1:{port}",
        "username": "cn=probe",
        "password": "secret",
    },
    "ssh": lambda port: {"type": "ssh", "host": "127.0.0.1", "port": port},
    "websocket": lambda port: {"type": "websocket", "url": f"ws://127.0.0.1:{port}/"},
}

# Types over UDP, given a port: no connection to count or close (their own
# tests count their sockets); they join the lag guard.
DATAGRAM: dict[str, Callable[[int], Options]] = {
    "udp": lambda port: {"type": "udp", "host": "127.0.0.1", "port": port, "send": "hi"},
}

# Types that open no connection of their own: they still join the lag guard.
# (icmp pings the loopback; its own tests count its sockets.)
LOCAL: dict[str, Callable[[], Options]] = {
    "icmp": lambda: {"type": "icmp", "host": "127.0.0.1", "count": 1},
    "disk": lambda: {"type": "disk", "path": "/"},
    "file": lambda: {"type": "file", "path": "/etc/hostname"},
    "command": lambda: {"type": "command", "command": ["true"]},
    "heartbeat": lambda: {"type": "heartbeat", "ttl": "1h"},
}
