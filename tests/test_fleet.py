"""Fleet-safe readiness, groups and depends_on with real processes: several
`probed serve` replicas on 127.0.0.2-4 (one port), a real PostgreSQL as the
shared dependency, real DNS for the peer name (dnsmasq), real faults."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.apps import app_in_thread, target_app
from tests.support.checks import NO_LEVELS_YAML
from tests.support.faults import TcpProxy, silent_listener
from tests.support.net import free_port, http_get, poll
from tests.support.probed import Served, serving, write_config
from tests.support.servers.dnsmasq import DnsServer
from tests.support.servers.postgres import PostgresServer

TOKEN = "fleet-t0ken-secret"
REPLICAS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@dataclass
class Replica:
    host: str
    port: int
    served: Served

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.served.process

    @property
    def base(self) -> str:
        return self.served.base

    def health(self) -> dict[str, object]:
        return json.loads(http_get(f"{self.base}/health")[1])  # type: ignore[no-any-return]

    def log_lines(self) -> list[dict[str, Any]]:
        return self.served.events()


@contextmanager
def replica(tmp_path: Path, host: str, port: int, config: str) -> Iterator[Replica]:
    """`probed serve` on host:port with this config; stopped with SIGTERM."""
    directory = tmp_path / host
    directory.mkdir(exist_ok=True)
    path = write_config(directory, f"server:\n  listen: '{host}:{port}'\n{config}")
    with serving(path, "--log-format", "json", until="started") as served:
        yield Replica(host, port, served)


@dataclass
class ReadinessWatch:
    """GETs each replica's /health/ready in a loop and keeps every status seen."""

    replicas: list[Replica]
    seen: dict[str, list[int]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ReadinessWatch:
        self.seen = {r.host: [] for r in self.replicas}
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            for r in self.replicas:
                self.seen[r.host].append(http_get(f"{r.base}/health/ready", timeout=2)[0])
            self._stop.wait(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def fleet_case(r: Replica, check: str = "db") -> str | None:
    entry = r.health()["checks"][check][0]  # type: ignore[index]
    fleet = entry.get("fleet")
    return fleet["case"] if fleet else None


# A fleet decision takes a few rounds of 1 s checks and 500 ms peer requests;
# on a loaded machine rounds stretch, so waits are generous (bounds, not timings).
DECIDED_WITHIN = 60.0


def wait_for_case(r: Replica, case: str | None) -> None:
    poll(f"{r.base}/health", lambda status, body: status in (200, 503) and _case_in(body) == case, DECIDED_WITHIN)


def _case_in(body: str) -> str | None:
    fleet = json.loads(body)["checks"]["db"][0].get("fleet")
    return fleet["case"] if fleet else None


def shared_config(dsn: str, dns: DnsServer, extra: str = "") -> str:
    return f"""\
  details: token
  token: {TOKEN}
peers:
  dns: probed-peers.test
  resolver: 127.0.0.1:{dns.port}
  timeout: 500ms
defaults:
  interval: 1s
  timeout: 500ms
checks:
  db: {{type: postgres, dsn: '{dsn}', scope: shared}}
{extra}"""


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsServer]:
    server = DnsServer(tmp_path / "dns")
    server.start({"probed-peers.test": REPLICAS})
    yield server
    server.stop()


@contextmanager
def fleet(tmp_path: Path, configs: list[str]) -> Iterator[list[Replica]]:
    port = free_port()
    with ExitStack() as stack:
        replicas = [stack.enter_context(replica(tmp_path, host, port, c)) for host, c in zip(REPLICAS, configs)]
        for r in replicas:
            poll(f"{r.base}/health/ready", lambda status, _: status == 200)
        yield replicas


def test_a_shared_outage_keeps_every_replica_ready(
    tmp_path: Path, own_postgres: PostgresServer, dns: DnsServer
) -> None:
    config = shared_config(own_postgres.dsn(), dns)
    with fleet(tmp_path, [config] * 3) as replicas, ReadinessWatch(replicas) as watch:
        own_postgres.stop()
        for r in replicas:
            wait_for_case(r, "shared-outage")
            health = r.health()
            assert health["status"] == "warn"
            fleet_entry = health["checks"]["db"][0]["fleet"]  # type: ignore[index]
            assert fleet_entry["gatesReadiness"] is False and fleet_entry["answering"] >= 2
            assert fleet_entry["says"].startswith("shared outage")
            _, metrics = poll(f"{r.base}/metrics", lambda status, _: status == 200)
            assert 'probed_check_shared_outage{check="db",type="postgres"} 1.0' in metrics
            assert re.search(r'probed_peer_requests_total\{result="answered"\} [1-9]', metrics)
            verbose = http_get(f"{r.base}/health/ready?verbose")[1]
            assert re.match(r"\[\+\]db failed: \w+ \(shared outage", verbose), verbose  # refused, or error
            assert verbose.endswith("ready check passed (warn)\n")
        own_postgres.start()
        for r in replicas:
            poll(f"{r.base}/health", lambda status, body: status == 200 and json.loads(body)["status"] == "pass")
    for host, statuses in watch.seen.items():
        assert statuses and set(statuses) == {200}, f"{host} left the Service: {statuses}"
    for r in replicas:
        assert TOKEN not in r.served.out + r.served.err  # the token travels to the peers, never into a log


def test_a_local_fault_takes_only_that_replica_out(
    tmp_path: Path, own_postgres: PostgresServer, dns: DnsServer
) -> None:
    proxy = TcpProxy(own_postgres.port)
    proxy.start()
    direct = shared_config(own_postgres.dsn(), dns)
    through_proxy = shared_config(own_postgres.dsn().replace(f":{own_postgres.port}/", f":{proxy.port}/"), dns)
    try:
        with fleet(tmp_path, [direct, direct, through_proxy]) as replicas:
            cut_off, healthy = replicas[2], replicas[:2]
            with ReadinessWatch(healthy) as watch:
                proxy.cut()
                poll(f"{cut_off.base}/health/ready", lambda status, _: status == 503, DECIDED_WITHIN)
                wait_for_case(cut_off, "local-fault")
                says = cut_off.health()["checks"]["db"][0]["fleet"]["says"]  # type: ignore[index]
                # Decided on the peers counted so far: a peer whose pass ended just after
                # the latest failing run here is not yet evidence, and counts at the next.
                assert re.match(r"local fault \(1 of [23] answering replicas see it failing\)", says), says
                for r in healthy:
                    assert fleet_case(r) is None
                proxy.heal()
                poll(f"{cut_off.base}/health/ready", lambda status, _: status == 200, DECIDED_WITHIN)
            for host, statuses in watch.seen.items():
                assert statuses and set(statuses) == {200}, f"{host} left the Service: {statuses}"
    finally:
        proxy.cut()


async def _garbage(request: web.Request) -> web.Response:
    return web.Response(text="this is not probed")


@pytest.mark.parametrize(("alone", "ready"), [("fail", 503), ("pass", 200)])
def test_alone_follows_the_policy(tmp_path: Path, own_postgres: PostgresServer, alone: str, ready: int) -> None:
    junk = web.Application()
    junk.router.add_get("/peers/checks/{name}", _garbage)
    with app_in_thread(junk) as junk_url, silent_listener() as hanging:
        unreachable = [junk_url.removeprefix("http://"), f"127.0.0.1:{hanging}", f"127.0.0.1:{free_port()}"]
        config = f"""\
peers:
  static: {json.dumps(unreachable)}
  timeout: 300ms
  alone: {alone}
defaults:
  interval: 1s
  timeout: 500ms
checks:
  db: {{type: postgres, dsn: '{own_postgres.dsn()}', scope: shared}}
"""
        with replica(tmp_path, "127.0.0.2", free_port(), config) as r:
            poll(f"{r.base}/health/ready", lambda status, _: status == 200)
            own_postgres.stop()
            wait_for_case(r, "alone")
            assert http_get(f"{r.base}/health/ready")[0] == ready
            assert r.health()["status"] == ("fail" if alone == "fail" else "warn")


def test_groups_startup_exclude_verbose_and_depends_on(tmp_path: Path, own_postgres: PostgresServer) -> None:
    with app_in_thread(target_app()) as web_url:
        config = f"""\
defaults:
  interval: 1h
  timeout: 2s
groups:
  ready: [db]
  payments: [db, orders]
checks:
  db: {{type: postgres, dsn: '{own_postgres.dsn()}', interval: 1s, timeout: 500ms}}
  orders: {{type: http, url: '{web_url}/ok', depends_on: [db], interval: 1s, timeout: 500ms}}
  disk: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}
"""
        with replica(tmp_path, "127.0.0.3", free_port(), config) as r:
            poll(f"{r.base}/health/startup", lambda status, _: status == 200)
            poll(f"{r.base}/health/payments", lambda status, _: status == 200)
            own_postgres.stop()
            poll(f"{r.base}/health/ready", lambda status, _: status == 503)
            assert http_get(f"{r.base}/health/startup")[0] == 200  # latched
            _, verbose = poll(f"{r.base}/health/payments?verbose", lambda _, body: "dependency" in body)
            db_line, *rest = verbose.splitlines()
            assert re.match(r"\[-\]db failed: (refused|error): ", db_line), db_line  # error while shutting down
            assert rest == [
                "[-]orders failed: dependency: not run: it depends on db, which fails",
                "payments check failed",
            ]
            assert http_get(f"{r.base}/health/payments?exclude=db&exclude=orders")[0] == 200
            assert http_get(f"{r.base}/health/payments?exclude=db")[0] == 503
            assert http_get(f"{r.base}/health/live")[0] == 200  # dependencies play no part
            held_runs = _runs(r, "orders")
            db_runs = _runs(r, "db")
            assert held_runs >= 1 and db_runs >= 1  # orders ran before db failed
            poll(f"{r.base}/metrics", lambda _, body: _runs_in(body, "db") >= db_runs + 2)
            metrics = http_get(f"{r.base}/metrics")[1]
            assert _runs_in(metrics, "orders") == held_runs  # db ran twice more; orders not once
            assert 'probed_check_dependency_failing{check="orders",type="http"} 1.0' in metrics
            assert 'probed_group_status{group="startup",probed_group_status="pass"} 1.0' in metrics
            assert 'probed_group_status{group="payments",probed_group_status="fail"} 1.0' in metrics
            own_postgres.start()
            poll(f"{r.base}/health/payments", lambda status, _: status == 200)
        changes = [
            (e["check"], e["from"], e["to"], e["reason"])
            for e in r.log_lines()
            if e.get("event") == "check_status_changed"
        ]
        assert ("orders", "pass", "fail", "dependency") in changes


def _runs(r: Replica, check: str) -> float:
    return _runs_in(http_get(f"{r.base}/metrics")[1], check)


def _runs_in(metrics: str, check: str) -> float:
    pattern = rf'probed_check_runs_total\{{check="{check}",result="(\w+)",type="\w+"\}} ([0-9.e+]+)'
    return sum(float(m[2]) for m in re.finditer(pattern, metrics))


def test_a_new_pod_decides_readiness_with_its_first_runs(tmp_path: Path, own_postgres: PostgresServer) -> None:
    """Hourly checks: with a random first offset over the interval readiness
    would stay undecided for up to an hour; the first runs come at once."""
    config = f"""\
defaults:
  interval: 1h
  timeout: 2s
checks:
  db: {{type: postgres, dsn: '{own_postgres.dsn()}'}}
  disk: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}
"""
    with replica(tmp_path, "127.0.0.4", free_port(), config) as r:
        poll(f"{r.base}/health/ready", lambda status, _: status == 200)
        poll(f"{r.base}/health/startup", lambda status, _: status == 200)
    events = [e["event"] for e in r.log_lines()]
    first_passes = [
        e["check"] for e in r.log_lines() if e.get("event") == "check_status_changed" and e["from"] == "pending"
    ]
    assert sorted(first_passes) == ["db", "disk"]
    assert events.index("probed_started") < events.index("check_status_changed")


# -- the fleet judgment whatever the phases ----------------------------------------------------
#
# Each replica reaches the shared PostgreSQL through a proxy of its own, so the
# test cuts one replica's path (a local fault) or stops the database (a shared
# outage: cutting every path one after another would be a local fault for the
# microseconds between two cuts, which a replica's run may fall into).
# The replicas run the shared check at pinned points of the wall clock's second
# (`phase`), so the peers run it at known offsets from the first replica's runs:
# 10 and 100 ms behind and ahead, and half an interval.

BASE_PHASE = 0.3  # seconds into each 1 s interval: the first replica's runs
# A run through a proxy thread on a loaded machine can take half a second: a
# timeout then would be a real local failure, one the test did not make.


@dataclass
class Member:
    replica: Replica
    path: TcpProxy


@contextmanager
def phased_fleet(tmp_path: Path, postgres: PostgresServer, offsets: tuple[float, ...]) -> Iterator[list[Member]]:
    """The first replica at BASE_PHASE, one more per offset at BASE_PHASE + offset."""
    hosts = [f"127.0.0.{i + 2}" for i in range(len(offsets) + 1)]
    port = free_port()
    with ExitStack() as stack:
        members = []
        for host, offset in zip(hosts, (0.0, *offsets)):
            path = TcpProxy(postgres.port)
            path.start()
            stack.callback(path.cut)
            dsn = postgres.dsn().replace(f":{postgres.port}/", f":{path.port}/")
            config = f"""\
peers:
  static: {json.dumps([f"{h}:{port}" for h in hosts])}
  timeout: 500ms
defaults:
  interval: 1s
  timeout: 900ms
checks:
  db: {{type: postgres, dsn: '{dsn}', scope: shared, phase: {(BASE_PHASE + offset) % 1:.3f}s}}
"""
            members.append(Member(stack.enter_context(replica(tmp_path, host, port, config)), path))
        for member in members:
            poll(f"{member.replica.base}/health/ready", lambda status, _: status == 200, DECIDED_WITHIN)
        yield members


def a_local_fault_takes_out_only_the_cut_replica(members: list[Member], down: int = 0) -> None:
    """`members`: the replicas that are up; `down` more do not answer."""
    cut, *others = members
    with ReadinessWatch([m.replica for m in others]) as watch:
        cut.path.cut()
        poll(f"{cut.replica.base}/health/ready", lambda status, _: status == 503, DECIDED_WITHIN)
        fleet_entry = cut.replica.health()["checks"]["db"][0]["fleet"]  # type: ignore[index]
        assert fleet_entry["case"] == "local-fault"
        # Decided on the peers that counted so far: any one that passed during the failure here.
        peers = fleet_entry["peers"]
        assert (fleet_entry["failing"], fleet_entry["answering"]) == (1, len(peers["counted"]) + 1)
        assert sorted(peers["answered"]) == sorted(f"{m.replica.host}:{m.replica.port}" for m in others)
        assert len(peers["unreachable"]) == down
        cut.path.heal()
        poll(f"{cut.replica.base}/health", lambda status, body: status == 200 and _case_in(body) is None)
    for host, statuses in watch.seen.items():
        assert statuses and set(statuses) == {200}, f"{host} left the Service: {statuses}"


def a_shared_outage_keeps_every_replica_in(members: list[Member], postgres: PostgresServer) -> None:
    with ReadinessWatch([m.replica for m in members]) as watch:
        postgres.stop()  # the one database, for every replica at the same instant
        for member in members:
            wait_for_case(member.replica, "shared-outage")
        postgres.start()
        for member in members:
            poll(f"{member.replica.base}/health", lambda status, body: status == 200 and _case_in(body) is None)
    for host, statuses in watch.seen.items():
        assert statuses and set(statuses) == {200}, f"{host} left the Service: {statuses}"


BEHIND_AND_AHEAD = [
    (-0.1,),
    (-0.01,),
    (0.01,),
    (0.1,),
    (0.5,),
    (0.01, -0.01),
    (0.1, -0.1),
    (0.5, 0.01),
    (-0.1, -0.01, 0.01, 0.1),
    (0.5, -0.01, 0.5, 0.1),
]


@pytest.mark.parametrize("offsets", BEHIND_AND_AHEAD, ids=lambda offsets: "peers at " + ",".join(map(str, offsets)))
def test_the_fleet_judgment_whatever_the_phases(
    tmp_path: Path, own_postgres: PostgresServer, offsets: tuple[float, ...]
) -> None:
    with phased_fleet(tmp_path, own_postgres, offsets) as members:
        a_local_fault_takes_out_only_the_cut_replica(members)
        a_shared_outage_keeps_every_replica_in(members, own_postgres)
        if len(members) < 3:
            return  # two with one down is a replica alone: test_alone_follows_the_policy
        hung = members[-1].replica.process
        hung.send_signal(signal.SIGSTOP)  # one peer down: it takes requests and never answers
        try:
            a_local_fault_takes_out_only_the_cut_replica(members[:-1], down=1)
            a_shared_outage_keeps_every_replica_in(members[:-1], own_postgres)
        finally:
            hung.send_signal(signal.SIGCONT)
