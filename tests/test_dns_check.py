"""The dns check against a real DNS server (dnsmasq) with known records, and real faults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from probed.config import ConfigError
from probed.model import Reason, Status
from tests.support.checks import config_from, run_check
from tests.support.faults import RcodeServer, silent_udp_port
from tests.support.net import closed_port
from tests.support.servers.dnsmasq import DnsServer

RECORDS = {
    "www.example.test": ["192.0.2.10", "192.0.2.11", "2001:db8::10"],
    "mail.example.test": ["192.0.2.25"],
    "v4only.example.test": ["192.0.2.40"],
}


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    server = DnsServer(tmp_path_factory.mktemp("dnsmasq"))
    server.start(
        RECORDS,
        [
            "mx-host=example.test,mail.example.test,10",
            'txt-record=example.test,"v=spf1 -all"',
            "srv-host=_http._tcp.example.test,www.example.test,8080,0,5",
            "cname=alias.example.test,www.example.test",
            # Authoritative for example.test: its NS records.
            "auth-zone=example.test",
            "auth-server=ns1.example.test,127.0.0.1",
            "auth-sec-servers=ns2.example.test",
        ],
    )
    yield server
    server.stop()


def dns(server: DnsServer, name: str, **options: Any) -> dict[str, Any]:
    return {"type": "dns", "name": name, "server": "127.0.0.1", "port": server.port, **options}


async def test_a_records_pass_with_expected_addresses(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "www.example.test", expect_contains=["192.0.2.10", "192.0.2.11"]))
    assert result.status is Status.PASS, result.output
    assert result.observed["answer_count"].value == 2
    assert result.observed["rcode"].value == "NOERROR"
    assert result.observed["resolve_time"].unit == "s" and float(result.observed["resolve_time"].value) > 0
    assert next(iter(result.observed)) == "resolve_time"  # the primary value
    assert "192.0.2.10" in result.output and f"@127.0.0.1:{dns_server.port}" in result.output


@pytest.mark.parametrize(
    ("name", "record_type", "expected"),
    [
        ("www.example.test", "AAAA", "2001:db8::10"),
        ("alias.example.test", "CNAME", "www.example.test"),
        ("example.test", "MX", "10 mail.example.test"),
        ("example.test", "TXT", "v=spf1 -all"),
        ("_http._tcp.example.test", "SRV", "0 5 8080 www.example.test"),
    ],
)
async def test_every_record_type_answers_in_the_form_people_write(
    dns_server: DnsServer, name: str, record_type: str, expected: str
) -> None:
    result = await run_check(dns(dns_server, name, record_type=record_type, expect_exact=[expected]))
    assert result.status is Status.PASS, result.output
    assert result.observed["answer_count"].value == 1
    assert expected in result.output


async def test_ns_records(dns_server: DnsServer) -> None:
    options = dns(dns_server, "example.test", record_type="NS", expect_exact=["ns2.example.test", "NS1.example.test."])
    result = await run_check(options)
    assert result.status is Status.PASS, result.output
    assert result.observed["answer_count"].value == 2


async def test_names_and_addresses_compare_in_any_spelling(dns_server: DnsServer) -> None:
    options = dns(dns_server, "example.test", record_type="MX", expect_contains=["10 MAIL.example.test."])
    assert (await run_check(options)).status is Status.PASS
    options = dns(dns_server, "www.example.test", record_type="AAAA", expect_contains=["2001:DB8:0::0010"])
    assert (await run_check(options)).status is Status.PASS


async def test_a_wrong_answer_fails_unexpected(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "www.example.test", expect_contains=["192.0.2.99"]))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "192.0.2.99 not among the answers" in result.output and "192.0.2.10" in result.output
    assert result.observed["answer_count"].value == 2

    result = await run_check(dns(dns_server, "www.example.test", expect_exact=["192.0.2.10"]))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "not exactly 192.0.2.10" in result.output


async def test_regex_needs_one_matching_answer(dns_server: DnsServer) -> None:
    passing = await run_check(dns(dns_server, "example.test", record_type="TXT", expect_regex=r"^v=spf1 "))
    assert passing.status is Status.PASS, passing.output
    failing = await run_check(dns(dns_server, "example.test", record_type="TXT", expect_regex=r"v=DMARC1"))
    assert (failing.status, failing.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "no answer matches 'v=DMARC1'" in failing.output


async def test_a_missing_name_fails_with_reason_dns(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "gone.example.test"))
    assert (result.status, result.reason) == (Status.FAIL, Reason.DNS)
    assert result.output.endswith("answered NXDOMAIN, expected NOERROR")
    assert result.observed["rcode"].value == "NXDOMAIN"
    assert result.observed["answer_count"].value == 0


async def test_a_name_that_must_not_exist(dns_server: DnsServer) -> None:
    gone = await run_check(dns(dns_server, "gone.example.test", expect_rcode="NXDOMAIN"))
    assert gone.status is Status.PASS, gone.output
    assert "NXDOMAIN" in gone.output

    still_there = await run_check(dns(dns_server, "www.example.test", expect_rcode="NXDOMAIN"))
    assert (still_there.status, still_there.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert still_there.output.endswith("answered NOERROR, expected NXDOMAIN")


async def test_no_record_of_that_type_is_too_few_answers(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "v4only.example.test", record_type="AAAA"))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert result.observed["rcode"].value == "NOERROR" and result.observed["answer_count"].value == 0
    assert "answer_count is 0" in result.output and "below the fail level of 1" in result.output


async def test_min_answers_is_a_level_on_answer_count(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "www.example.test", min_answers=3))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "answer_count is 2" in result.output
    warned = await run_check(dns(dns_server, "www.example.test", levels={"answer_count": {"warn_below": 3}}))
    assert warned.status is Status.WARN, warned.output


@pytest.mark.parametrize("rcode", ["SERVFAIL", "REFUSED"])
async def test_an_error_rcode_fails_with_reason_dns(rcode: str) -> None:
    with RcodeServer(rcode) as server:
        result = await run_check({"type": "dns", "name": "db.example.test", "server": "127.0.0.1", "port": server.port})
    assert (result.status, result.reason) == (Status.FAIL, Reason.DNS), result.output
    assert result.output.endswith(f"answered {rcode}, expected NOERROR")
    assert result.observed["rcode"].value == rcode


async def test_an_expected_error_rcode_passes() -> None:
    with RcodeServer("REFUSED") as server:
        options = {"type": "dns", "name": "x.example.test", "server": "127.0.0.1", "port": server.port}
        result = await run_check({**options, "expect_rcode": "REFUSED"})
    assert result.status is Status.PASS, result.output


async def test_over_tcp(dns_server: DnsServer) -> None:
    result = await run_check(dns(dns_server, "www.example.test", tcp=True, expect_contains=["192.0.2.11"]))
    assert result.status is Status.PASS, result.output


async def test_a_server_that_never_answers_times_out() -> None:
    with silent_udp_port() as port:
        result = await run_check(
            {
                "type": "dns",
                "name": "www.example.test",
                "server": "127.0.0.1",
                "port": port,
                "timeout": "300ms",
                "interval": "5s",
            }
        )
    assert (result.status, result.reason) == (Status.FAIL, Reason.TIMEOUT)


async def test_a_closed_port() -> None:
    options = {"type": "dns", "name": "www.example.test", "server": "127.0.0.1", "port": closed_port()}
    over_tcp = await run_check({**options, "tcp": True})
    assert (over_tcp.status, over_tcp.reason) == (Status.FAIL, Reason.REFUSED), over_tcp.output
    assert "connection refused" in over_tcp.output
    # Over UDP nothing says "refused" to an unconnected socket: it is a silence.
    over_udp = await run_check({**options, "timeout": "300ms", "interval": "5s"})
    assert (over_udp.status, over_udp.reason) == (Status.FAIL, Reason.TIMEOUT), over_udp.output


async def test_a_stopped_server_fails_and_recovers(tmp_path: Path) -> None:
    server = DnsServer(tmp_path / "dnsmasq")
    server.start({"db.example.test": ["192.0.2.5"]})
    options = dns(server, "db.example.test", timeout="1s")
    assert (await run_check(options)).status is Status.PASS
    server.stop()
    stopped = await run_check(options)
    assert stopped.status is Status.FAIL and stopped.reason in (Reason.REFUSED, Reason.TIMEOUT)
    server.start({"db.example.test": ["192.0.2.5"]})
    try:
        assert (await run_check(options)).status is Status.PASS
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"server": "dns.example.com"}, "server must be an IP address"),
        ({"record_type": "PTR"}, "record_type"),
        ({"expect_rcode": "NXDOMAIN", "expect_contains": ["192.0.2.1"]}, "NXDOMAIN has no answers to expect"),
        ({"expect_regex": "("}, "invalid regular expression"),
        ({"port": 0}, "port"),
    ],
)
def test_config_mistakes_are_reported(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from({"lookup": {"type": "dns", "name": "www.example.test", **options}})
    assert problem in str(caught.value)


def test_the_system_resolver_reads_resolv_conf(tmp_path: Path) -> None:
    """No `server`: the nameserver of /etc/resolv.conf answers. Proved in a network
    and mount namespace of the test's own, where dnsmasq serves port 53 on its
    loopback and a resolv.conf naming it is mounted over the real one."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip for a network namespace of its own")
    (tmp_path / "hosts").write_text("192.0.2.77 db.example.test\n")
    (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    checks = {
        "found": {"type": "dns", "name": "db.example.test", "expect_exact": ["192.0.2.77"]},
        "gone": {"type": "dns", "name": "gone.example.test", "expect_rcode": "NXDOMAIN"},
    }
    (tmp_path / "probed.yaml").write_text(yaml.safe_dump({"checks": checks}))
    script = f"""
set -e
ip link set lo up
mount --bind {tmp_path / "resolv.conf"} /etc/resolv.conf
/usr/sbin/dnsmasq --conf-file=/dev/null --port=53 --listen-address=127.0.0.1 --bind-interfaces \\
    --no-resolv --no-hosts --addn-hosts={tmp_path / "hosts"} --local=/test/ --user=root \\
    --pid-file={tmp_path / "dnsmasq.pid"}
trap 'kill $(cat {tmp_path / "dnsmasq.pid"})' EXIT
{sys.executable} -m probed check --config {tmp_path / "probed.yaml"} --output json
"""
    done = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], capture_output=True, text=True)
    if done.returncode not in (0, 1) or not done.stdout.startswith("{"):
        pytest.skip(f"no namespace here: {done.stderr.strip()[-300:]}")
    report = json.loads(done.stdout)["checks"]
    assert report["found"][0]["status"] == "pass", report
    assert report["gone"][0]["status"] == "pass", report
