"""tcp check against real listeners: open, refused, silent, talking, TLS, IPv6."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from probed.config import ConfigError
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port, open_fds

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def tcp_server(handler: Handler, host: str = "127.0.0.1", tls: Certificate | None = None) -> AsyncIterator[int]:
    """A real asyncio TCP server on a free port running `handler` per connection."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the check hung up first: fine
        finally:
            writer.close()

    context = tls.server_context() if tls else None
    server = await asyncio.start_server(serve, host, 0, ssl=context)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def greets(banner: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        await reader.read(1)  # stay open until the client goes

    return handler


async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A line protocol: PING -> +PONG, anything else is echoed back with -ERR."""
    line = await reader.readline()
    writer.write(b"+PONG\r\n" if line == b"PING\r\n" else b"-ERR unknown " + line)
    await writer.drain()


async def test_an_open_port_passes() -> None:
    with silent_listener() as port:  # the kernel completes the handshake: open
        result = await run_check({"type": "tcp", "host": "127.0.0.1", "port": port})
    assert result.status is Status.PASS, result.output
    assert result.output == f"tcp://127.0.0.1:{port}: connected"
    assert next(iter(result.observed)) == "connect_time"
    assert float(result.observed["connect_time"].value) > 0
    assert result.observed["addresses"].value == 1


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "tcp", "host": "127.0.0.1", "port": port})
    assert result.status is Status.FAIL and result.reason is Reason.REFUSED
    assert result.output == f"tcp://127.0.0.1:{port}: connection refused"


async def test_unresolvable_name() -> None:
    result = await run_check({"type": "tcp", "host": "broker.invalid", "port": 5672})
    assert result.status is Status.FAIL and result.reason is Reason.DNS, result.output
    assert result.output.startswith("tcp://broker.invalid:5672: name not resolved")


async def test_a_name_is_resolved_and_its_address_named(tmp_path: Path) -> None:
    async with tcp_server(await greets(b"hello\r\n")) as port:
        result = await run_check({"type": "tcp", "host": "localhost", "port": port, "ip_family": "ipv4"})
    assert result.status is Status.PASS, result.output
    refused = await run_check({"type": "tcp", "host": "localhost", "port": closed_port(), "ip_family": "ipv4"})
    assert refused.reason is Reason.REFUSED
    assert "(127.0.0.1): connection refused" in refused.output


async def test_send_and_expect() -> None:
    async with tcp_server(pong) as port:
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "send": "PING\\r\\n", "expect": "^\\+PONG"}
        )
    assert result.status is Status.PASS, result.output
    assert result.output == f"tcp://127.0.0.1:{port}: connected, sent, answer matches /^\\+PONG/"


async def test_wrong_banner_is_unexpected_and_shows_what_came() -> None:
    async with tcp_server(await greets(b"SSH-2.0-OpenSSH_9.2\r\n")) as port:
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "expect": "^220 ", "timeout": "500ms"}
        )
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert "answered 'SSH-2.0-OpenSSH_9.2\\r\\n' and said nothing more within 450ms, no match for /^220 /" in (
        result.output
    )
    assert "connect_time" in result.observed


async def test_a_peer_that_closes_without_the_answer() -> None:
    async with tcp_server(pong) as port:
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "send": "HELLO\n", "expect": "PONG"}
        )
    assert result.reason is Reason.UNEXPECTED
    # What was sent is masked even in the echo: it might have been a login.
    assert "answered '-ERR unknown ***\\n' and closed the connection, no match for /PONG/" in result.output


async def test_reading_stops_at_max_read_bytes() -> None:
    async with tcp_server(await greets(b"x" * 100_000)) as port:
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "expect": "never", "max_read_bytes": 1000}
        )
    assert result.reason is Reason.UNEXPECTED
    assert "sent max_read_bytes (1000 bytes)" in result.output


async def test_a_silent_peer_times_out_saying_so() -> None:
    with silent_listener() as port:
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "expect": "^220", "timeout": "300ms"}
        )
    assert result.status is Status.FAIL and result.reason is Reason.TIMEOUT
    assert result.output == f"tcp://127.0.0.1:{port}: connected, but nothing received within 270ms"


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc.strerror}")
    async with tcp_server(await greets(b"220 ready\r\n"), host="::1") as port:
        result = await run_check({"type": "tcp", "host": "::1", "port": port, "expect": "^220"})
    assert result.status is Status.PASS, result.output
    assert result.output.startswith(f"tcp://[::1]:{port}: connected")
    refused = await run_check({"type": "tcp", "host": "::1", "port": closed_port()})
    assert refused.reason is Reason.REFUSED


async def test_tls_verified_against_a_ca_file(tls_certificate: Certificate) -> None:
    async with tcp_server(await greets(b"* OK IMAP ready\r\n"), tls=tls_certificate) as port:
        base = {"type": "tcp", "host": "127.0.0.1", "port": port, "tls": True}
        verified = await run_check({**base, "ca_file": str(tls_certificate.cert_file), "expect": "^\\* OK"})
        untrusted = await run_check(base)
        wrong_name = await run_check(
            {**base, "ca_file": str(tls_certificate.cert_file), "server_name": "mail.example.com"}
        )
        unverified = await run_check({**base, "tls_verify": False})
    assert verified.status is Status.PASS, verified.output
    assert verified.output.endswith("connected, TLS ok, answer matches /^\\* OK/")
    assert str(verified.observed["tls_version"].value).startswith("TLSv1.")
    assert untrusted.reason is Reason.TLS and "certificate rejected: self-signed certificate" in untrusted.output
    assert wrong_name.reason is Reason.TLS and "mail.example.com" in wrong_name.output, wrong_name.output
    assert unverified.status is Status.PASS, unverified.output


async def test_tls_against_a_plain_server_is_a_tls_failure() -> None:
    async with tcp_server(await greets(b"220 plain text here\r\n" * 10)) as port:
        result = await run_check({"type": "tcp", "host": "127.0.0.1", "port": port, "tls": True, "tls_verify": False})
    assert result.status is Status.FAIL and result.reason is Reason.TLS, result.output


async def test_a_login_sent_is_never_shown() -> None:
    async with tcp_server(pong) as port:  # echoes what it does not understand
        result = await run_check(
            {"type": "tcp", "host": "127.0.0.1", "port": port, "send": "AUTH hunter2-secret\r\n", "expect": "^\\+OK"}
        )
    assert result.reason is Reason.UNEXPECTED
    assert "hunter2" not in result.output and "***" in result.output, result.output


def test_bad_send_or_expect_is_a_config_error() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"send": "PING\\q"}, "checks.t.send: unknown escape \\q"),
        ({"expect": "(unclosed"}, "checks.t.expect: invalid regular expression"),
        ({"port": 70000}, "port:"),
    ]
    for options, error in cases:
        with pytest.raises(ConfigError) as raised:
            check_from({"type": "tcp", "host": "127.0.0.1", "port": 1, **options})
        assert error in str(raised.value)


async def test_hung_peers_leave_no_descriptors_or_threads(tls_certificate: Certificate) -> None:
    """Run after run against a port that accepts and never answers: each
    run times out, and nothing (sockets, threads) piles up."""
    with silent_listener() as port:
        base = {"type": "tcp", "host": "127.0.0.1", "port": port, "timeout": "100ms", "interval": "1s"}
        checks = [check_from({**base, "expect": "x"}), check_from({**base, "tls": True, "tls_verify": False})]
        fds, threads = open_fds(), threading.active_count()
        for check in checks:
            results = [await run_once(check) for _ in range(15)]
            assert {r.reason for r in results} == {Reason.TIMEOUT}, results[-1].output
        await asyncio.sleep(0.05)  # transports close on the loop's next turn
        assert open_fds() <= fds
        assert threading.active_count() <= threads


def test_every_address_of_a_name(tmp_path: Path) -> None:
    """`addresses: all` against a name with an IPv6 and an IPv4 address, one
    of them refusing. The name comes from an /etc/hosts of a private mount
    namespace, so probed runs as `probed check` inside `unshare`."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 both.test\n::1 both.test\n")
    with socket.socket() as v4:
        v4.bind(("127.0.0.1", 0))
        v4.listen(8)
        port = v4.getsockname()[1]
        check = {"type": "tcp", "host": "both.test", "port": port}
        checks = {"all": {**check, "addresses": "all"}, "ipv4": {**check, "ip_family": "ipv4"}}
        only_v4 = probed_check_with_hosts(tmp_path, hosts, checks)
        with socket.socket(socket.AF_INET6) as v6:
            v6.bind(("::1", port))
            v6.listen(8)
            both = probed_check_with_hosts(tmp_path, hosts, checks)
    assert only_v4["all"]["reason"] == "refused"
    assert only_v4["all"]["output"] == f"1 of 2 addresses failed: tcp://both.test:{port} (::1): connection refused"
    assert only_v4["all"]["observed"]["addresses"]["value"] == 2
    assert "connect_time" in only_v4["all"]["observed"]  # the address that answered still counts
    assert only_v4["ipv4"]["status"] == "pass", only_v4["ipv4"]["output"]
    assert both["all"]["status"] == "pass", both["all"]


