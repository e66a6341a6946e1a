"""Ports, waiting and plain HTTP for tests: a free or closed port, whether one is
open, a GET that never raises, polling a URL, and the sockets a process holds."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    return free_port()


def udp_closed_port() -> int:
    """A UDP port nothing listens on: a datagram to it draws an ICMP port unreachable."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http_get(url: str, timeout: float = 5, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a plain GET, 4xx and 5xx included; (0, reason) when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def poll(
    url: str, until: Callable[[int, str], bool], seconds: float = 20, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """GET a URL every 100 ms until `until(status, body)`; the last answer."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = http_get(url, headers=headers)
        if until(status, body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never got there; last answer {status}: {body[:300]}")
        time.sleep(0.1)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


TCP = ("tcp", "tcp6")  # the tables of /proc/<pid>/net sockets_to reads by default
UDP = ("udp", "udp6")


async def sockets_left(port: int | None, settle: float = 1.0, tables: tuple[str, ...] = TCP) -> int:
    """sockets_to(port) once the ends of the runs have played out: a
    cancelled run aborts its transport in the next iteration of the loop,
    the socket closes in the one after, and a driver's own threads close
    theirs soon after. A socket still there after `settle` seconds stays."""
    for _ in range(3):
        await asyncio.sleep(0)
    deadline = asyncio.get_running_loop().time() + settle
    while (count := sockets_to(port, tables)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return count


def sockets_to(port: int | None, tables: tuple[str, ...] = TCP) -> int:
    """This process's sockets to a remote port (any port: None), in any state,
    from /proc/thread-self/net/<table> (the calling thread's network namespace)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the directory's own descriptor, gone by now
            inodes.add(os.readlink(f"/proc/self/fd/{fd}"))
    count = 0
    for table in tables:
        with contextlib.suppress(FileNotFoundError), open(f"/proc/thread-self/net/{table}") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if (port is None or remote_port == port) and f"socket:[{fields[9]}]" in inodes:
                    count += 1
    return count
