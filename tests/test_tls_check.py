"""tls check against real TLS endpoints, SMTP and PostgreSQL STARTTLS, and
certificate files, with certificates generated per test."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from probed.config import ConfigError
from probed.metrics import ConfigLoad, create_registry
from probed.model import Reason, Result, Status
from probed.runner import run_once
from probed.scheduler import SchedulerLoad
from probed.store import Store
from tests.support.certificates import Certificate, issue_certificate, tls_endpoint
from tests.support.checks import check_from, run_check
from tests.support.faults import hung_filesystem, silent_listener
from tests.support.net import closed_port, open_fds
from tests.support.servers.postgres import PostgresServer
from tests.support.servers.smtp import SmtpServer


@pytest.fixture
def ca(tmp_path: Path) -> Certificate:
    return issue_certificate(tmp_path, "probed test CA", days=365, ca=True)


async def check_endpoint(certificate: Certificate, **options: Any) -> Result:
    async with tls_endpoint(certificate) as port:
        return await run_check({"type": "tls", "host": "127.0.0.1", "port": port, **options})


# -- endpoints ---------------------------------------------------------------------------------


async def test_valid_certificate_signed_by_a_ca(tmp_path: Path, ca: Certificate) -> None:
    leaf = issue_certificate(tmp_path, days=90, issuer=ca)
    result = await check_endpoint(leaf, ca_file=str(ca.cert_file))
    assert result.status is Status.PASS, result.output
    assert "verified; localhost, by probed test CA, expires" in result.output
    assert next(iter(result.observed)) == "days_left"
    assert 89 < float(result.observed["days_left"].value) <= 90
    assert result.observed["subject"].value == "localhost"
    assert result.observed["issuer"].value == "probed test CA"
    assert int(result.observed["not_after"].value) > 0


async def test_expiring_certificate_warns_then_fails(tmp_path: Path, ca: Certificate) -> None:
    leaf = issue_certificate(tmp_path, days=5, issuer=ca)
    warned = await check_endpoint(leaf, ca_file=str(ca.cert_file))  # warn_days: 14 by default
    failed = await check_endpoint(leaf, ca_file=str(ca.cert_file), fail_days=7)
    assert warned.status is Status.WARN and "days_left is" in warned.output and "below the warn level" in warned.output
    assert failed.status is Status.FAIL and failed.reason is Reason.TLS, failed.output


async def test_expired_certificate_is_rejected_and_still_dated(tmp_path: Path, ca: Certificate) -> None:
    leaf = issue_certificate(tmp_path, days=-2, issuer=ca)
    verified = await check_endpoint(leaf, ca_file=str(ca.cert_file))
    unverified = await check_endpoint(leaf, tls_verify=False)
    assert verified.status is Status.FAIL and verified.reason is Reason.TLS
    assert "certificate rejected: certificate has expired" in verified.output
    assert float(verified.observed["days_left"].value) < -1  # fetched again, unverified, for the dates
    assert unverified.status is Status.FAIL and unverified.reason is Reason.TLS
    assert "certificate expired on" in unverified.output and "(2 days ago)" in unverified.output


async def test_wrong_name(tmp_path: Path, ca: Certificate) -> None:
    leaf = issue_certificate(tmp_path, days=90, issuer=ca)
    result = await check_endpoint(leaf, ca_file=str(ca.cert_file), server_name="db.example.com")
    assert result.status is Status.FAIL and result.reason is Reason.TLS
    assert "certificate rejected: Hostname mismatch" in result.output and "(wrong name)" in result.output


async def test_self_signed_certificate(tmp_path: Path) -> None:
    self_signed = issue_certificate(tmp_path, days=90)
    rejected = await check_endpoint(self_signed)
    trusted = await check_endpoint(self_signed, ca_file=str(self_signed.cert_file))
    assert rejected.status is Status.FAIL and rejected.reason is Reason.TLS
    assert "certificate rejected: self-signed certificate" in rejected.output
    assert trusted.status is Status.PASS, trusted.output


async def test_ipv6_endpoint(tmp_path: Path, ca: Certificate) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc.strerror}")
    leaf = issue_certificate(tmp_path, days=90, issuer=ca)
    async with tls_endpoint(leaf, host="::1") as port:
        result = await run_check(
            {"type": "tls", "host": "::1", "port": port, "server_name": "localhost", "ca_file": str(ca.cert_file)}
        )
    assert result.status is Status.PASS, result.output
    assert result.output.startswith(f"tls://[::1]:{port}: TLSv1.")


async def test_refused_unresolvable_and_silent_endpoints() -> None:
    refused = await run_check({"type": "tls", "host": "127.0.0.1", "port": closed_port()})
    unresolved = await run_check({"type": "tls", "host": "www.invalid"})
    with silent_listener() as port:
        silent = await run_check({"type": "tls", "host": "127.0.0.1", "port": port, "timeout": "2s"})
    assert refused.reason is Reason.REFUSED, refused.output
    assert unresolved.reason is Reason.DNS and unresolved.output.startswith("tls://www.invalid:443: name not resolved")
    assert silent.reason is Reason.TIMEOUT and silent.output.endswith(": TLS handshake timed out"), silent.output


async def test_hung_endpoints_leave_no_descriptors_or_threads() -> None:
    with silent_listener() as port:
        base = {"type": "tls", "host": "127.0.0.1", "port": port, "timeout": "100ms", "interval": "1s"}
        checks = [
            check_from(base),
            check_from({**base, "starttls": "smtp"}),
            check_from({**base, "starttls": "postgres"}),
        ]
        fds, threads = open_fds(), threading.active_count()
        for check in checks:
            results = [await run_once(check) for _ in range(10)]
            assert {r.reason for r in results} == {Reason.TIMEOUT}, results[-1].output
            step = f"STARTTLS ({check.options.starttls})" if check.options.starttls else "TLS handshake"
            assert results[-1].output.endswith(f"{step} timed out"), results[-1].output
        await asyncio.sleep(0.05)  # aborted transports close on the loop's next turn
        assert open_fds() <= fds
        assert threading.active_count() <= threads


# -- STARTTLS ------------------------------------------------------------------------------------


@pytest.fixture
def starttls_smtp(tmp_path: Path, ca: Certificate) -> Iterator[SmtpServer]:
    server = SmtpServer(tls_context=issue_certificate(tmp_path, days=30, issuer=ca).server_context())
    server.start()
    yield server
    server.stop()


async def test_smtp_starttls(starttls_smtp: SmtpServer, ca: Certificate) -> None:
    options = {"type": "tls", "host": "127.0.0.1", "port": starttls_smtp.port, "starttls": "smtp"}
    verified = await run_check({**options, "ca_file": str(ca.cert_file)})
    untrusted = await run_check(options)
    assert verified.status is Status.PASS, verified.output
    assert 29 < float(verified.observed["days_left"].value) <= 30
    assert untrusted.reason is Reason.TLS and "the issuer is not a trusted CA" in untrusted.output


async def test_smtp_without_starttls(smtp_server: SmtpServer) -> None:
    result = await run_check({"type": "tls", "host": "127.0.0.1", "port": smtp_server.port, "starttls": "smtp"})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert result.output == f"tls://127.0.0.1:{smtp_server.port}: server does not offer STARTTLS"


@pytest.fixture
def postgres_with_ssl(own_postgres: PostgresServer, tmp_path: Path, ca: Certificate) -> PostgresServer:
    """The test's own PostgreSQL restarted with ssl = on and a certificate from `ca`."""
    leaf = issue_certificate(tmp_path, days=60, issuer=ca)
    own_postgres.stop()
    own_postgres.enable_tls(leaf.cert_file, leaf.key_file)
    own_postgres.start()
    return own_postgres


