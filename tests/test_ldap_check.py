"""ldap check against a real slapd (its own cn=config and directory), over LDAP, LDAPS and StartTLS, and real faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probed.config import ConfigError, parse_config
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.certificates import Certificate
from tests.support.checks import check_from, run_check, sockets_after_failing_runs
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.slapd import LDAP_ADMIN, LDAP_BASE, LDAP_PEOPLE, LDAP_USER, SlapdServer

PEOPLE = f"ou=people,{LDAP_BASE}"


def options(server: SlapdServer, **more: Any) -> dict[str, Any]:
    return {"type": "ldap", "url": f"ldap://127.0.0.1:{server.port}", **more}


def as_probe(server: SlapdServer, **more: Any) -> dict[str, Any]:
    return options(server, username=LDAP_USER, password=PASSWORD, **more)


async def test_anonymous_bind(slapd: SlapdServer) -> None:
    result = await run_check(options(slapd))
    assert result.status is Status.PASS, result.output
    assert result.output == f"ldap://127.0.0.1:{slapd.port}: bound anonymously"
    assert result.observed["bind_time"].unit == "s"


async def test_bind_with_a_password_file_and_search(slapd: SlapdServer, tmp_path: Path) -> None:
    secret = tmp_path / "ldap-password"
    secret.write_text(PASSWORD + "\n")
    search = {"search_base": PEOPLE, "search_filter": "(objectClass=inetOrgPerson)"}
    result = await run_check(options(slapd, username=LDAP_USER, password_file=str(secret), **search))
    assert result.status is Status.PASS, result.output
    assert result.output == f"ldap://127.0.0.1:{slapd.port}: bound as {LDAP_USER}, {LDAP_PEOPLE} entries under {PEOPLE}"
    assert next(iter(result.observed)) == "entries"
    assert result.observed["entries"].value == LDAP_PEOPLE
    assert {"bind_time", "search_time"} <= set(result.observed)


async def test_fewer_entries_than_the_minimum_fail(slapd: SlapdServer) -> None:
    search = {"search_base": PEOPLE, "search_filter": "(uid=nobody)"}
    none = await run_check(as_probe(slapd, **search))
    too_few = await run_check(as_probe(slapd, search_base=PEOPLE, min_entries=LDAP_PEOPLE + 2))
    any_number = await run_check(as_probe(slapd, **search, min_entries=0))
    assert none.status is Status.FAIL and none.reason is Reason.UNEXPECTED
    assert "entries" in none.output and "below" in none.output, none.output
    assert none.observed["entries"].value == 0
    assert too_few.status is Status.FAIL, too_few.output
    assert any_number.status is Status.PASS, any_number.output


@pytest.mark.parametrize(
    ("search_filter", "entries"),
    [
        ("(uid=probe)", 1),
        ("(uid=*)", 3),
        ("(uid=al*)", 1),
        ("(cn=*o*)", 2),
        ("(uid=*b)", 1),
        ("(|(uid=alice)(uid=bob))", 2),
        ("(&(objectClass=inetOrgPerson)(!(uid=probe)))", 2),
        ("(uid:caseExactMatch:=probe)", 1),
        ("(uid:caseExactMatch:=PROBE)", 0),
        ("(uid~=probe)", 1),
        (r"(cn=\70robe)", 1),  # \70 is "p"
    ],
)
async def test_filters_as_the_server_reads_them(slapd: SlapdServer, search_filter: str, entries: int) -> None:
    search = {"search_base": PEOPLE, "search_filter": search_filter, "min_entries": 0}
    result = await run_check(as_probe(slapd, **search))
    assert result.status is Status.PASS, result.output
    assert result.observed["entries"].value == entries


async def test_scopes_and_size_limit(slapd: SlapdServer) -> None:
    base = await run_check(as_probe(slapd, search_base=PEOPLE, search_scope="base"))
    one = await run_check(as_probe(slapd, search_base=LDAP_BASE, search_scope="one"))
    limited = await run_check(as_probe(slapd, search_base=PEOPLE, size_limit=2))
    assert base.observed["entries"].value == 1, base.output
    assert one.observed["entries"].value == 1, one.output  # ou=people alone
    assert limited.status is Status.PASS, limited.output
    assert limited.observed["entries"].value == 2  # the server stopped at the size limit: enough


async def test_wrong_password_is_auth_and_never_shown(slapd: SlapdServer) -> None:
    result = await run_check(options(slapd, username=LDAP_USER, password="wrong-pass-123"))
    admin = await run_check(options(slapd, username=LDAP_ADMIN, password="wrong-pass-123"))
    assert result.status is Status.FAIL and result.reason is Reason.AUTH
    assert result.output == f"ldap://127.0.0.1:{slapd.port}: bind failed: invalidCredentials (49)"
    assert admin.reason is Reason.AUTH
    assert "wrong-pass" not in result.output + admin.output


async def test_missing_search_base(slapd: SlapdServer) -> None:
    result = await run_check(as_probe(slapd, search_base=f"ou=nowhere,{LDAP_BASE}"))
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert result.output.endswith(f"search base ou=nowhere,{LDAP_BASE} not found")


async def test_ldaps_and_starttls(slapd: SlapdServer, tls_certificate: Certificate) -> None:
    ca = str(tls_certificate.cert_file)
    ldaps = {"type": "ldap", "url": f"ldaps://127.0.0.1:{slapd.tls_port}"}
    verified = await run_check({**ldaps, "ca_file": ca, "username": LDAP_USER, "password": PASSWORD})
    untrusted = await run_check(ldaps)
    starttls = await run_check(as_probe(slapd, starttls=True, ca_file=ca, search_base=PEOPLE))
    starttls_untrusted = await run_check(options(slapd, starttls=True))
    assert verified.status is Status.PASS, verified.output
    assert verified.output.startswith(f"ldaps://127.0.0.1:{slapd.tls_port}: bound as")
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert starttls.status is Status.PASS, starttls.output
    assert starttls.output.startswith(f"ldap://127.0.0.1:{slapd.port}: StartTLS, bound as")
    assert starttls_untrusted.reason is Reason.TLS, starttls_untrusted.output


async def test_refused_and_stopped(own_slapd: SlapdServer) -> None:
    port = closed_port()
    refused = await run_check({"type": "ldap", "url": f"ldap://127.0.0.1:{port}"})
    own_slapd.stop()
    stopped = await run_check(options(own_slapd))
    assert refused.status is Status.FAIL and refused.reason is Reason.REFUSED
    assert refused.output == f"ldap://127.0.0.1:{port}: connection refused"
    assert stopped.reason is Reason.REFUSED


async def test_paused_server_times_out_then_recovers(own_slapd: SlapdServer) -> None:
    check = check_from(as_probe(own_slapd, search_base=PEOPLE, timeout="300ms"))
    try:
        own_slapd.pause()
        try:
            paused = await run_once(check)
        finally:
            own_slapd.resume()
        again = await run_once(check)
    finally:
        await check.close()
    assert paused.status is Status.FAIL and paused.reason is Reason.TIMEOUT, paused.output
    assert again.status is Status.PASS, again.output


async def test_silent_close_at_once_and_garbage() -> None:
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"SSH-2.0-OpenSSH_9.2\r\n") as garbage,
    ):
        silent = await run_check({"type": "ldap", "url": f"ldap://127.0.0.1:{hanging}", "timeout": "300ms"})
        closed = await run_check({"type": "ldap", "url": f"ldap://127.0.0.1:{closing}", "timeout": "2s"})
        nonsense = await run_check({"type": "ldap", "url": f"ldap://127.0.0.1:{garbage}", "timeout": "2s"})
    assert silent.reason is Reason.TIMEOUT, silent.output
    # A fast failure, never a timeout: a clean close, or a reset when the bind was still unread.
    assert closed.output in (
        f"ldap://127.0.0.1:{closing}: closed the connection instead of an LDAP answer",
        f"ldap://127.0.0.1:{closing}: connection reset by the server",
    )
    assert nonsense.reason is Reason.UNEXPECTED
    assert nonsense.output == f"ldap://127.0.0.1:{garbage}: answered 'SS', not LDAP"


async def test_no_socket_outlives_a_run() -> None:
    """20 runs each against a port that hangs, one that closes at once and one that sends garbage."""
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"\x30\x84\xff\xff\xff\xff") as garbage,  # a 4 GiB message
    ):
        for port in (hanging, closing, garbage):
            options = {"type": "ldap", "url": f"ldap://127.0.0.1:{port}", "timeout": "50ms"}
            assert await sockets_after_failing_runs(options, port) == 0, f"port {port}"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{type: ldap, url: 'http://dir'}", "checks.dir.url: url must start with ldap:// or ldaps://"),
        ("{type: ldap, url: 'ldaps://dir', starttls: true}", "checks.dir.starttls: an ldaps:// URL is TLS"),
        ("{type: ldap, search_filter: '(uid=x)'}", "checks.dir.search_filter: needs search_base"),
        ("{type: ldap, search_base: 'dc=x', search_filter: 'uid=x'}", "checks.dir.search_filter: expected '('"),
        ("{type: ldap, search_base: 'dc=x', search_filter: '(uid=x'}", "checks.dir.search_filter: no ')' closes"),
        ("{type: ldap, search_base: 'dc=x', search_filter: '(!(a=1)(b=2))'}", "checks.dir.search_filter: '!' takes"),
        ("{type: ldap, username: 'cn=x'}", "checks.dir: username (the bind DN) and password"),
    ],
)
def test_bad_options_are_one_line(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"checks:\n  dir: {entry}\n", "probed.yaml")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"probed.yaml:2: {problem}"), caught.value.problems
