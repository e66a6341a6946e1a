"""websocket check against a real aiohttp WebSocket server of the tests' own, and real faults:
stopped, paused, accept-and-hang, close at once, garbage, 500, wrong reply, wrong subprotocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from probed.config import ConfigError
from probed.daemon import Daemon
from probed.metrics import render
from probed.model import Reason, Result, Status
from probed.runner import run_once
from tests.support.apps import serve_app
from tests.support.certificates import Certificate
from tests.support.checks import check_from, config_from, run_check, sockets_after_failing_runs
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.websocket import WS_SUBPROTOCOL, WS_TOKEN, WebsocketServer, websocket_app


@pytest.fixture
async def ws_url() -> AsyncIterator[str]:
    """ws://127.0.0.1:PORT of websocket_app() in the test's own loop."""
    async with serve_app(websocket_app()) as url:
        yield url.replace("http://", "ws://")


@pytest.fixture
def ws_process() -> Iterator[WebsocketServer]:
    server = WebsocketServer()
    server.start()
    yield server
    server.stop()


def ws(url: str, **options: Any) -> dict[str, Any]:
    return {"type": "websocket", "url": url, "timeout": "1s", **options}


async def test_echo_with_subprotocol_message_and_ping(ws_url: str) -> None:
    options = ws(f"{ws_url}/echo", subprotocol=WS_SUBPROTOCOL, send="hello\\x21", expect_contains="hello!")
    result = await run_check(options)
    assert result.status is Status.PASS, result.output
    assert result.output == f"{ws_url}/echo: upgraded, subprotocol {WS_SUBPROTOCOL}, sent, reply ok, pong"
    assert list(result.observed) == [
        *("handshake_time", "connect_time", "first_byte_time"),  # an address: no lookup; ws://: no TLS
        *("subprotocol", "reply_time", "ping_time"),
    ]
    ping = result.observed["ping_time"]
    assert ping.unit == "s" and isinstance(ping.value, float) and ping.value > 0


