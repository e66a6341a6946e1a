"""A UDP server of the tests' own for the udp check: asyncio, in the test's
loop (udp_server, any answer) or an echo in a process of its own that a test
can stop and pause (UdpEchoServer).

`python -m tests.support.servers.udp_echo PORT` echoes on 127.0.0.1:PORT until terminated.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

from tests.support.net import udp_closed_port, wait_until
from tests.support.servers import ServerProcess

UDP_GARBAGE = b"\x00\xff\xfe garbage \x07"


class _Answering(asyncio.DatagramProtocol):
    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # the selector's is not a subclass

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


def udp_echo(data: bytes) -> bytes:
    return data


@contextlib.asynccontextmanager
async def udp_server(answer: Callable[[bytes], bytes | None], host: str = "127.0.0.1") -> AsyncIterator[int]:
    """An asyncio UDP server in the test's loop that answers each datagram with
    answer(datagram) (None: no reply, a silent server); yields its port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Answering(answer), local_addr=(host, 0))
    try:
        yield int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()


def udp_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.connect(("127.0.0.1", port))
        sock.send(b"ready?")
        try:
            return sock.recv(64) == b"ready?"
        except OSError:  # no reply yet, or refused: not listening yet
            return False


class UdpEchoServer(ServerProcess):
    """udp_server(udp_echo) in a process of its own, so tests can stop and pause it."""

    def __init__(self) -> None:
        self.port = udp_closed_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.servers.udp_echo", str(self.port)],
            cwd=Path(__file__).parents[3],
        )
        wait_until(lambda: udp_answers(self.port), f"UDP echo on port {self.port}")


async def _serve_udp(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: _Answering(udp_echo), local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve_udp(int(sys.argv[1])))
