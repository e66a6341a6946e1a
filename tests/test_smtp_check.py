"""smtp check against a real SMTP server (aiosmtpd), plain, STARTTLS and TLS."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from probed.model import Reason, Status
from tests.support.certificates import Certificate
from tests.support.checks import run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.smtp import SmtpServer


@pytest.fixture
def starttls_server(tls_certificate: Certificate) -> Iterator[SmtpServer]:
    server = SmtpServer(tls_context=tls_certificate.server_context(), user=("probe", PASSWORD))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def implicit_tls_server(tls_certificate: Certificate) -> Iterator[SmtpServer]:
    server = SmtpServer(tls_context=tls_certificate.server_context(), implicit_tls=True)
    server.start()
    yield server
    server.stop()


async def test_plain_conversation(smtp_server: SmtpServer) -> None:
    result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": smtp_server.port})
    assert result.status is Status.PASS, result.output
    assert result.output == f"smtp://127.0.0.1:{smtp_server.port}: banner, EHLO, NOOP ok"
    assert result.observed["banner_code"].value == 220
    assert result.observed["tls"].value is False


async def test_starttls_and_auth(starttls_server: SmtpServer, tls_certificate: Certificate) -> None:
    result = await run_check(
        {
            "type": "smtp",
            "host": "127.0.0.1",
            "port": starttls_server.port,
            "starttls": True,
            "ca_file": str(tls_certificate.cert_file),
            "username": "probe",
            "password": PASSWORD,
        }
    )
    assert result.status is Status.PASS, result.output
    assert result.output.endswith("banner, EHLO, STARTTLS, AUTH, NOOP ok")
    assert result.observed["tls"].value is True


async def test_starttls_with_an_untrusted_certificate_is_tls(starttls_server: SmtpServer) -> None:
    result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": starttls_server.port, "starttls": True})
    assert result.status is Status.FAIL
    assert result.reason is Reason.TLS, result.output


async def test_starttls_not_offered(smtp_server: SmtpServer) -> None:
    result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": smtp_server.port, "starttls": True})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert "does not offer STARTTLS" in result.output


async def test_wrong_password_is_auth(starttls_server: SmtpServer) -> None:
    result = await run_check(
        {
            "type": "smtp",
            "host": "127.0.0.1",
            "port": starttls_server.port,
            "starttls": True,
            "tls_verify": False,
            "username": "probe",
            "password": "wrong-one",
        }
    )
    assert result.status is Status.FAIL
    assert result.reason is Reason.AUTH, result.output
    assert "wrong-one" not in result.output


async def test_implicit_tls(implicit_tls_server: SmtpServer, tls_certificate: Certificate) -> None:
    result = await run_check(
        {
            "type": "smtp",
            "host": "127.0.0.1",
            "port": implicit_tls_server.port,
            "tls": True,
            "ca_file": str(tls_certificate.cert_file),
        }
    )
    assert result.status is Status.PASS, result.output
    assert result.observed["tls"].value is True


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": port})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED, result.output


async def test_unresolvable_host() -> None:
    result = await run_check({"type": "smtp", "host": "mail.invalid", "port": 25})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output


async def test_silent_server_times_out() -> None:
    with silent_listener() as port:
        result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": port, "timeout": "400ms"})
    assert result.reason is Reason.TIMEOUT


async def test_unexpected_banner_code(smtp_server: SmtpServer) -> None:
    result = await run_check({"type": "smtp", "host": "127.0.0.1", "port": smtp_server.port, "expect_banner_code": 554})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert "greeted with 220, expected 554" in result.output
