"""icmp check against real loopback addresses (127.0.0.1 and ::1), in network namespaces of
the tests' own where the kernel's own settings make the faults: unprivileged datagram sockets
(net.ipv4.ping_group_range) for nobody, raw sockets for root, neither for nobody (the error that
says what to set), a loopback that ignores every echo (net.ipv4.icmp_echo_ignore_all), partial
loss that repeats (iptables' statistic match drops every second echo request) and no route."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from probed.config import ConfigError
from probed.model import Reason, Result, Status
from tests.support.checks import check_from, run_check
from tests.support.netns import NOBODY, icmp_runs, in_netns, namespaces_usable, netns

ANYONE = "0 2147483647"  # every group may open ICMP datagram sockets
NO_ONE = "1 0"  # none may (the kernel's default)
IGNORE_ECHOES = {"net.ipv4.icmp_echo_ignore_all": "1", "net.ipv6.icmp.echo_ignore_all": "1"}
LOOPBACKS = ("127.0.0.1", "::1")


def icmp(host: str, **options: Any) -> dict[str, Any]:
    return {"type": "icmp", "host": host, "timeout": "1s", "echo_interval": "20ms", **options}


def where(host: str) -> str:
    return f"icmp://[{host}]" if ":" in host else f"icmp://{host}"


needs_netns = pytest.mark.skipif(namespaces_usable() is not None, reason=str(namespaces_usable()))


def ping_in(name: str, options: dict[str, Any], user: int | None = None, runs: int = 1) -> tuple[list[Result], int]:
    return in_netns(name, lambda: icmp_runs(options, runs), user)


@pytest.fixture
def loopback_ns() -> Iterator[str]:
    with netns({"net.ipv4.ping_group_range": ANYONE}) as name:
        yield name


def assert_answered(result: Result, host: str, count: int = 3) -> None:
    assert result.status is Status.PASS, result.output
    assert result.output.startswith(f"{where(host)}: {count}/{count} replies, 0% loss, rtt min/avg/max ")
    observed = result.observed
    assert observed["packet_loss_percent"].value == 0 and observed["packet_loss_ratio"].value == 0
    assert observed["replies"].value == count
    low, mean, high = (float(observed[f"rtt_{k}"].value) for k in ("min", "avg", "max"))
    assert 0 < low <= mean <= high
    assert observed["rtt_min"].unit == "s"


async def test_loopback_here() -> None:
    """In the tests' own namespace, with whichever socket this process may open."""
    for host in LOOPBACKS:
        result = await run_check(icmp(host))
        if "cannot send ICMP" in result.output:
            pytest.skip(result.output)
        assert_answered(result, host)
        assert result.observed["socket"].value in ("datagram", "raw")
    named = await run_check(icmp("localhost", ip_family="ipv4", count=1))
    assert named.output.startswith("icmp://localhost (127.0.0.1): 1/1 replies, 0% loss")


@needs_netns
def test_datagram_socket_unprivileged(loopback_ns: str) -> None:
    """nobody, without a capability, in a namespace whose ping_group_range holds every group."""
    for host in LOOPBACKS:
        (result,), _ = ping_in(loopback_ns, icmp(host), user=NOBODY)
        assert_answered(result, host)
        assert result.observed["socket"].value == "datagram"


@needs_netns
def test_raw_socket_as_root() -> None:
    with netns({"net.ipv4.ping_group_range": NO_ONE}) as name:
        for host in LOOPBACKS:
            (result,), _ = ping_in(name, icmp(host, count=5))
            assert_answered(result, host, count=5)
            assert result.observed["socket"].value == "raw"


@needs_netns
def test_no_socket_allowed_says_what_to_set() -> None:
    with netns({"net.ipv4.ping_group_range": NO_ONE}) as name:
        for host in LOOPBACKS:
            (result,), _ = ping_in(name, icmp(host), user=NOBODY)
            family = "IPv6" if ":" in host else "IPv4"
            assert result.reason is Reason.ERROR
            assert result.output == (
                f"{where(host)}: cannot send ICMP ({family}) echo requests here: no datagram socket, as group "
                f'65534 is outside net.ipv4.ping_group_range (which is "1 0"), and no raw socket without root or '
                f"CAP_NET_RAW; set the sysctl net.ipv4.ping_group_range to a range that holds 65534 "
                f'(e.g. "0 2147483647"; Kubernetes: a safe sysctl in the pod\'s securityContext) or give probed '
                f"CAP_NET_RAW"
            )


