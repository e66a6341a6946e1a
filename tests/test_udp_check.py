"""udp check against a real asyncio UDP echo of the tests' own, and real faults: a closed port
(ICMP port unreachable), a silent server, a wrong reply, garbage, stopped and paused (SIGSTOP)."""

from __future__ import annotations

from typing import Any

import pytest

from probed.config import ConfigError
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.checks import check_from, run_check, sockets_after_failing_runs
from tests.support.net import UDP, udp_closed_port
from tests.support.servers.udp_echo import UDP_GARBAGE, UdpEchoServer, udp_echo, udp_server


def udp(port: int, host: str = "127.0.0.1", **options: Any) -> dict[str, Any]:
    return {"type": "udp", "host": host, "port": port, "timeout": "1s", **options}


async def test_echo_with_text_regex_and_hex() -> None:
    async with udp_server(udp_echo) as port:
        text = await run_check(udp(port, send="PING\\r\\n", expect_contains="PING", expect_regex="^PING\\r$"))
        binary = await run_check(udp(port, send_hex="de ad be ef 00", expect_hex_prefix="deadbe"))
        anything = await run_check(udp(port, send="hi"))
    assert text.status is Status.PASS, text.output
    assert text.output == f"udp://127.0.0.1:{port}: sent 6 bytes, reply ok (6 bytes)"
    assert list(text.observed) == ["reply_time", "reply_bytes"]
    reply_time = text.observed["reply_time"]
    assert reply_time.unit == "s" and isinstance(reply_time.value, float) and reply_time.value > 0
    assert binary.status is Status.PASS and binary.observed["reply_bytes"].value == 5, binary.output
    assert anything.output == f"udp://127.0.0.1:{port}: sent 2 bytes, replied (2 bytes)"


async def test_ipv6_and_a_name() -> None:
    async with udp_server(udp_echo, host="::1") as port6, udp_server(udp_echo) as port:
        literal = await run_check(udp(port6, host="::1", send="hi", expect_contains="hi"))
        named = await run_check(udp(port, host="localhost", ip_family="ipv4", send="hi"))
    assert literal.output == f"udp://[::1]:{port6}: sent 2 bytes, reply ok (2 bytes)"
    assert named.output == f"udp://localhost:{port} (127.0.0.1): sent 2 bytes, replied (2 bytes)"


async def test_wrong_reply_and_garbage_are_unexpected() -> None:
    async with udp_server(lambda data: b"nope, not " + data[::-1]) as wrong, udp_server(lambda _: UDP_GARBAGE) as junk:
        contains = await run_check(udp(wrong, send="abc", expect_contains="abc"))
        regex = await run_check(udp(wrong, send="abc", expect_regex="^abc$"))
        prefix = await run_check(udp(wrong, send="abc", expect_hex_prefix="616263"))
        garbage = await run_check(udp(junk, send="status", expect_regex="^ok"))
    where = f"udp://127.0.0.1:{wrong}"
    assert {r.reason for r in (contains, regex, prefix, garbage)} == {Reason.UNEXPECTED}
    assert contains.output == f"{where}: replied 'nope, not cba', which lacks 'abc'"
    assert regex.output == f"{where}: replied 'nope, not cba', no match for /^abc$/"
    assert prefix.output == f"{where}: replied 0x{b'nope, not cba'.hex()}, which does not start with 0x616263"
    assert garbage.output == f"udp://127.0.0.1:{junk}: replied '\\x00\ufffd\ufffd garbage \\x07', no match for /^ok/"
    assert garbage.observed["reply_bytes"].value == len(UDP_GARBAGE)


async def test_closed_port_is_refused_and_a_silent_server_times_out() -> None:
    closed = udp_closed_port()
    refused = await run_check(udp(closed, send="hi"))
    async with udp_server(lambda _: None) as silent:
        quiet = await run_check(udp(silent, send="hi", timeout="200ms"))
    assert refused.reason is Reason.REFUSED
    assert refused.output == f"udp://127.0.0.1:{closed}: port unreachable (ICMP): nothing listens there"
    assert quiet.reason is Reason.TIMEOUT
    assert quiet.output == f"udp://127.0.0.1:{silent}: sent 2 bytes, no reply within 180ms"


async def test_sent_datagram_is_never_shown() -> None:
    async with udp_server(lambda data: b"hello, " + data) as port:
        result = await run_check(udp(port, send="login hunter2-password", expect_contains="welcome"))
    assert result.output == f"udp://127.0.0.1:{port}: replied 'hello, ***', which lacks 'welcome'"


async def test_stopped_and_paused() -> None:
    server = UdpEchoServer()
    server.start()
    check = check_from(udp(server.port, send="hi", expect_contains="hi", timeout="300ms"))
    try:
        healthy = await run_once(check)
        server.pause()
        try:
            paused = await run_once(check)
        finally:
            server.resume()
        again = await run_once(check)
        server.stop()
        stopped = await run_once(check)
    finally:
        server.stop()
        await check.close()
    assert healthy.status is Status.PASS, healthy.output
    assert paused.reason is Reason.TIMEOUT, paused.output
    assert again.status is Status.PASS, again.output
    assert stopped.reason is Reason.REFUSED, stopped.output


async def test_no_socket_outlives_a_run() -> None:
    """20 runs each against a closed port, a silent server (the run cut at its
    deadline), a wrong reply and garbage."""
    async with (
        udp_server(lambda _: None) as silent,
        udp_server(lambda _: b"nope") as wrong,
        udp_server(lambda _: UDP_GARBAGE) as junk,
    ):
        for port in (udp_closed_port(), silent, wrong, junk):
            options = udp(port, send="x", expect_contains="yes", timeout="50ms")
            assert await sockets_after_failing_runs(options, port, tables=UDP) == 0, port


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({}, "give the datagram to send: send or send_hex (one of them)"),
        ({"send": "a", "send_hex": "61"}, "give the datagram to send: send or send_hex (one of them)"),
        ({"send_hex": "6g"}, "must be pairs of hex digits"),
        ({"send": "a", "expect_hex_prefix": "abc"}, "must be pairs of hex digits"),
        ({"send": "\\q"}, "unknown escape"),
        ({"send": "a", "expect_regex": "("}, "invalid regular expression"),
        ({"send": "a", "port": 0}, "port"),
    ],
)
def test_bad_options(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_from({"type": "udp", "host": "127.0.0.1", "port": 53, **options})
    assert problem in str(error.value)
