"""The servers for the cost-per-run rows of the websocket and udp types: the tests' own
WebSocket server and UDP echo, each in its own process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers_websocket_udp_icmp import UdpEchoServer, WebsocketServer


@contextmanager
def websocket_udp_icmp_services() -> Iterator[dict[str, Any]]:
    """cost.py options for the websocket and udp checks against the tests' servers."""
    websocket, echo = WebsocketServer(), UdpEchoServer()
    websocket.start()
    try:
        echo.start()
        url = f"ws://127.0.0.1:{websocket.port}/echo"
        udp = {"type": "udp", "host": "127.0.0.1", "port": echo.port}
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
        }
    finally:
        echo.stop()
        websocket.stop()