@needs_netns
@pytest.mark.parametrize(("range_", "kind"), [(ANYONE, "datagram"), (NO_ONE, "raw")])
def test_a_target_that_never_answers_times_out(range_: str, kind: str) -> None:
    """The namespace's loopback ignores echo requests: a raw socket still sees the requests themselves."""
    with netns({"net.ipv4.ping_group_range": range_, **IGNORE_ECHOES}) as name:
        for host in LOOPBACKS:
            (result,), _ = ping_in(name, icmp(host, timeout="500ms"))
            assert result.reason is Reason.TIMEOUT, result.output
            assert result.output == f"{where(host)}: no reply to 3 echo requests within 450ms"
            assert result.observed["packet_loss_percent"].value == 100
            assert result.observed["socket"].value == kind
            assert "rtt_avg" not in result.observed


def drop_every_second_request() -> tuple[tuple[str, ...], ...]:
    nth = ("-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0", "-j", "DROP")
    return (
        ("iptables", "-A", "INPUT", "-p", "icmp", "--icmp-type", "echo-request", *nth),
        ("ip6tables", "-A", "INPUT", "-p", "ipv6-icmp", "--icmpv6-type", "echo-request", *nth),
    )


@needs_netns
@pytest.mark.parametrize(("range_", "kind"), [(ANYONE, "datagram"), (NO_ONE, "raw")])
def test_partial_loss_is_observed_and_judged_by_levels(range_: str, kind: str) -> None:
    if shutil.which("iptables") is None:
        pytest.skip("iptables is not installed: scripts/install-test-deps.sh")
    levels = {"levels": {"packet_loss_percent": {"warn_above": 0}}}
    failing = {"levels": {"packet_loss_percent": {"warn_above": 0, "fail_above": 25}, "rtt_max": {"fail_above": 1}}}
    with netns({"net.ipv4.ping_group_range": range_}, drop_every_second_request()) as name:
        for host in LOOPBACKS:
            (seen, again), _ = ping_in(name, icmp(host, count=4), runs=2)
            (warned,), _ = ping_in(name, icmp(host, count=4, **levels))
            (failed,), _ = ping_in(name, icmp(host, count=4, **failing))
            assert seen.status is Status.PASS, seen.output
            assert seen.output.startswith(f"{where(host)}: 2/4 replies, 50% loss, rtt min/avg/max ")
            assert seen.observed["packet_loss_percent"].value == 50 and seen.observed["replies"].value == 2
            assert seen.observed["packet_loss_ratio"].value == 0.5 and seen.observed["socket"].value == kind
            assert again.observed["replies"].value == 2, again.output  # the same echoes dropped each run
            assert warned.status is Status.WARN
            assert warned.output.endswith("packet_loss_percent is 50%, above the warn level of 0%")
            assert failed.reason is Reason.UNEXPECTED
            assert failed.output == f"{where(host)}: packet_loss_percent is 50%, above the fail level of 25%"


@needs_netns
def test_no_route_is_said(loopback_ns: str) -> None:
    """The namespace has its loopback and nothing else: no route to any other address."""
    for host in ("198.51.100.7", "2001:db8::7"):
        (result,), _ = ping_in(loopback_ns, icmp(host), user=NOBODY)
        assert result.reason is Reason.ERROR
        assert result.output == f"{where(host)}: Network is unreachable"


@needs_netns
@pytest.mark.parametrize(("range_", "user"), [(ANYONE, NOBODY), (NO_ONE, None)])
def test_no_socket_outlives_a_run(range_: str, user: int | None) -> None:
    """20 runs each to an address that ignores echoes (cut at the deadline), one
    that answers every second one, and one without a route."""
    rules = drop_every_second_request() if shutil.which("iptables") else ()
    with netns({"net.ipv4.ping_group_range": range_, "net.ipv4.icmp_echo_ignore_all": "1"}, rules) as name:
        for host in ("127.0.0.1", "::1", "198.51.100.7"):
            results, left = ping_in(name, icmp(host, count=2, timeout="100ms"), user, runs=20)
            assert len(results) == 20 and left == 0, (host, results[-1].output)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"count": 0}, "count"),
        ({"count": 101}, "count"),
        ({"count": 20, "echo_interval": "100ms", "timeout": "3s"}, "20 echoes 100ms apart take 1.9s, more than half"),
        ({"echo_interval": "0s"}, "echo_interval"),
        ({"ip_family": "ipv5"}, "ip_family"),
        ({"port": 7}, "port"),
    ],
)
def test_bad_options(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_from({"type": "icmp", "host": "127.0.0.1", **options})
    assert problem in str(error.value)