async def test_postgres_starttls(postgres_with_ssl: PostgresServer, ca: Certificate) -> None:
    options = {"type": "tls", "host": "127.0.0.1", "port": postgres_with_ssl.port, "starttls": "postgres"}
    result = await run_check({**options, "ca_file": str(ca.cert_file)})
    assert result.status is Status.PASS, result.output
    assert 59 < float(result.observed["days_left"].value) <= 60


async def test_postgres_without_ssl(postgres: PostgresServer) -> None:
    result = await run_check({"type": "tls", "host": "127.0.0.1", "port": postgres.port, "starttls": "postgres"})
    assert result.status is Status.FAIL and result.reason is Reason.TLS
    assert result.output.endswith("PostgreSQL does not accept TLS here (ssl = off)")


# -- files -------------------------------------------------------------------------------------------


async def test_file_valid_expiring_and_expired(tmp_path: Path) -> None:
    valid = await run_check({"type": "tls", "file": str(issue_certificate(tmp_path, days=90).cert_file)})
    expiring = await run_check({"type": "tls", "file": str(issue_certificate(tmp_path, days=3).cert_file)})
    expired = await run_check({"type": "tls", "file": str(issue_certificate(tmp_path, days=-10).cert_file)})
    assert valid.status is Status.PASS, valid.output
    assert "1 certificate; localhost, by localhost, expires" in valid.output
    assert expiring.status is Status.WARN, expiring.output
    assert expired.status is Status.FAIL and expired.reason is Reason.TLS
    assert "certificate expired on" in expired.output and "(10 days ago)" in expired.output


async def test_a_rotated_file_is_seen_at_the_next_run(tmp_path: Path) -> None:
    """A Kubernetes secret is updated in place: the next run reads the new one."""
    issue_certificate(tmp_path, days=3, file_name="tls")
    check = check_from({"type": "tls", "file": str(tmp_path / "tls.crt")})
    before = await run_once(check)
    issue_certificate(tmp_path, days=90, file_name="tls")
    after = await run_once(check)
    assert before.status is Status.WARN, before.output
    assert after.status is Status.PASS, after.output
    assert float(after.observed["days_left"].value) > 89


