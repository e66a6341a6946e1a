"""Idle and half-open HTTP clients cannot starve the probes of sockets."""

from __future__ import annotations

import resource
import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from probed.connections import MAX_CONNECTIONS, MIN_CONNECTIONS, connection_limit
from tests.support.checks import NO_LEVELS_YAML
from tests.support.net import free_port, http_get
from tests.support.probed import serving, write_config

PARTIAL_REQUEST = b"GET /health HTTP/1.1\r\nHost: probed\r\n"  # the blank line never comes


def disk_config(tmp_path: Path, idle_timeout: str = "10m") -> str:
    """A config for `probed serve` with one passing disk check."""
    return write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{free_port()}', idle_timeout: {idle_timeout}}}\n"
        f"checks:\n  tmp: {{type: disk, path: '{tmp_path}', interval: 1s, timeout: 500ms, {NO_LEVELS_YAML}}}\n",
    )


def half_open_client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(PARTIAL_REQUEST)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Read what is left until the server closes (True) or the socket's timeout passes (False)."""
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_probes_answer_while_hundreds_of_clients_hold_half_sent_requests(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1000:  # the test itself holds 600 sockets
        if hard != resource.RLIM_INFINITY and hard < 1000:
            pytest.skip(f"the test needs 1000 file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
    with serving(disk_config(tmp_path), nofile=256, until="ready") as served, ExitStack() as clients:
        base = served.base
        port = int(base.rsplit(":", 1)[1])
        socks = [clients.enter_context(half_open_client(port)) for _ in range(600)]
        assert http_get(f"{base}/health/live")[0] == 200
        assert http_get(f"{base}/health/ready")[0] == 200
        status, body = http_get(f"{base}/metrics")
        assert status == 200 and "probed_ready 1.0" in body
        # The oldest half-open clients were closed to make room; the newest still wait.
        for sock in socks:
            sock.settimeout(0.01)
        assert closed_by_server(socks[0])
        assert not closed_by_server(socks[-1])


def test_a_half_sent_request_is_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with serving(disk_config(tmp_path, idle_timeout="1s"), until="ready") as served:
        base = served.base
        port = int(base.rsplit(":", 1)[1])
        with half_open_client(port) as half_open, socket.create_connection(("127.0.0.1", port), timeout=10) as kept:
            kept.sendall(b"GET /health/live HTTP/1.1\r\nHost: probed\r\n\r\n")
            assert kept.recv(12) == b"HTTP/1.1 200"
            assert closed_by_server(half_open)  # no complete request within 1s
            assert closed_by_server(kept)  # kept alive, then idle for 1s


def test_the_connection_limit_leaves_most_descriptors_to_the_checks() -> None:
    assert connection_limit(256) == 64
    assert connection_limit(1024) == 256
    assert connection_limit(20) == MIN_CONNECTIONS
    assert connection_limit(1 << 20) == MAX_CONNECTIONS
    assert connection_limit(resource.RLIM_INFINITY) == MAX_CONNECTIONS
