"""memcached check against a real memcached (plain, with a login, over TLS) and real faults."""

from __future__ import annotations

import socket
from pathlib import Path

from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check, sockets_after_failing_runs
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.memcached import MemcachedServer


def raw(port: int, request: bytes) -> bytes:
    """One request on a connection of the test's own; the server's first reply line(s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(65536)


async def test_passes_with_stats_as_observed_values(memcached: MemcachedServer) -> None:
    result = await run_check({"type": "memcached", "host": "127.0.0.1", "port": memcached.port})
    assert result.status is Status.PASS, result.output
    version = str(result.observed["version"].value)
    assert version.startswith("1.")
    assert result.output == f"memcached://127.0.0.1:{memcached.port}: memcached {version}, stats ok"
    observed = result.observed
    assert next(iter(observed)) == "stats_time"
    connections = observed["curr_connections"].value
    assert isinstance(connections, int) and connections >= 1
    assert observed["evictions"].value == 0
    assert observed["limit_maxbytes"].value == 16 * 1024 * 1024
    assert "hit_ratio" not in observed  # no get yet: no ratio to speak of


async def test_write_test_sets_gets_and_deletes(memcached: MemcachedServer) -> None:
    check = check_from({"type": "memcached", "host": "127.0.0.1", "port": memcached.port, "write_test": True}, "cache")
    try:
        first = await run_once(check)
        second = await run_once(check)
    finally:
        await check.close()
    assert first.status is Status.PASS, first.output
    assert first.output.endswith("stats, set/get/delete ok")
    assert second.observed["hit_ratio"].value == 1.0  # the first run's get hit
    assert raw(memcached.port, b"get probed:cache\r\n") == b"END\r\n"  # deleted


async def test_levels_on_any_stat(memcached: MemcachedServer) -> None:
    base = {"type": "memcached", "host": "127.0.0.1", "port": memcached.port}
    fail = await run_check({**base, "levels": {"curr_connections": {"fail_above": 0}}})
    warn = await run_check({**base, "levels": {"threads": {"warn_below": 100}}})  # a stat not observed by default
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    assert "curr_connections" in fail.output
    assert warn.status is Status.WARN, warn.output
    assert warn.observed["threads"].value == 4


async def test_login(memcached_with_login: MemcachedServer, tmp_path: Path) -> None:
    secret = tmp_path / "memcached-password"
    secret.write_text(PASSWORD + "\n")
    base = {"type": "memcached", "host": "127.0.0.1", "port": memcached_with_login.port, "write_test": True}
    ok = await run_check({**base, "username": "probe", "password_file": str(secret)})
    wrong = await run_check({**base, "username": "probe", "password": "wrong-password"})
    anonymous = await run_check(base)
    assert ok.status is Status.PASS, ok.output
    assert wrong.status is Status.FAIL and wrong.reason is Reason.AUTH
    assert wrong.output == (
        f"memcached://127.0.0.1:{memcached_with_login.port}: login refused: 'CLIENT_ERROR authentication failure'"
    )
    assert "wrong-password" not in wrong.output
    assert anonymous.status is Status.FAIL and anonymous.reason is Reason.AUTH
    assert anonymous.output.endswith("the server requires a login (username, password)")


async def test_credentials_are_not_sent_to_a_server_that_asks_for_none(memcached: MemcachedServer) -> None:
    options = {"type": "memcached", "host": "127.0.0.1", "port": memcached.port}
    result = await run_check({**options, "username": "probe", "password": PASSWORD})
    assert result.status is Status.PASS, result.output
    assert raw(memcached.port, b"get probed\r\n") == b"END\r\n"  # no item holds the password


async def test_tls(tmp_path: Path, tls_certificate: Certificate) -> None:
    server = MemcachedServer(tmp_path / "memcached-tls", tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        base = {"type": "memcached", "host": "127.0.0.1", "port": server.port, "tls": True}
        verified = await run_check({**base, "ca_file": str(tls_certificate.cert_file), "write_test": True})
        untrusted = await run_check(base)
        plain = await run_check({**base, "tls": False})
    finally:
        server.stop()
    assert verified.status is Status.PASS, verified.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert plain.status is Status.FAIL and plain.reason is not Reason.TIMEOUT, plain.output


async def test_refused_and_stopped(memcached: MemcachedServer) -> None:
    port = closed_port()
    refused = await run_check({"type": "memcached", "host": "127.0.0.1", "port": port})
    memcached.stop()
    stopped = await run_check({"type": "memcached", "host": "127.0.0.1", "port": memcached.port})
    assert refused.status is Status.FAIL and refused.reason is Reason.REFUSED
    assert refused.output == f"memcached://127.0.0.1:{port}: connection refused"
    assert stopped.reason is Reason.REFUSED


async def test_paused_server_times_out_then_recovers(memcached: MemcachedServer) -> None:
    check = check_from({"type": "memcached", "host": "127.0.0.1", "port": memcached.port, "timeout": "300ms"})
    try:
        memcached.pause()
        try:
            paused = await run_once(check)
        finally:
            memcached.resume()
        again = await run_once(check)
    finally:
        await check.close()
    assert paused.status is Status.FAIL and paused.reason is Reason.TIMEOUT, paused.output
    assert again.status is Status.PASS, again.output


async def test_close_at_once_is_a_fast_error_and_garbage_is_unexpected() -> None:
    with answering_listener(b"") as closing, answering_listener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as garbage:
        closed = await run_check({"type": "memcached", "host": "127.0.0.1", "port": closing, "timeout": "2s"})
        nonsense = await run_check({"type": "memcached", "host": "127.0.0.1", "port": garbage, "timeout": "2s"})
    # A fast failure, never a timeout: a clean close, or a reset when the request was still unread.
    assert closed.output in (
        f"memcached://127.0.0.1:{closing}: closed the connection to stats",
        f"memcached://127.0.0.1:{closing}: connection reset by the server",
    )
    assert nonsense.reason is Reason.UNEXPECTED
    assert nonsense.output == f"memcached://127.0.0.1:{garbage}: answered 'HTTP/1.1 400 Bad Request' to stats"


async def test_no_socket_outlives_a_run() -> None:
    """20 runs each against a port that hangs, one that closes at once and one that sends garbage."""
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"\x00\xff garbage\r\n") as garbage,
    ):
        for port in (hanging, closing, garbage):
            options = {"type": "memcached", "host": "127.0.0.1", "port": port, "timeout": "50ms"}
            assert await sockets_after_failing_runs(options, port) == 0, f"port {port}"
