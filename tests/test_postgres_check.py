"""postgres check against a real PostgreSQL, and real faults."""

from __future__ import annotations

import os

from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check
from tests.support.faults import pause_process, silent_listener
from tests.support.net import closed_port
from tests.support.servers import ENCODED_PASSWORD, PASSWORD
from tests.support.servers.postgres import PostgresServer


async def test_passes_against_a_healthy_server(postgres: PostgresServer) -> None:
    result = await run_check({"type": "postgres", "dsn": postgres.dsn()})
    assert result.status is Status.PASS, result.output
    assert result.output == f"postgresql://probe:***@127.0.0.1:{postgres.port}/app: primary, query ok"
    assert result.observed["value"].value == 1
    assert result.observed["in_recovery"].value is False
    assert str(result.observed["server_version"].value)[0].isdigit()


async def test_host_fields_and_password_file(postgres: PostgresServer, tmp_path: object) -> None:
    from pathlib import Path

    secret = Path(str(tmp_path)) / "pg-password"
    secret.write_text(PASSWORD + "\n")
    result = await run_check(
        {
            "type": "postgres",
            "host": "127.0.0.1",
            "port": postgres.port,
            "user": "probe",
            "password_file": str(secret),
            "database": "app",
        }
    )
    assert result.status is Status.PASS, result.output
    assert result.output.startswith(f"postgres://probe@127.0.0.1:{postgres.port}/app")


async def test_wrong_password_is_auth(postgres: PostgresServer) -> None:
    result = await run_check({"type": "postgres", "dsn": postgres.dsn(password="wrong%40pass")})
    assert result.status is Status.FAIL
    assert result.reason is Reason.AUTH
    assert "authentication failed" in result.output
    assert "wrong" not in result.output


async def test_missing_database(postgres: PostgresServer) -> None:
    result = await run_check({"type": "postgres", "dsn": postgres.dsn(database="nope")})
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert 'database "nope" does not exist' in result.output


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "postgres", "dsn": f"postgresql://probe:{ENCODED_PASSWORD}@127.0.0.1:{port}/app"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED
    assert result.output == f"postgresql://probe:***@127.0.0.1:{port}/app: connection refused"


async def test_hang_fails_within_the_timeout() -> None:
    with silent_listener() as port:
        result = await run_check(
            {"type": "postgres", "dsn": f"postgresql://probe:x@127.0.0.1:{port}/app", "timeout": "500ms"}
        )
    assert result.reason is Reason.TIMEOUT


async def test_paused_server_fails_within_the_timeout(own_postgres: PostgresServer) -> None:
    pid = int((own_postgres.data_dir / "postmaster.pid").read_text().split()[0])
    pause_process(pid)  # SIGSTOP: connections are accepted by the kernel, never answered
    try:
        result = await run_check({"type": "postgres", "dsn": own_postgres.dsn(), "timeout": "500ms"})
        assert result.reason is Reason.TIMEOUT
    finally:
        os.kill(pid, 18)


async def test_query_levels(postgres: PostgresServer) -> None:
    query = "SELECT count(*) FROM pg_stat_activity"
    base = {"type": "postgres", "dsn": postgres.dsn(), "query": query}
    ok = await run_check({**base, "warn_above": 1000})
    warn = await run_check({**base, "warn_above": 0})
    fail = await run_check({**base, "warn_above": 0, "fail_above": 0.5})
    text = await run_check({**base, "query": "SELECT 'hello'", "fail_above": 1})
    assert ok.status is Status.PASS
    assert warn.status is Status.WARN and "above the warn level of 0" in warn.output
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    # Levels on a number the query did not return are said, not turned into a failure.
    assert text.status is Status.WARN and "value not observed this run" in text.output


async def test_failing_query(postgres: PostgresServer) -> None:
    result = await run_check({"type": "postgres", "dsn": postgres.dsn(), "query": "SELECT * FROM missing_table"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.ERROR
    assert 'query failed: relation "missing_table" does not exist' in result.output


async def test_expect_role(postgres: PostgresServer, postgres_replica: PostgresServer) -> None:
    primary = await run_check({"type": "postgres", "dsn": postgres.dsn(), "expect": "primary"})
    wrong = await run_check({"type": "postgres", "dsn": postgres.dsn(), "expect": "replica"})
    replica = await run_check(
        {"type": "postgres", "dsn": postgres_replica.dsn(), "expect": "replica", "max_replication_lag": "1m"}
    )
    assert primary.status is Status.PASS
    assert wrong.status is Status.FAIL and wrong.reason is Reason.UNEXPECTED
    assert wrong.output.endswith("is a primary, expected a replica")
    assert replica.status is Status.PASS, replica.output
    assert replica.observed["in_recovery"].value is True
    assert float(replica.observed["replication_lag"].value) >= 0


async def test_kept_connection_is_reused_and_replaced_when_it_breaks(own_postgres: PostgresServer) -> None:
    check = check_from(
        {"type": "postgres", "dsn": own_postgres.dsn(), "keep_connection": True, "query": "SELECT pg_backend_pid()"}
    )
    try:
        first, second = await run_once(check), await run_once(check)
        assert first.observed["value"].value == second.observed["value"].value  # the same backend
        own_postgres.sql(f"SELECT pg_terminate_backend({int(first.observed['value'].value)})")
        broken = await run_once(check)
        assert broken.status is Status.FAIL, broken.output
        again = await run_once(check)
        assert again.status is Status.PASS
        assert again.observed["value"].value != first.observed["value"].value
    finally:
        await check.close()


async def test_fresh_connection_by_default(postgres: PostgresServer) -> None:
    check = check_from({"type": "postgres", "dsn": postgres.dsn(), "query": "SELECT pg_backend_pid()"})
    first, second = await run_once(check), await run_once(check)
    assert first.observed["value"].value != second.observed["value"].value


async def test_stopped_then_restarted_server(own_postgres: PostgresServer) -> None:
    options = {"type": "postgres", "dsn": own_postgres.dsn()}
    assert (await run_check(options)).status is Status.PASS
    own_postgres.stop()
    down = await run_check(options)
    assert down.status is Status.FAIL and down.reason is Reason.REFUSED
    own_postgres.start()
    assert (await run_check(options)).status is Status.PASS


async def test_tls_modes(own_postgres: PostgresServer, tls_certificate: Certificate) -> None:
    own_postgres.stop()
    own_postgres.enable_tls(tls_certificate.cert_file, tls_certificate.key_file)
    own_postgres.start()
    base = {"type": "postgres", "dsn": own_postgres.dsn()}
    required = await run_check({**base, "sslmode": "require"})
    verified = await run_check({**base, "sslmode": "verify-full", "ca_file": str(tls_certificate.cert_file)})
    untrusted = await run_check({**base, "sslmode": "verify-full"})
    assert required.status is Status.PASS, required.output
    assert verified.status is Status.PASS, verified.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output


async def test_unresolvable_host() -> None:
    result = await run_check({"type": "postgres", "host": "db.invalid", "user": "probe", "database": "app"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output


async def test_password_never_in_output(postgres: PostgresServer) -> None:
    for dsn in (postgres.dsn(), postgres.dsn(database="nope"), postgres.dsn(password="p%40ss%3Awrong")):
        result = await run_check({"type": "postgres", "dsn": dsn, "query": "SELECT 1/0"})
        for secret in (PASSWORD, ENCODED_PASSWORD, "p@ss:wrong", "p%40ss%3Awrong"):
            assert secret not in result.output
