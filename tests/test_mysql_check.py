"""mysql check against a real MariaDB (and a replica of it), and real faults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from probed.model import Reason, Status
from probed.runner import run_once
from probed.store import Store
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers import ENCODED_PASSWORD, PASSWORD
from tests.support.servers.mariadb import MariaDbServer

pytest.importorskip("asyncmy", reason="the mysql extra is not installed: pip install 'probed[mysql]'")


async def test_passes_against_a_healthy_server(mariadb: MariaDbServer) -> None:
    result = await run_check({"type": "mysql", "dsn": mariadb.dsn()})
    assert result.status is Status.PASS, result.output
    assert result.output == f"mysql://probe:***@127.0.0.1:{mariadb.port}/app: primary, query ok"
    assert result.observed["value"].value == 1
    assert result.observed["role"].value == "primary"
    assert "MariaDB" in str(result.observed["server_version"].value)


async def test_fields_socket_and_password_file(mariadb: MariaDbServer, tmp_path: Path) -> None:
    secret = tmp_path / "mysql-password"
    secret.write_text(PASSWORD + "\n")
    common = {"type": "mysql", "user": "probe", "password_file": str(secret), "database": "app"}
    over_tcp = await run_check({**common, "host": "127.0.0.1", "port": mariadb.port})
    over_socket = await run_check({**common, "socket": str(mariadb.socket)})
    in_dsn = await run_check({"type": "mysql", "dsn": f"mysql://probe:{ENCODED_PASSWORD}@/app?socket={mariadb.socket}"})
    assert over_tcp.status is Status.PASS, over_tcp.output
    assert over_tcp.output.startswith(f"mysql://probe@127.0.0.1:{mariadb.port}/app:")
    assert over_socket.status is Status.PASS, over_socket.output
    assert over_socket.output.startswith(f"mysql://probe@localhost:{mariadb.socket}/app:")
    assert in_dsn.status is Status.PASS, in_dsn.output


async def test_wrong_password_is_auth(mariadb: MariaDbServer) -> None:
    result = await run_check({"type": "mysql", "dsn": mariadb.dsn(password="wrong%40pass")})
    assert result.status is Status.FAIL
    assert result.reason is Reason.AUTH
    assert "authentication failed: Access denied for user 'probe'" in result.output
    assert "wrong" not in result.output


async def test_missing_database_is_unexpected(mariadb: MariaDbServer) -> None:
    # A user with global grants hears "unknown database"; others hear "access denied" for any database
    # they have no grant on, existing or not: the login worked either way.
    as_root = await run_check({"type": "mysql", "dsn": f"mysql://root@/nope?socket={mariadb.socket}"})
    as_probe = await run_check({"type": "mysql", "dsn": mariadb.dsn(database="nope")})
    assert as_root.status is Status.FAIL and as_root.reason is Reason.UNEXPECTED
    assert "Unknown database 'nope'" in as_root.output
    assert as_probe.status is Status.FAIL and as_probe.reason is Reason.UNEXPECTED
    assert "to database 'nope' (missing, or no grant on it)" in as_probe.output


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "mysql", "dsn": f"mysql://probe:{ENCODED_PASSWORD}@127.0.0.1:{port}/app"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED
    assert result.output == f"mysql://probe:***@127.0.0.1:{port}/app: connection refused"


async def test_hang_fails_with_timeout() -> None:
    with silent_listener() as port:
        result = await run_check({"type": "mysql", "host": "127.0.0.1", "port": port, "timeout": "300ms"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.TIMEOUT, result.output


async def test_paused_server_times_out_then_recovers(own_mariadb: MariaDbServer) -> None:
    check = check_from({"type": "mysql", "dsn": own_mariadb.dsn(), "timeout": "300ms", "keep_connection": True})
    try:
        assert (await run_once(check)).status is Status.PASS
        own_mariadb.pause()
        try:
            paused = await run_once(check)  # on the kept connection: the query never gets an answer
            fresh = await run_once(check)  # a new connection: the handshake never comes
        finally:
            own_mariadb.resume()
        assert paused.reason is Reason.TIMEOUT, paused.output
        assert fresh.reason is Reason.TIMEOUT, fresh.output
        again = await run_once(check)
        assert again.status is Status.PASS, again.output
    finally:
        await check.close()


async def test_too_many_connections(own_mariadb: MariaDbServer) -> None:
    import asyncmy

    own_mariadb.sql("SET GLOBAL max_connections = 10")  # MariaDB's minimum
    holders = []
    try:
        for _ in range(10):
            holders.append(
                await asyncmy.connect(host="127.0.0.1", port=own_mariadb.port, user="probe", password=PASSWORD)
            )
        result = await run_check({"type": "mysql", "dsn": own_mariadb.dsn()})
    finally:
        for holder in holders:
            await holder.ensure_closed()
    assert result.status is Status.FAIL
    assert result.output.endswith("server refuses connections: Too many connections"), result.output


async def test_query_levels(mariadb: MariaDbServer) -> None:
    base = {"type": "mysql", "dsn": mariadb.dsn(), "query": "SELECT COUNT(*) FROM information_schema.PROCESSLIST"}
    ok = await run_check({**base, "warn_above": 1000})
    warn = await run_check({**base, "warn_above": 0})
    fail = await run_check({**base, "warn_above": 0, "fail_above": 0.5})
    text = await run_check({**base, "query": "SELECT 'hello'", "fail_above": 1})
    assert ok.status is Status.PASS, ok.output
    assert warn.status is Status.WARN and "above the warn level of 0" in warn.output
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    assert text.status is Status.WARN and "value not observed this run" in text.output


async def test_failing_query(mariadb: MariaDbServer) -> None:
    result = await run_check({"type": "mysql", "dsn": mariadb.dsn(), "query": "SELECT * FROM missing_table"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.ERROR
    assert "query failed: Table 'app.missing_table' doesn't exist" in result.output


async def test_expect_role_and_replication_lag(mariadb: MariaDbServer, mariadb_replica: MariaDbServer) -> None:
    primary = await run_check({"type": "mysql", "dsn": mariadb.dsn(), "expect": "primary"})
    wrong = await run_check({"type": "mysql", "dsn": mariadb.dsn(), "expect": "replica"})
    options = {"type": "mysql", "dsn": mariadb_replica.dsn(), "expect": "replica", "max_replication_lag": "1m"}
    replica = await run_check(options)
    assert primary.status is Status.PASS
    assert wrong.status is Status.FAIL and wrong.reason is Reason.UNEXPECTED
    assert wrong.output.endswith("is a primary, expected a replica")
    assert replica.status is Status.PASS, replica.output
    assert replica.observed["role"].value == "replica"
    assert replica.observed["replication_lag"].value == 0
    not_primary = await run_check({**options, "expect": "primary"})
    assert not_primary.reason is Reason.UNEXPECTED and "is a replica, expected a primary" in not_primary.output


async def test_stopped_replication_fails_with_a_sentence(
    mariadb: MariaDbServer, mariadb_replica: MariaDbServer
) -> None:
    options = {"type": "mysql", "dsn": mariadb_replica.dsn(), "expect": "replica"}
    mariadb_replica.sql("STOP SLAVE SQL_THREAD")
    try:
        stopped = await run_check(options)
    finally:
        mariadb_replica.sql("START SLAVE SQL_THREAD")
    assert stopped.status is Status.FAIL and stopped.reason is Reason.UNEXPECTED
    assert "replication is stopped (IO thread: Yes, SQL thread: No)" in stopped.output, stopped.output
    assert (await run_check(options)).status is Status.PASS


async def test_lag_levels_judge_the_replica(mariadb: MariaDbServer, mariadb_replica: MariaDbServer) -> None:
    # A lag of 0 is below any positive level; a level below 0 proves the value is judged.
    options = {"type": "mysql", "dsn": mariadb_replica.dsn(), "levels": {"replication_lag": {"warn_below": 1}}}
    result = await run_check(options)
    assert result.status is Status.WARN, result.output
    assert "replication_lag is 0s, below the warn level of 1s" in result.output
    # On a primary the lag is not observed, and its implied level is not judged.
    primary = await run_check({"type": "mysql", "dsn": mariadb.dsn(), "max_replication_lag": "10s"})
    assert primary.status is Status.PASS, primary.output


async def test_role_without_the_privilege(mariadb: MariaDbServer) -> None:
    """A user without REPLICA MONITOR still gets a query check; asking for a role says what to grant."""
    dsn = f"mysql://plain:plain@127.0.0.1:{mariadb.port}/"
    plain = await run_check({"type": "mysql", "dsn": dsn})
    role = await run_check({"type": "mysql", "dsn": dsn, "expect": "primary"})
    assert plain.status is Status.PASS, plain.output
    assert plain.output.endswith(": query ok")
    assert role.status is Status.FAIL and role.reason is Reason.AUTH
    assert "grant REPLICATION CLIENT, or SLAVE MONITOR on MariaDB" in role.output


async def test_kept_connection_is_reused_and_replaced_when_it_breaks(own_mariadb: MariaDbServer) -> None:
    check = check_from(
        {"type": "mysql", "dsn": own_mariadb.dsn(), "keep_connection": True, "query": "SELECT CONNECTION_ID()"}
    )
    try:
        first, second = await run_once(check), await run_once(check)
        assert first.observed["value"].value == second.observed["value"].value
        own_mariadb.sql(f"KILL {int(first.observed['value'].value)}")
        broken = await run_once(check)
        assert broken.status is Status.FAIL, broken.output
        again = await run_once(check)
        assert again.status is Status.PASS, again.output
        assert again.observed["value"].value != first.observed["value"].value
    finally:
        await check.close()


async def test_fresh_connection_by_default_and_none_left_open(mariadb: MariaDbServer) -> None:
    check = check_from({"type": "mysql", "dsn": mariadb.dsn(), "query": "SELECT CONNECTION_ID()"})
    await run_once(check)
    before = int(mariadb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'probe'"))
    fds = len(os.listdir("/proc/self/fd"))
    results = [await run_once(check) for _ in range(100)]
    assert len({r.observed["value"].value for r in results}) == 100
    after = int(mariadb.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'probe'"))
    assert after <= before
    assert len(os.listdir("/proc/self/fd")) <= fds


async def test_stopped_then_restarted_server(own_mariadb: MariaDbServer) -> None:
    options = {"type": "mysql", "dsn": own_mariadb.dsn()}
    assert (await run_check(options)).status is Status.PASS
    own_mariadb.stop()
    down = await run_check(options)
    assert down.status is Status.FAIL and down.reason is Reason.REFUSED, down.output
    own_mariadb.start()
    assert (await run_check(options)).status is Status.PASS


async def test_tls(own_mariadb: MariaDbServer, tls_certificate: Certificate) -> None:
    own_mariadb.stop()
    own_mariadb.start(f"--ssl-cert={tls_certificate.cert_file}", f"--ssl-key={tls_certificate.key_file}")
    over_tls = {"type": "mysql", "dsn": own_mariadb.dsn() + "?tls=true"}
    verified = await run_check({**over_tls, "ca_file": str(tls_certificate.cert_file)})
    untrusted = await run_check(over_tls)
    unverified = await run_check(
        {
            "type": "mysql",
            "host": "127.0.0.1",
            "port": own_mariadb.port,
            "user": "probe",
            "password": PASSWORD,
            "tls": True,
            "tls_verify": False,
            "query": "SELECT COUNT(*) FROM information_schema.SESSION_STATUS "
            "WHERE VARIABLE_NAME = 'Ssl_cipher' AND VARIABLE_VALUE <> ''",
        }
    )
    assert verified.status is Status.PASS, verified.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert unverified.status is Status.PASS, unverified.output
    assert unverified.observed["value"].value == 1  # the session really is encrypted


async def test_unresolvable_host() -> None:
    result = await run_check({"type": "mysql", "host": "db.invalid", "user": "probe"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS, result.output


async def test_password_never_in_output(mariadb: MariaDbServer) -> None:
    for dsn in (mariadb.dsn(), mariadb.dsn(database="nope"), mariadb.dsn(password="p%40ss%3Awrong")):
        result = await run_check({"type": "mysql", "dsn": dsn, "query": "SELECT 1/0 FROM nowhere"})
        for secret in (PASSWORD, ENCODED_PASSWORD, "p@ss:wrong", "p%40ss%3Awrong"):
            assert secret not in result.output


async def test_outage_with_thresholds_then_recovery(own_mariadb: MariaDbServer) -> None:
    check = check_from({"type": "mysql", "dsn": own_mariadb.dsn(), "failure_threshold": 2, "success_threshold": 2})
    store = Store([check])
    state = store.checks[check.name]

    async def run() -> Status | None:
        store.record(check.name, await run_once(check))
        return state.effective

    assert await run() is Status.PASS, state.output
    own_mariadb.stop()
    assert await run() is Status.PASS  # one failure is below the threshold
    assert state.last is not None and state.last.reason is Reason.REFUSED
    assert await run() is Status.FAIL
    own_mariadb.start()
    assert await run() is Status.FAIL  # one success is below the threshold
    assert await run() is Status.PASS


async def test_tls_field_or_dsn_parameter(own_mariadb: MariaDbServer) -> None:
    """tls: true applies to a dsn too; a server without TLS then fails the check instead of talking in clear."""
    in_field = await run_check({"type": "mysql", "dsn": own_mariadb.dsn(), "tls": True})
    in_dsn = await run_check({"type": "mysql", "dsn": own_mariadb.dsn() + "?tls=true"})
    for result in (in_field, in_dsn):
        assert result.status is Status.FAIL and result.reason is Reason.TLS, result.output


async def test_older_servers_answer_show_slave_status(mariadb_replica: MariaDbServer) -> None:
    """Servers before MySQL 8.0.22 / MariaDB 10.5.1 reject SHOW REPLICA STATUS as a syntax error
    (1064): stand in for one by making the first statement one this server rejects so."""
    check = check_from({"type": "mysql", "dsn": mariadb_replica.dsn(), "expect": "replica"})
    check._status_statement = "SHOW REPLICA STATUS NONSENSE"  # type: ignore[attr-defined]
    try:
        first, second = await run_once(check), await run_once(check)
    finally:
        await check.close()
    assert first.status is Status.PASS and second.status is Status.PASS, first.output
    assert first.observed["replication_lag"].value == 0
    assert check._status_statement == "SHOW SLAVE STATUS"  # type: ignore[attr-defined]
