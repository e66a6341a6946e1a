"""The servers for the cost-per-run rows of the websocket, udp and icmp types: the tests' own
WebSocket server and UDP echo, each in its own process; icmp pings the loopback addresses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers.udp_echo import UdpEchoServer
from tests.support.servers.websocket import WebsocketServer


@contextmanager
def websocket_udp_icmp_services() -> Iterator[dict[str, Any]]:
    """cost.py options for the websocket and udp checks against the tests' servers, and
    for icmp to 127.0.0.1 and ::1 (echoes 1 ms apart: a run's wall time is mostly its pauses)."""
    websocket, echo = WebsocketServer(), UdpEchoServer()
    websocket.start()
    try:
        echo.start()
        url = f"ws://127.0.0.1:{websocket.port}/echo"
        udp = {"type": "udp", "host": "127.0.0.1", "port": echo.port}
        ping = {"type": "icmp", "count": 3, "echo_interval": "1ms"}
        yield {
            "websocket (upgrade, ping)": {"type": "websocket", "url": url},
            "websocket (upgrade, message and reply, ping)": {
                "type": "websocket",
                "url": url,
                "send": "hello",
                "expect_contains": "hello",
            },
            "udp (datagram and reply)": {**udp, "send": "hello"},
            "udp (datagram, reply matched by regex)": {**udp, "send": "status ok", "expect_regex": "^status ok$"},
            "icmp (one echo, 127.0.0.1)": {"type": "icmp", "host": "127.0.0.1", "count": 1},
            "icmp (3 echoes 1 ms apart, 127.0.0.1)": {**ping, "host": "127.0.0.1"},
            "icmp (3 echoes 1 ms apart, ::1)": {**ping, "host": "::1"},
        }
    finally:
        echo.stop()
        websocket.stop()