async def test_plain_upgrade_and_ping(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/echo"))
    without_ping = await run_check(ws(f"{ws_url}/echo", ping=False))
    assert result.status is Status.PASS and result.output == f"{ws_url}/echo: upgraded, pong"
    assert without_ping.output == f"{ws_url}/echo: upgraded" and "ping_time" not in without_ping.observed


async def test_greeting_without_sending_and_a_regex(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/greet", expect_regex="^welcome, \\w+$"))
    assert result.status is Status.PASS, result.output
    assert result.output == f"{ws_url}/greet: upgraded, reply ok, pong"


async def test_wrong_reply_is_unexpected(ws_url: str) -> None:
    contains = await run_check(ws(f"{ws_url}/wrong", send="abc", expect_contains="abc"))
    regex = await run_check(ws(f"{ws_url}/wrong", send="abc", expect_regex="^abc$"))
    assert contains.reason is Reason.UNEXPECTED and regex.reason is Reason.UNEXPECTED
    assert contains.output == f"{ws_url}/wrong: replied 'nope, not cba', which lacks 'abc'"
    assert regex.output == f"{ws_url}/wrong: replied 'nope, not cba', no match for /^abc$/"


async def test_server_pings_and_pushes_before_the_pong(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/chatty"))
    assert result.status is Status.PASS, result.output


async def test_wrong_subprotocol_is_unexpected(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/greet", subprotocol="other.v2"))
    assert result.reason is Reason.UNEXPECTED
    assert result.output == f"{ws_url}/greet: upgraded without the subprotocol 'other.v2'"


async def test_500_instead_of_upgrade(ws_url: str, target: str) -> None:
    result = await run_check(ws(f"{ws_url}/error"))
    missing = await run_check(ws(f"{ws_url}/nowhere"))
    plain_http = await run_check(ws(target.replace("http://", "ws://") + "/ok"))
    assert result.reason is Reason.UNEXPECTED
    assert result.output == f"{ws_url}/error: answered 500 instead of upgrading to WebSocket"
    assert missing.output.endswith("answered 404 instead of upgrading to WebSocket")
    assert plain_http.output.endswith("answered 200 instead of upgrading to WebSocket")


async def test_headers_and_login_with_secrets_masked(ws_url: str) -> None:
    url = f"{ws_url}/private"
    token = await run_check(ws(url, headers={"X-Api-Key": WS_TOKEN}, expect_contains="hello"))
    basic = await run_check(ws(url, username="probe", password=PASSWORD, expect_contains="hello"))
    echoed = await run_check(ws(url, headers={"X-Api-Key": WS_TOKEN}, expect_contains="bye"))
    echoed_basic = await run_check(ws(url, username="probe", password=PASSWORD, expect_contains="bye"))
    wrong = await run_check(ws(url, headers={"X-Api-Key": "not-the-token"}))
    assert token.status is Status.PASS and basic.status is Status.PASS, (token.output, basic.output)
    assert echoed.output == f"{url}: replied 'hello, ***', which lacks 'bye'"  # the server said the token back
    assert echoed_basic.output == f"{url}: replied 'hello, Basic ***', which lacks 'bye'"
    assert wrong.reason is Reason.AUTH and wrong.output == f"{url}: answered 401 instead of upgrading to WebSocket"
    assert "not-the-token" not in wrong.output


async def test_sent_message_is_never_shown(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/echo", send="login hunter2-password", expect_contains="nothing"))
    assert result.output == f"{ws_url}/echo: replied '***', which lacks 'nothing'"


async def test_server_closing_the_websocket_is_a_fast_unexpected(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/close", timeout="2s"))
    assert result.reason is Reason.UNEXPECTED
    assert result.output == f"{ws_url}/close: closed the WebSocket (code 1011) before the pong"


async def test_no_pong_times_out(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/no-pong", timeout="300ms"))
    assert result.reason is Reason.TIMEOUT, result.output


async def test_message_over_the_limit(ws_url: str) -> None:
    result = await run_check(ws(f"{ws_url}/big", expect_contains="x", max_message_bytes="64KiB"))
    assert result.reason is Reason.UNEXPECTED
    assert result.output == f"{ws_url}/big: sent a message over 65536 bytes"


async def test_refused_stopped_and_paused(ws_process: WebsocketServer) -> None:
    port = closed_port()
    refused = await run_check(ws(f"ws://127.0.0.1:{port}/echo"))
    check = check_from(ws(f"ws://127.0.0.1:{ws_process.port}/echo", send="hi", expect_contains="hi", timeout="300ms"))
    try:
        healthy = await run_once(check)
        ws_process.pause()
        try:
            paused = await run_once(check)
        finally:
            ws_process.resume()
        again = await run_once(check)
        ws_process.stop()
        stopped = await run_once(check)
    finally:
        await check.close()
    assert refused.reason is Reason.REFUSED and refused.output == f"ws://127.0.0.1:{port}/echo: connection refused"
    assert healthy.status is Status.PASS, healthy.output
    assert paused.reason is Reason.TIMEOUT, paused.output
    assert again.status is Status.PASS, again.output
    assert stopped.reason is Reason.REFUSED, stopped.output


async def test_wss(tls_certificate: Certificate) -> None:
    server = WebsocketServer(tls=(tls_certificate.cert_file, tls_certificate.key_file))
    server.start()
    try:
        url = f"wss://localhost:{server.port}/echo"
        verified = await run_check(ws(url, ca_file=str(tls_certificate.cert_file), send="hi", expect_contains="hi"))
        untrusted = await run_check(ws(url))
        unverified = await run_check(ws(url, tls_verify=False))
        plain = await run_check(ws(url.replace("wss://", "ws://")))
    finally:
        server.stop()
    assert verified.status is Status.PASS, verified.output
    assert untrusted.reason is Reason.TLS, untrusted.output
    assert unverified.status is Status.PASS, unverified.output
    assert plain.status is Status.FAIL and plain.reason is not Reason.TIMEOUT, plain.output


async def test_close_at_once_is_a_fast_error_and_garbage_is_unexpected() -> None:
    with answering_listener(b"") as closing, answering_listener(b"\x00\xff garbage\r\n\r\n") as garbage:
        closed = await run_check(ws(f"ws://127.0.0.1:{closing}/", timeout="2s"))
        nonsense = await run_check(ws(f"ws://127.0.0.1:{garbage}/", timeout="2s"))
    # A close at once may reach the client as a reset on a loaded machine: both are fast failures.
    assert closed.reason in (Reason.UNEXPECTED, Reason.ERROR), closed.output
    assert closed.output in (
        f"ws://127.0.0.1:{closing}/: closed the connection without upgrading",
        f"ws://127.0.0.1:{closing}/: connection reset by the server",
    )
    assert nonsense.reason is Reason.UNEXPECTED, nonsense.output
    assert nonsense.output.startswith(f"ws://127.0.0.1:{garbage}/: answered something that is not HTTP")


async def test_no_socket_outlives_a_run(ws_url: str) -> None:
    """20 runs each against a port that hangs, one that closes at once, one that sends garbage,
    and a WebSocket that never answers a ping (the run cancelled after the upgrade)."""
    port = int(ws_url.rsplit(":", 1)[1])
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"\x00\xff garbage\r\n\r\n") as garbage,
    ):
        for url, where in [
            (f"ws://127.0.0.1:{hanging}/", hanging),
            (f"ws://127.0.0.1:{closing}/", closing),
            (f"ws://127.0.0.1:{garbage}/", garbage),
            (f"{ws_url}/no-pong", port),
            (f"{ws_url}/wrong", port),
        ]:
            options = ws(url, timeout="50ms", send="x", expect_contains="yes")
            assert await sockets_after_failing_runs(options, where) == 0, url


# -- where the upgrade's time went: phases from aiohttp's trace hooks, as for http ----------

PHASE_NAMES = ("dns_time", "connect_time", "tls_time", "first_byte_time")


def phases(result: Result) -> dict[str, float]:
    return {name: float(result.observed[name].value) for name in PHASE_NAMES if name in result.observed}


def assert_within_handshake(result: Result) -> None:
    # Phases are intervals one after another inside the upgrade: never more than it took.
    spent = phases(result)
    assert all(value >= 0 and result.observed[name].unit == "s" for name, value in spent.items())
    assert sum(spent.values()) <= float(result.observed["handshake_time"].value)


async def test_phases_of_an_upgrade_by_name(ws_url: str) -> None:
    check = check_from(ws(f"{ws_url.replace('127.0.0.1', 'localhost')}/echo"))
    try:
        runs = [await run_once(check) for _ in range(3)]
    finally:
        await check.close()
    assert all(run.status is Status.PASS for run in runs), [run.output for run in runs]
    # Every run looks the name up and connects afresh; no TLS on ws://.
    assert all(set(phases(run)) == {"dns_time", "connect_time", "first_byte_time"} for run in runs)
    for run in runs:
        assert_within_handshake(run)


async def test_an_address_needs_no_lookup(ws_url: str) -> None:
    result = await run_check(
        ws(f"{ws_url}/echo", levels={"dns_time": {"fail_above": 0}, "tls_time": {"fail_above": 0}})
    )
    assert result.status is Status.PASS, result.output  # levels on phases the run had not are not judged
    assert set(phases(result)) == {"connect_time", "first_byte_time"}


async def test_wss_has_a_tls_phase(tls_certificate: Certificate) -> None:
    async with serve_app(websocket_app(), tls_certificate.server_context()) as url:
        wss = url.replace("https://127.0.0.1", "wss://localhost")
        verified = await run_check(ws(f"{wss}/echo", ca_file=str(tls_certificate.cert_file)))
        unverified = await run_check(ws(f"{wss}/echo".replace("localhost", "127.0.0.1"), tls_verify=False))
    assert verified.status is Status.PASS, verified.output
    assert set(phases(verified)) == set(PHASE_NAMES)
    assert phases(verified)["tls_time"] > 0
    assert_within_handshake(verified)
    assert unverified.status is Status.PASS, unverified.output
    assert set(phases(unverified)) == {"connect_time", "tls_time", "first_byte_time"}


async def test_a_slow_upgrade_shows_in_the_first_byte_phase(ws_url: str) -> None:
    options = ws(f"{ws_url}/slow?seconds=0.3", levels={"first_byte_time": {"warn_above": 0.2}})
    result = await run_check(options)
    assert result.status is Status.WARN and "first_byte_time is" in result.output, result.output
    assert phases(result)["first_byte_time"] >= 0.3  # the server waited 0.3 s before its 101
    assert_within_handshake(result)


async def test_phases_on_metrics(ws_url: str) -> None:
    daemon = Daemon(config_from({"feed": ws(f"{ws_url}/echo")}), initial_offset=lambda check: 3600.0)
    [check] = daemon.checks
    daemon.store.record("feed", await run_once(check))
    await check.close()
    metrics = render(daemon).decode()
    assert 'probed_websocket_phase_seconds{check="feed",phase="first_byte",type="websocket"} ' in metrics
    assert 'phase="tls"' not in metrics and 'phase="dns"' not in metrics  # ws:// to an address


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "http://127.0.0.1/"}, "url must be an absolute ws:// or wss:// URL"),
        ({"url": "ws://h/", "username": "probe"}, "username and password (or password_file) go together"),
        (
            {"url": "ws://h/", "username": "u", "password": "p", "headers": {"authorization": "Bearer x"}},
            "give one way to authenticate",
        ),
        ({"url": "ws://h/", "send": "\\q"}, "unknown escape"),
        ({"url": "ws://h/", "expect_regex": "("}, "invalid regular expression"),
    ],
)
def test_bad_options(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_from({"type": "websocket", **options})
    assert problem in str(error.value)