def probed_check_with_hosts(tmp_path: Path, hosts: Path, checks: Mapping[str, object]) -> dict[str, dict[str, Any]]:
    """`probed check -o json` in a mount namespace whose /etc/hosts is `hosts`: each check's result."""
    config = tmp_path / "probed.yaml"
    config.write_text(yaml.safe_dump({"checks": checks}))
    script = f"mount --bind {hosts} /etc/hosts && exec {sys.executable} -m probed check -o json -c {config}"
    done = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    if not done.stdout:
        pytest.skip(f"cannot make a private mount namespace here: {done.stderr.strip()[-300:]}")
    return {name: results[0] for name, results in json.loads(done.stdout)["checks"].items()}


HUNG_DNS_SCRIPT = """
import asyncio, json, os, socket, threading
from probed.runner import run_once
from tests.support.checks import check_from

silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.1", 53))  # a DNS server that never answers


async def main() -> None:
    options = {"host": "db.example.test", "port": 5432, "timeout": "100ms", "interval": "1s"}
    checks = [check_from({"type": "tcp", **options}), check_from({"type": "tls", **options}, name="cert")]
    before = threading.active_count()
    results = [[await run_once(check) for _ in range(20)] for check in checks]
    print(json.dumps({
        "reasons": sorted({r.reason for runs in results for r in runs}),
        "last": [runs[-1].output for runs in results],
        "threads_added": threading.active_count() - before,
    }), flush=True)
    os._exit(0)  # the hung lookups would keep the interpreter from exiting for a resolver timeout


asyncio.run(main())
"""


def test_a_dead_dns_server_costs_one_thread_per_check(tmp_path: Path) -> None:
    """tcp and tls resolve in a thread: against a DNS server that never
    answers, run after run times out and each check holds one thread, not
    one per run. The DNS server and resolv.conf live in a private network
    and mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
    script = tmp_path / "hung_dns.py"
    script.write_text(HUNG_DNS_SCRIPT)
    shell = f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && exec {sys.executable} {script}"
    root = Path(__file__).parent.parent
    done = subprocess.run(
        ["unshare", "--mount", "--net", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(root)},
    )
    if not done.stdout:
        pytest.skip(f"cannot make private network and mount namespaces here: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout)
    assert report["reasons"] == ["timeout"], report
    assert report["last"] == [
        "tcp://db.example.test:5432: the previous lookup is still waiting",
        "tls://db.example.test:5432: the previous lookup is still waiting",
    ]
    assert report["threads_added"] <= 2  # one hung lookup per check