async def test_file_chain_is_judged_by_the_first_to_expire(tmp_path: Path) -> None:
    intermediate = issue_certificate(tmp_path, "intermediate", days=5, ca=True)
    leaf = issue_certificate(tmp_path, days=60, issuer=intermediate)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(leaf.cert_file.read_bytes() + intermediate.cert_file.read_bytes())
    result = await run_check({"type": "tls", "file": str(bundle)})
    assert result.status is Status.WARN, result.output
    assert result.observed["subject"].value == "intermediate"
    assert "2 certificates, the first to expire" in result.output


async def test_file_name_and_chain_verification(tmp_path: Path, ca: Certificate) -> None:
    leaf = issue_certificate(tmp_path, days=90, issuer=ca)
    stranger = issue_certificate(tmp_path, "localhost", days=90, file_name="stranger")
    base = {"type": "tls", "file": str(leaf.cert_file)}
    right = await run_check({**base, "server_name": "localhost", "ca_file": str(ca.cert_file)})
    wrong = await run_check({**base, "server_name": "db.example.com"})
    untrusted = await run_check(
        {"type": "tls", "file": str(stranger.cert_file), "server_name": "localhost", "ca_file": str(ca.cert_file)}
    )
    assert right.status is Status.PASS, right.output
    assert wrong.status is Status.FAIL and wrong.reason is Reason.TLS
    assert wrong.output.endswith("certificate is not valid for 'db.example.com'")
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS
    assert untrusted.output.endswith(f"certificate rejected: not issued by a CA in {ca.cert_file}")
    expired = issue_certificate(tmp_path, days=-1, issuer=ca, file_name="expired")
    dated = await run_check(
        {"type": "tls", "file": str(expired.cert_file), "server_name": "localhost", "ca_file": str(ca.cert_file)}
    )
    assert dated.reason is Reason.TLS and "certificate expired on" in dated.output, dated.output


async def test_missing_and_garbage_files(tmp_path: Path) -> None:
    garbage = tmp_path / "tls.crt"
    garbage.write_text("not a certificate\n")
    missing = await run_check({"type": "tls", "file": str(tmp_path / "gone.crt")})
    broken = await run_check({"type": "tls", "file": str(garbage)})
    assert missing.status is Status.FAIL and missing.output == f"{tmp_path / 'gone.crt'}: no such file"
    assert broken.status is Status.FAIL and broken.reason is Reason.TLS
    assert broken.output == f"{garbage}: no PEM certificate in it"


async def test_a_file_on_a_hung_mount_costs_one_thread(tmp_path: Path) -> None:
    with hung_filesystem(tmp_path / "secrets") as mount:
        check = check_from({"type": "tls", "file": str(mount / "tls.crt"), "timeout": "100ms", "interval": "1s"})
        threads = threading.active_count()
        results = [await run_once(check) for _ in range(20)]
        assert {r.reason for r in results} == {Reason.TIMEOUT}
        assert results[-1].output.endswith("the previous read is still blocked")
        assert threading.active_count() <= threads + 1  # the one hung read


# -- configuration and metrics -------------------------------------------------------------------------


def test_contradicting_options_are_config_errors(tmp_path: Path, ca: Certificate) -> None:
    pem = str(ca.cert_file)
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "checks.t: give host (an endpoint) or file (a PEM certificate)"),
        ({"host": "a", "file": pem}, "checks.t.file: give host (an endpoint) or file (a PEM certificate), not both"),
        ({"file": pem, "starttls": "smtp"}, "starttls: only for an endpoint"),
        ({"file": pem, "ca_file": pem}, "ca_file: with file, verifying needs server_name"),
        ({"host": "a", "warn_days": 3, "fail_days": 7}, "warn_days (3) must not be below fail_days (7)"),
        ({"host": "a", "starttls": "imap"}, "starttls:"),
    ]
    for options, error in cases:
        with pytest.raises(ConfigError) as raised:
            check_from({"type": "tls", **options})
        assert error in str(raised.value)


async def test_expiry_gauge_is_one_family_with_the_http_check(tmp_path: Path) -> None:
    """tls and http export the certificate's expiry under one metric name."""
    tls = check_from({"type": "tls", "file": str(issue_certificate(tmp_path, days=30).cert_file)}, name="cert")
    http = check_from({"type": "http", "url": "https://127.0.0.1:1/"}, name="web")
    store = Store([tls, http])
    store.record("cert", await run_once(tls))

    class Source:
        config_load = ConfigLoad()

        def __init__(self) -> None:
            self.store = store

        def alive(self) -> bool:
            return True

        def peer_requests(self) -> dict[str, int]:
            return {}

        def scheduler_load(self) -> SchedulerLoad:
            return SchedulerLoad(max_concurrency=64, waiting=0, saturated=False, late_runs=0)

    text = generate_latest(create_registry(Source())).decode()
    family = "probed_tls_cert_expiry_timestamp_seconds"
    assert text.count(f"# TYPE {family} gauge") == 1
    assert f'{family}{{check="cert",type="tls"}}' in text
