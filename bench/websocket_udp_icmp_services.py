"""The WebSocket server for the cost-per-run rows of the websocket type, its own process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers_websocket_udp_icmp import WebsocketServer


@contextmanager
def websocket_udp_icmp_services() -> Iterator[dict[str, Any]]:
    """cost.py options for the websocket check against the tests' WebSocket server."""
    websocket = WebsocketServer()
    websocket.start()
    try:
        url = f"ws://127.0.0.1:{websocket.port}/echo"
        yield {
            "websocket (upgrade, ping)": {"type": "websocket", "url": url},
            "websocket (upgrade, message and reply, ping)": {
                "type": "websocket",
                "url": url,
                "send": "hello",
                "expect_contains": "hello",
            },
        }
    finally:
        websocket.stop()
