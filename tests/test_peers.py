"""Peers: the fleet's verdict, the peer answer, DNS resolution, and what a
shared check does to readiness (the processes end to end are in test_fleet.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from probed.config import PeersOptions
from probed.model import Fleet, FleetPeers, Reason, Result, Status
from probed.peers import Answer, Evidence, PeerRun, Peers, evidence, judge, new_resolver, parse_answer, resolve
from tests.support.apps import serve_app
from tests.support.daemon import daemon, failed, passed
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers.dnsmasq import DnsServer

WINDOW = (1_000.0, 1_010.0)  # ends of the local failure's first and latest failing runs (wall clock)


def runs(*spans: tuple[str, float, float]) -> Answer:
    return Answer(tuple(PeerRun(status == "fail", started, ended) for status, started, ended in spans), 1.0)


PASSED_BEFORE = ("pass", 998.0, 999.9)  # ended before this replica's first failing run ended
PASSED_DURING = ("pass", 1004.0, 1004.01)
PASSED_AFTER = ("pass", 1010.01, 1010.02)  # ended after this replica's latest failing run
FAILED = ("fail", 1009.0, 1009.5)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (runs(), Evidence.NOT_YET),  # the peer has not run the check yet
        (runs(PASSED_BEFORE), Evidence.NOT_YET),  # its last pass may predate the outage
        (runs(PASSED_AFTER), Evidence.NOT_YET),  # the outage may be over: wait for the next run here
        (runs(("pass", 999.0, 1000.0)), Evidence.PASSING),  # the window's edges are inside it
        (runs(("pass", 1009.0, 1010.0)), Evidence.PASSING),
        (runs(PASSED_DURING), Evidence.PASSING),
        (runs(PASSED_BEFORE, PASSED_DURING, PASSED_AFTER), Evidence.PASSING),  # a newer pass hides no older one
        (runs(("fail", 990.0, 990.5)), Evidence.FAILING),  # its latest run failed: failing now
        (runs(PASSED_DURING, FAILED), Evidence.FAILING),
        (runs(FAILED, PASSED_AFTER), Evidence.NOT_YET),  # it recovered: nothing to say about this window
    ],
)
def test_which_runs_are_evidence(answer: Answer, expected: Evidence) -> None:
    assert evidence(answer, WINDOW) is expected


def peers_answering(*answers: Answer | None) -> dict[str, Answer | None]:
    return {f"127.0.0.{i + 2}:8080": answer for i, answer in enumerate(answers)}


FAILING, PASSING, NOT_YET = runs(FAILED), runs(PASSED_DURING), runs(PASSED_BEFORE)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([], (Fleet.ALONE, True, 1, 1)),
        ([None, None], (Fleet.ALONE, True, 1, 1)),
        ([NOT_YET, None], (Fleet.ASKING, False, 1, 1)),
        ([FAILING], (Fleet.SHARED_OUTAGE, False, 2, 2)),  # two of two
        ([PASSING], (Fleet.LOCAL_FAULT, True, 1, 2)),  # a tie in a fleet of two: this replica is the one cut off
        ([PASSING, None], (Fleet.LOCAL_FAULT, True, 1, 2)),  # three with one down: the same
        ([FAILING, None], (Fleet.SHARED_OUTAGE, False, 2, 2)),
        ([FAILING, FAILING], (Fleet.SHARED_OUTAGE, False, 3, 3)),
        ([FAILING, PASSING], (Fleet.SHARED_OUTAGE, False, 2, 3)),  # 2 of 3 is more than half
        ([PASSING, PASSING], (Fleet.LOCAL_FAULT, True, 1, 3)),
        ([FAILING, PASSING, PASSING, FAILING], (Fleet.SHARED_OUTAGE, False, 3, 5)),
        ([PASSING, PASSING, FAILING, NOT_YET], (Fleet.LOCAL_FAULT, True, 2, 4)),  # 2 of 4: a tie again
        ([NOT_YET, PASSING], (Fleet.LOCAL_FAULT, True, 1, 2)),  # decided on what counts
    ],
)
def test_the_fleet_verdict(answers: list[Answer | None], expected: tuple[Fleet, bool, int, int]) -> None:
    verdict = judge(peers_answering(*answers), WINDOW, quorum=0.5, alone_fails=True)
    assert (verdict.fleet, verdict.gates, verdict.failing, verdict.answering) == expected


def test_the_verdict_says_who_counted() -> None:
    verdict = judge(peers_answering(FAILING, NOT_YET, None, PASSING), WINDOW, quorum=0.5, alone_fails=True)
    assert verdict.peers == FleetPeers(
        counted=("127.0.0.2:8080", "127.0.0.5:8080"), not_yet=("127.0.0.3:8080",), unreachable=("127.0.0.4:8080",)
    )
    assert verdict.peers.answered == ("127.0.0.2:8080", "127.0.0.5:8080", "127.0.0.3:8080")


def test_alone_policy_and_quorum() -> None:
    assert not judge(peers_answering(None), WINDOW, quorum=0.5, alone_fails=False).gates
    two_of_three = peers_answering(FAILING, PASSING)
    assert judge(two_of_three, WINDOW, quorum=0.7, alone_fails=True).fleet is Fleet.LOCAL_FAULT
    assert judge(two_of_three, WINDOW, quorum=0.6, alone_fails=True).fleet is Fleet.SHARED_OUTAGE


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"last": "fail"}',
        b'{"runs": [], "instance": 7}',
        b'{"runs": {}, "instance": "x"}',
        b'{"runs": [["maybe", 1, 2]], "instance": "x"}',
        b'{"runs": [["fail", "yesterday", 2]], "instance": "x"}',
        b'{"runs": [["fail", 2, 1]], "instance": "x"}',  # ended before it started
        b'{"runs": [["fail", true, 2]], "instance": "x"}',
        b'{"runs": [["fail", 1]], "instance": "x"}',
        b'{"runs": [["fail", 1, 2]], "interval": -1, "instance": "x"}',
        b'{"runs": [["fail", 1, 2], ["fail", 1, 2], ["fail", 1, 2], ["fail", 1, 2], ["fail", 1, 2]], "instance": "x"}',
        b"\xff\xfe",
    ],
)
def test_garbage_is_no_answer(body: bytes) -> None:
    assert parse_answer(body) is None


def test_a_peer_answer() -> None:
    body = b'{"runs": [["pass", 4, 4.1], ["fail", 5.5, 6]], "interval": 1, "instance": "x"}'
    assert parse_answer(body) == ("x", Answer((PeerRun(False, 4.0, 4.1), PeerRun(True, 5.5, 6.0)), 1.0))
    assert parse_answer(b'{"runs": [], "last": null, "instance": "x"}') == ("x", Answer(()))  # not run yet


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsServer]:
    server = DnsServer(tmp_path / "dns")
    server.start({"probed-peers.test": ["127.0.0.2", "127.0.0.3", "::1"], "other.test": ["127.0.0.9"]})
    yield server
    server.stop()


async def test_resolve_asks_the_given_dns_server_for_every_address(dns: DnsServer) -> None:
    resolver = new_resolver(("127.0.0.1", dns.port), 2.0)
    assert await resolve("probed-peers.test", resolver) == ["127.0.0.2", "127.0.0.3", "::1"]
    assert await resolve("no-such-name.test", resolver) == []
    dns.stop()
    with pytest.raises((TimeoutError, ValueError)):
        await resolve("probed-peers.test", new_resolver(("127.0.0.1", dns.port), 0.3))


async def test_a_name_with_more_addresses_than_a_udp_answer_holds_resolves_completely(tmp_path: Path) -> None:
    """130 A records: the UDP answer is truncated (asserted, so the TCP retry
    is what this tests), and every address is resolved."""
    import dns.flags
    import dns.message
    import dns.query

    hosts = [f"127.0.{i // 250}.{i % 250 + 2}" for i in range(130)]
    server = DnsServer(tmp_path / "dns")
    server.start({"probed-peers.test": hosts})
    try:
        udp = await asyncio.to_thread(
            dns.query.udp, dns.message.make_query("probed-peers.test", "A"), "127.0.0.1", 2.0, server.port
        )
        assert udp.flags & dns.flags.TC and len(udp.answer[0] if udp.answer else ()) < len(hosts)
        assert await resolve("probed-peers.test", new_resolver(("127.0.0.1", server.port), 2.0)) == sorted(hosts)
    finally:
        server.stop()


async def test_a_dns_server_that_never_answers_is_a_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mute:
        mute.bind(("127.0.0.1", 0))  # receives the query, never answers
        with pytest.raises(TimeoutError):
            await resolve("probed-peers.test", new_resolver(mute.getsockname(), 0.3))


SHARED = {"db": {"type": "disk", "path": "/", "scope": "shared"}, "local": {"type": "disk", "path": "/tmp"}}


def test_without_peers_a_shared_check_never_gates_readiness_but_gates_the_rest() -> None:
    d = daemon(SHARED)
    store = d.store
    store.record("db", passed())
    store.record("local", passed())
    assert (store.ready, store.group_status("startup").passing) == (True, True)
    store.record("db", failed())
    db = store.checks["db"]
    assert (db.effective, db.fleet) == (Status.FAIL, Fleet.NO_PEERS)
    assert (store.ready, store.status) == (True, Status.FAIL)  # /health still says it
    store.record("db", passed())
    assert (db.fleet, store.status) == (None, Status.PASS)


def test_with_peers_the_fleet_decides_what_a_shared_failure_does() -> None:
    d = daemon(SHARED, peers={"static": ["127.0.0.2:8080"]})
    store, sample = d.store, d.registry.get_sample_value
    store.record("db", passed())
    store.record("local", passed())
    store.record("db", failed())
    assert (store.checks["db"].fleet, store.ready) == (Fleet.ASKING, True)  # no evidence yet: no verdict against it
    store.set_fleet("db", Fleet.SHARED_OUTAGE, False, (3, 3))
    assert (store.ready, store.status) == (True, Status.WARN)
    assert sample("probed_check_shared_outage", {"check": "db", "type": "disk"}) == 1
    store.set_fleet("db", Fleet.LOCAL_FAULT, True, (1, 3))
    assert (store.ready, store.status) == (False, Status.FAIL)
    assert sample("probed_check_shared_outage", {"check": "db", "type": "disk"}) == 0
    store.set_fleet("db", Fleet.ALONE, False, (1, 1))  # alone: pass
    assert (store.ready, store.status) == (True, Status.WARN)
    store.record("db", passed())
    store.set_fleet("db", Fleet.LOCAL_FAULT, True)  # an answer that arrives after recovery changes nothing
    assert (store.checks["db"].fleet, store.ready, store.status) == (None, True, Status.PASS)


async def test_health_says_which_case_holds(aiohttp_client: AiohttpClient) -> None:
    d = daemon(SHARED, peers={"static": ["127.0.0.2:8080"]})
    client = await aiohttp_client(d.app)
    d.store.record("local", passed())
    d.store.record("db", failed())
    heard = FleetPeers(counted=("127.0.0.2:8080", "127.0.0.3:8080"), not_yet=("127.0.0.4:8080",))
    d.store.set_fleet("db", Fleet.SHARED_OUTAGE, False, (2, 3), heard)
    body = await (await client.get("/health")).json(content_type=None)
    assert body["status"] == "warn"
    assert body["checks"]["db"][0]["fleet"] == {
        "case": "shared-outage",
        "gatesReadiness": False,
        "says": "shared outage (2 of 3 answering replicas see it failing): readiness stays up, "
        "since removing every replica helps nobody",
        "failing": 2,
        "answering": 3,
        "peers": {
            "answered": ["127.0.0.2:8080", "127.0.0.3:8080", "127.0.0.4:8080"],
            "counted": ["127.0.0.2:8080", "127.0.0.3:8080"],
            "notYet": ["127.0.0.4:8080"],
            "unreachable": [],
        },
    }
    verbose = await (await client.get("/health/ready?verbose")).text()
    assert verbose.splitlines()[0].startswith("[+]db failed: unexpected")
    assert "shared outage (2 of 3 answering replicas see it failing)" in verbose


async def garbage(request: web.Request) -> web.Response:
    return web.Response(text="<html>not a probed</html>")


async def test_unreachable_hanging_and_garbage_peers_are_no_answer(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("fleet-secret\n")
    peer = daemon(SHARED, server={"details": "token", "token_file": str(tmp_path / "token")})
    peer.store.record("db", failed())
    junk = web.Application()
    junk.router.add_get("/peers/checks/{name}", garbage)
    async with serve_app(peer.app) as peer_url, serve_app(junk) as junk_url:
        peer_port, junk_port = int(peer_url.rsplit(":", 1)[1]), int(junk_url.rsplit(":", 1)[1])
        with silent_listener() as hanging:
            static = [f"127.0.0.1:{p}" for p in (peer_port, junk_port, hanging, closed_port())]
            options = PeersOptions(static=tuple(static), timeout=0.5)
            me = daemon(SHARED, peers={"static": static})
            with_token = Peers(options, lambda: me.store, 8080, "me", token="fleet-secret")
            without = Peers(options, lambda: me.store, 8080, "me")
            await with_token.start()
            await without.start()
            try:
                addresses = await with_token.addresses()
                answers = await asyncio.gather(*(with_token.ask(h, p, "db") for h, p in addresses))
                anonymous = await without.ask("127.0.0.1", peer_port, "db")
            finally:
                await with_token.stop()
                await without.stop()
    [real, *others] = answers
    assert real is not None and real.runs[-1].failing
    assert others == [None, None, None]
    assert dict(with_token.requests) == {"answered": 1, "unreachable": 3}
    assert anonymous is None  # details: token, and no token: 401


async def test_the_peer_answer_needs_the_token_when_details_do(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("fleet-secret\n")
    d = daemon(SHARED, server={"details": "token", "token_file": str(tmp_path / "token")})
    client = await aiohttp_client(d.app)
    d.store.record("db", failed())
    refused = await client.get("/peers/checks/db")
    assert refused.status == 401 and "fleet-secret" not in await refused.text()
    answer = await client.get("/peers/checks/db", headers={"Authorization": "Bearer fleet-secret"})
    body = await answer.json()
    assert (body["check"], body["status"], body["last"], body["time"]) == ("db", "fail", "fail", 1_700_000_010.0)
    assert body["runs"] == [["fail", 1_700_000_010.0, 1_700_000_010.5]] and body["interval"] == 10
    assert body["instance"] == d.daemon.instance
    assert (await client.get("/peers/checks/nope", headers={"Authorization": "Bearer fleet-secret"})).status == 404


async def test_a_replica_recognises_itself_among_the_peers_and_stops_asking_it() -> None:
    me = daemon(SHARED, peers={"static": ["127.0.0.1:1"]})
    me.store.record("db", failed())
    async with serve_app(me.app) as url:
        port = int(url.rsplit(":", 1)[1])
        options = PeersOptions(static=(f"127.0.0.1:{port}",), timeout=0.5)
        peers = Peers(options, lambda: me.store, port, me.daemon.instance)
        await peers.start()
        try:
            assert await peers.addresses() == [("127.0.0.1", port)]
            assert await peers.ask("127.0.0.1", port, "db") is None  # its own answer: no evidence
            assert await peers.addresses() == []  # and not asked again
        finally:
            await peers.stop()


def run_at(status: Status, started_at: float) -> Result:
    reason = Reason.REFUSED if status is Status.FAIL else None
    return Result(status, started_at, 0.01, "down" if reason else "", reason)


@pytest.mark.parametrize(
    ("peer_runs", "case", "ready"),
    [
        ([Status.FAIL, Status.FAIL], Fleet.SHARED_OUTAGE, True),
        ([Status.PASS, Status.PASS], Fleet.LOCAL_FAULT, False),
    ],
)
async def test_a_round_asks_the_peers_and_writes_the_verdict(peer_runs: list[Status], case: Fleet, ready: bool) -> None:
    peers_ = [daemon(SHARED) for _ in peer_runs]
    for peer, status in zip(peers_, peer_runs):
        peer.store.record("db", run_at(status, 1_700_000_005.0))  # while this replica was failing
    async with serve_app(peers_[0].app) as first, serve_app(peers_[1].app) as second:
        static = [url.removeprefix("http://") for url in (first, second)]
        me = daemon({**SHARED, "local": {"type": "disk", "path": "/tmp", "critical": False}}, peers={"static": static})
        me.store.record("db", run_at(Status.PASS, 1_699_999_990.0))
        me.store.record("db", run_at(Status.FAIL, 1_700_000_000.0))
        me.store.record("db", run_at(Status.FAIL, 1_700_000_010.0))
        assert me.store.checks["db"].fleet is Fleet.ASKING and me.store.ready
        peers = Peers(PeersOptions(static=tuple(static), timeout=1.0), lambda: me.store, 8080, me.daemon.instance)
        await peers.start()
        try:
            await peers.round()
        finally:
            await peers.stop()
    db = me.store.checks["db"]
    assert (db.fleet, db.fleet_counts, me.store.ready) == (case, (3, 3) if ready else (1, 3), ready)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("never happened")


async def test_a_pass_after_the_latest_failure_here_counts_once_this_replica_fails_again() -> None:
    peer = daemon(SHARED)
    peer.store.record("db", run_at(Status.PASS, 1_700_000_005.0))  # after this replica's only failing run
    async with serve_app(peer.app) as url:
        static = [url.removeprefix("http://")]
        me = daemon({**SHARED, "local": {"type": "disk", "path": "/tmp", "critical": False}}, peers={"static": static})
        me.store.record("db", run_at(Status.PASS, 1_699_999_990.0))
        me.store.record("db", run_at(Status.FAIL, 1_700_000_000.0))
        db = me.store.checks["db"]
        peers = Peers(PeersOptions(static=tuple(static), timeout=1.0), lambda: me.store, 8080, me.daemon.instance)
        await peers.start()  # its background rounds ask
        try:
            await until(lambda: db.fleet_peers is not None)
            assert (db.fleet, me.store.ready) == (Fleet.ASKING, True)  # the outage may have ended meanwhile
            assert db.fleet_peers == FleetPeers(not_yet=tuple(static))
            await asyncio.sleep(0.3)
            assert dict(peers.requests) == {"answered": 1}  # nothing new to ask until a run here
            me.store.record("db", run_at(Status.FAIL, 1_700_000_010.0))  # still failing: the pass was during it
            await until(lambda: db.fleet is Fleet.LOCAL_FAULT)
        finally:
            await peers.stop()
    assert (db.fleet_counts, me.store.ready, db.fleet_peers) == ((1, 2), False, FleetPeers(counted=tuple(static)))
    assert dict(peers.requests) == {"answered": 2}


async def test_a_peer_not_run_since_the_failure_here_is_asked_again_after_its_next_run() -> None:
    fast = {"db": {"type": "disk", "path": "/", "scope": "shared", "interval": "1s"}}
    peer = daemon(fast)
    peer.store.record("db", run_at(Status.PASS, 1_699_999_999.0))  # before this replica's failure
    async with serve_app(peer.app) as url:
        static = [url.removeprefix("http://")]
        me = daemon(fast, peers={"static": static})
        me.store.record("db", run_at(Status.FAIL, 1_700_000_000.0))
        db = me.store.checks["db"]
        peers = Peers(PeersOptions(static=tuple(static), timeout=1.0), lambda: me.store, 8080, me.daemon.instance)
        await peers.start()
        try:
            await until(lambda: db.fleet_peers is not None)
            assert db.fleet is Fleet.ASKING
            peer.store.record("db", run_at(Status.FAIL, 1_700_000_000.5))  # its next run: the outage is shared
            await until(lambda: db.fleet is Fleet.SHARED_OUTAGE)  # asked again, though nothing ran here
        finally:
            await peers.stop()
    assert (db.fleet_counts, me.store.ready) == ((2, 2), True)


async def test_a_peer_that_misses_an_ask_keeps_its_last_answer_for_two_intervals() -> None:
    fast = {"db": {"type": "disk", "path": "/", "scope": "shared", "interval": "1s"}}
    peer = daemon(fast)
    peer.store.record("db", run_at(Status.FAIL, time.time() - 0.5))
    me = daemon(fast, peers={"static": ["127.0.0.1:1"]})
    db = me.store.checks["db"]
    async with serve_app(peer.app) as url:
        static = (url.removeprefix("http://"),)
        peers = Peers(PeersOptions(static=static, timeout=0.5), lambda: me.store, 8080, me.daemon.instance)
        await peers.start()
        me.store.record("db", run_at(Status.FAIL, time.time() - 0.2))
        await until(lambda: db.fleet is Fleet.SHARED_OUTAGE)
    try:  # the peer is gone: its port refuses
        me.store.record("db", run_at(Status.FAIL, time.time()))  # a new failing run here: every peer is asked
        await until(lambda: peers.requests["unreachable"] == 1)
        assert (db.fleet, db.fleet_peers) == (Fleet.SHARED_OUTAGE, FleetPeers(counted=static))  # its answer stands
        await asyncio.sleep(2.0)  # two intervals after it last answered, its answer no longer stands
        me.store.record("db", run_at(Status.FAIL, time.time()))
        await until(lambda: db.fleet is Fleet.ALONE)
    finally:
        await peers.stop()
    assert db.fleet_peers == FleetPeers(unreachable=static)


async def test_beyond_sample_peers_a_failing_run_asks_that_many_keeping_those_that_answer() -> None:
    """Six peers, two of them up and passing while this replica fails, sample 2:
    each failing run here asks two; one that answered is kept, an unreachable
    one is replaced by a peer not tried yet, so within 1 + 4 runs (one slot
    left for the four down) both live peers are asked, and then kept."""
    live = [daemon(SHARED) for _ in range(2)]
    for peer in live:
        peer.store.record("db", run_at(Status.PASS, 1_700_000_005.0))
    async with serve_app(live[0].app) as first, serve_app(live[1].app) as second:
        up = {url.removeprefix("http://") for url in (first, second)}
        static = (*sorted(up), *(f"127.0.0.1:{closed_port()}" for _ in range(4)))
        me = daemon({**SHARED, "local": {"type": "disk", "path": "/tmp", "critical": False}}, peers={"static": static})
        db = me.store.checks["db"]
        me.store.record("db", run_at(Status.PASS, 1_699_999_990.0))
        options = PeersOptions(static=static, timeout=1.0, sample=2)
        peers = Peers(options, lambda: me.store, 8080, me.daemon.instance)
        await peers.start()
        asked: list[set[str]] = []
        try:
            while len(asked) < 6 and (len(asked) < 2 or asked[-2:] != [up, up]):
                me.store.record("db", run_at(Status.FAIL, 1_700_000_000.0 + 10 * len(asked)))
                await until(lambda: sum(peers.requests.values()) == 2 * len(asked) + 2)
                for _ in range(10):  # the round judges on the loop's next few turns after its last answer
                    await asyncio.sleep(0)
                assert db.fleet_peers is not None
                asked.append({*db.fleet_peers.counted, *db.fleet_peers.not_yet, *db.fleet_peers.unreachable})
        finally:
            await peers.stop()
    assert all(len(peers_asked) == 2 for peers_asked in asked)
    assert asked[-2:] == [up, up] and len(asked) <= 6  # found within five runs, then kept
    assert (db.fleet, db.fleet_counts, me.store.ready) == (Fleet.LOCAL_FAULT, (1, 3), False)
    assert db.fleet_peers is not None and set(db.fleet_peers.counted) == up
