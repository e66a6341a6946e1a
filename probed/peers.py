"""Fleet-safe readiness: ask the other replicas whether a failing shared check
fails for them too.

An input beside the checks: a background task that, only while a check with
`scope: shared` is failing here, asks the peers' `GET /peers/checks/{name}`
for their latest runs of that check, and writes the conclusion into the
store (Store.set_fleet). No request path ever waits on a peer.

Which answers are evidence. This replica's failure window runs from the end
of the first failing run of the current streak to the end of the latest one
(wall clock). A peer counts
- as failing when its latest run failed: it sees the dependency failing now;
- as passing when one of its runs that ended inside the window passed: it
  reached the dependency after this replica had found it failing, and before
  this replica found it failing again. Ended after the window's start, so the
  first replica to notice a shared outage does not take the others' last
  passes from before the outage as "they reach it"; ended before the window's
  end, so the last replica to recover does not take their first passes after
  the outage for the same. The peers' runs fall one interval apart and the
  window is one interval long after the second failing run, so one of them
  ends inside it whatever the phases: a local fault is decided with the
  second failing run here, within 2 x interval + timeout + peers.timeout of
  the cut;
- otherwise not yet: it has not run since this replica failed (ask again
  after its next run), or passed only after this replica's latest failing run
  (ask again after this replica's next run).

Which peers are asked: every one up to `peers.sample`; beyond, a random
sample, whose peers that answer are kept for the whole failure and whose
others are replaced by peers not tried yet (the quorum is then taken over the
sample: docs/fleet.md says what that does to a partial outage).

The conclusion, for one failing shared check:
- no peer answered (unreachable, hanging, garbage): `alone`, and the
  `alone` policy says whether readiness fails;
- peers answered, none is evidence yet: `asking` (readiness stays up);
- more than `quorum` of the counted replicas, this one included, see it
  failing: `shared-outage` (readiness stays up);
- otherwise `local-fault` (readiness fails, as for a local check): a tie is a
  local fault, so in a fleet of two a replica whose own path is broken leaves.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from probed.config import PeersOptions, parse_listen
from probed.model import Fleet, FleetPeers, Status
from probed.report import published_status
from probed.store import CheckState, Store

if TYPE_CHECKING:
    import dns.asyncresolver

log = structlog.get_logger("probed.peers")

TICK = 0.05  # seconds between looks at the store: a new failing run here is asked about at once
MARGIN = 0.05  # seconds after a peer's expected next run before asking it again (its clock, its loop)
PATH = "/peers/checks/{name}"
MAX_ANSWER = 4096  # bytes: a peer's answer is a few fields; more is garbage
KEPT = 2  # intervals a peer's last answer stands in for one it did not give
RUNS_IN_ANSWER = 4  # a peer's latest runs: one that ended in the asker's window is still among them

Address = tuple[str, int]
Window = tuple[float, float]  # wall clock ends of the first and of the latest failing run here


@dataclass(frozen=True)
class PeerRun:
    failing: bool
    started: float  # wall clock
    ended: float


@dataclass(frozen=True)
class Answer:
    """A peer's latest runs of a check, oldest first (none: not run yet)."""

    runs: tuple[PeerRun, ...]
    interval: float | None = None  # the peer's interval for the check, when it says


class Evidence(enum.Enum):
    FAILING = "failing"
    PASSING = "passing"
    NOT_YET = "not yet"


def evidence(answer: Answer, window: Window) -> Evidence:
    """What one peer's answer says about this replica's failure (see the module's doc)."""
    if not answer.runs:
        return Evidence.NOT_YET
    if answer.runs[-1].failing:
        return Evidence.FAILING
    first, latest = window
    if any(not run.failing and first <= run.ended <= latest for run in answer.runs):
        return Evidence.PASSING
    return Evidence.NOT_YET


@dataclass(frozen=True)
class Verdict:
    fleet: Fleet
    gates: bool
    failing: int  # counted replicas seeing it failing, this one included
    answering: int  # counted replicas, this one included
    peers: FleetPeers


def judge(answers: Mapping[str, Answer | None], window: Window, quorum: float, alone_fails: bool) -> Verdict:
    """The fleet's verdict on a check failing here, from each peer's answer
    (None: it did not answer usefully), keyed by host:port."""
    counted: list[str] = []
    not_yet: list[str] = []
    unreachable: list[str] = []
    failing = 1
    for peer, answer in answers.items():
        found = None if answer is None else evidence(answer, window)
        if found is None:
            unreachable.append(peer)
        elif found is Evidence.NOT_YET:
            not_yet.append(peer)
        else:
            counted.append(peer)
            failing += found is Evidence.FAILING
    peers = FleetPeers(tuple(counted), tuple(not_yet), tuple(unreachable))
    answering = 1 + len(counted)
    if not counted and not not_yet:
        return Verdict(Fleet.ALONE, alone_fails, 1, 1, peers)
    if not counted:
        return Verdict(Fleet.ASKING, False, 1, 1, peers)
    if failing > quorum * answering:  # more than the quorum: a tie is this replica's own fault
        return Verdict(Fleet.SHARED_OUTAGE, False, failing, answering, peers)
    return Verdict(Fleet.LOCAL_FAULT, True, failing, answering, peers)


def peer_answer(state: CheckState, instance: str) -> dict[str, Any]:
    """What this replica answers a peer about a check: its latest runs."""
    last = state.last
    runs = list(state.history)[-RUNS_IN_ANSWER:]
    return {
        "check": state.name,
        "status": published_status(state.effective).value,
        "last": last.status.value if last else None,
        "time": last.started_at if last else None,
        "interval": state.interval,
        "runs": [[run.status.value, run.started_at, run.started_at + run.duration] for run in runs],
        "instance": instance,
    }


def parse_answer(body: bytes) -> tuple[str, Answer] | None:
    """A peer's JSON answer with the instance that gave it; None for garbage."""
    try:
        data = json.loads(body)
        instance, runs, interval = data["instance"], data["runs"], data.get("interval")
        if not isinstance(instance, str) or not isinstance(runs, list) or len(runs) > RUNS_IN_ANSWER:
            return None
        if interval is not None and not (_is_number(interval) and interval > 0):
            return None
        parsed = tuple(_peer_run(run) for run in runs)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return instance, Answer(parsed, None if interval is None else float(interval))


def _peer_run(run: object) -> PeerRun:
    if not isinstance(run, list) or len(run) != 3:
        raise ValueError("a run is [status, started, ended]")
    status, started, ended = run
    if status not in ("pass", "warn", "fail") or not (_is_number(started) and _is_number(ended)) or ended < started:
        raise ValueError("a run is [status, started, ended]")
    return PeerRun(status == "fail", float(started), float(ended))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class _Asked:
    window: Window  # the failure window the peers were last asked about all together
    answers: dict[Address, Answer | None]  # what the verdict rests on
    heard: dict[Address, tuple[float, Answer]]  # each peer's last answer in this failure, and when (monotonic)
    due: float  # time.monotonic() when the peers without evidence yet are asked again
    tried: set[Address] = field(default_factory=set)  # every peer asked in this failure


class Peers:
    """The background task that keeps the store's fleet verdicts current."""

    def __init__(
        self,
        options: PeersOptions,
        store: Callable[[], Store],
        own_port: int,
        instance: str,
        token: str | None = None,
    ) -> None:
        self.options = options
        self._store = store  # read each round: a reload replaces the store
        self.port = options.port or own_port
        self.instance = instance
        self._headers = {"User-Agent": "probed-peer"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._asked: dict[str, _Asked] = {}
        self._own: set[Address] = set()  # addresses that answered with this instance: not asked again
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests: Counter[str] = Counter()  # peer requests by outcome: answered, unreachable
        self._shared: tuple[Store | None, list[CheckState]] = (None, [])
        self._random = random.Random()  # which peers a failing run asks, beyond `sample` of them
        self._resolver = new_resolver(parse_listen(options.resolver), options.timeout) if options.resolver else None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.options.timeout)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except Exception:  # a bug here must not end fleet-safe readiness for good
                log.exception("peers_round_failed")
            await asyncio.sleep(TICK)

    async def round(self) -> None:
        """Ask about every failing shared check: all peers after each new
        failing run here, those without evidence yet again when they are due."""
        store = self._store()
        if self._shared[0] is not store:  # a reload: find the shared checks once per store
            self._shared = (store, [state for state in store.checks.values() if state.scope == "shared"])
        now = time.monotonic()
        anew, again = [], []
        for state in self._shared[1]:
            if state.fleet is None or state.failure_window is None:
                self._asked.pop(state.name, None)
                continue
            asked = self._asked.get(state.name)
            if asked is None or asked.window != state.failure_window:
                anew.append(state)
            elif asked.due <= now:
                again.append((state, asked))
        if not anew and not again:
            return
        addresses = await self.addresses() if anew else []
        fresh = [(state, self._sample(addresses, self._same_failure(state))) for state in anew]
        await asyncio.gather(
            *(self._ask_about(store, state, known, heard, tried) for state, (known, heard, tried) in fresh),
            *(self._ask_about(store, state, asked.answers, asked.heard, asked.tried) for state, asked in again),
        )

    def _same_failure(self, state: CheckState) -> _Asked | None:
        """What the peers were asked so far in this failure (None for a new one)."""
        asked, window = self._asked.get(state.name), state.failure_window
        return asked if asked is not None and window is not None and asked.window[0] == window[0] else None

    def _sample(
        self, addresses: list[Address], asked: _Asked | None
    ) -> tuple[dict[Address, Answer | None], dict[Address, tuple[float, Answer]], set[Address]]:
        """The peers to ask after a new failing run here, with the answers
        heard and the peers tried so far in this failure. Up to `sample`
        addresses: every one. Beyond: the peers asked before in this failure
        that answered, so the verdict rests on the same replicas run after
        run, and in place of the others (unreachable, gone) peers drawn at
        random, those not tried yet in this failure first."""
        heard, tried = (asked.heard, asked.tried) if asked is not None else ({}, set())
        size = self.options.sample
        if len(addresses) <= size:
            chosen = addresses
        else:
            listed = set(addresses)
            kept = [a for a, answer in (asked.answers.items() if asked else ()) if answer is not None and a in listed]
            kept = kept[:size]
            others = [a for a in addresses if a not in kept]
            self._random.shuffle(others)
            others.sort(key=lambda address: address in tried)  # stable: random among the untried, then the rest
            chosen = kept + others[: size - len(kept)]
        tried.update(chosen)
        return dict.fromkeys(chosen), heard, tried

    async def _ask_about(
        self,
        store: Store,
        state: CheckState,
        known: dict[Address, Answer | None],
        heard: dict[Address, tuple[float, Answer]],
        tried: set[Address],
    ) -> None:
        """Ask the peers in `known` that have no evidence yet (all, for a new
        failing run), and judge with every answer."""
        window = state.failure_window
        assert window is not None
        asking = [a for a, answer in known.items() if answer is None or evidence(answer, window) is Evidence.NOT_YET]
        fresh = dict(zip(asking, await asyncio.gather(*(self.ask(h, p, state.name) for h, p in asking))))
        answers = self._standing(state, known, fresh, heard)
        current = state.failure_window
        if state.effective is not Status.FAIL or current is None or current[0] != window[0]:
            return  # passing again, or a new failure: the next round judges afresh
        # A newer failing run ended meanwhile: judging against it is just as
        # sound (every answer's runs ended before it was given), and the next
        # round still asks every peer about that run.
        labelled = {_label(a): answer for a, answer in answers.items()}
        verdict = judge(labelled, current, self.options.quorum, self._alone)
        if verdict.fleet is not state.fleet:
            _log_verdict(state.name, verdict)
        store.set_fleet(state.name, verdict.fleet, verdict.gates, (verdict.failing, verdict.answering), verdict.peers)
        due = time.monotonic() + _ask_again_in(state, answers, current)
        self._asked[state.name] = _Asked(window, answers, heard, due, tried)

    def _standing(
        self,
        state: CheckState,
        known: dict[Address, Answer | None],
        fresh: dict[Address, Answer | None],
        heard: dict[Address, tuple[float, Answer]],
    ) -> dict[Address, Answer | None]:
        """The answers a verdict rests on: the fresh ones, the known ones of
        the peers not asked, and for a peer that missed an ask (slow, busy)
        its last answer in this failure, for KEPT intervals, so that one late
        reply does not turn a shared outage into `alone`."""
        now = time.monotonic()
        standing: dict[Address, Answer | None] = {}
        for address in known:
            if address in self._own:
                continue
            answer = fresh[address] if address in fresh else known[address]
            if address in fresh and answer is not None:
                heard[address] = (now, answer)
            elif answer is None and address in heard and now - heard[address][0] <= KEPT * state.interval:
                answer = heard[address][1]
            standing[address] = answer
        return standing

    @property
    def _alone(self) -> bool:
        return self.options.alone == "fail"

    async def ask(self, host: str, port: int, name: str) -> Answer | None:
        """One peer's answer; None when it is unreachable, slow, or answers garbage."""
        assert self._session is not None
        parsed = await self._ask(f"http://{_host_in_url(host)}:{port}{PATH.format(name=name)}")
        self.requests["unreachable" if parsed is None else "answered"] += 1
        if parsed is None:
            return None
        instance, answer = parsed
        if instance == self.instance:  # the peer name lists this replica too: it counts once, as itself
            self._own.add((host, port))
            return None
        return answer

    async def _ask(self, url: str) -> tuple[str, Answer] | None:
        assert self._session is not None
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    return None
                body = await response.content.read(MAX_ANSWER + 1)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None
        if len(body) > MAX_ANSWER:
            return None
        return parse_answer(body)

    async def addresses(self) -> list[Address]:
        """Every replica's (host, port): the static list, or each A/AAAA record of the name."""
        if self.options.static:
            return [a for a in map(parse_listen, self.options.static) if a not in self._own]
        assert self.options.dns is not None
        try:
            if self._resolver is not None:
                hosts = await resolve(self.options.dns, self._resolver)
            else:
                hosts = await _system_resolve(self.options.dns, self.options.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("peers_unresolved", name=self.options.dns, error=str(exc) or type(exc).__name__)
            return []
        return [(host, self.port) for host in hosts if (host, self.port) not in self._own]


def _log_verdict(name: str, verdict: Verdict) -> None:
    """A new case for a failing shared check: which peers it rests on."""
    log.info(
        "check_fleet_changed",
        check=name,
        case=verdict.fleet.value,
        gates_readiness=verdict.gates,
        failing=verdict.failing,
        answering=verdict.answering,
        counted=list(verdict.peers.counted),
        not_yet=list(verdict.peers.not_yet),
        unreachable=list(verdict.peers.unreachable),
    )


def _ask_again_in(state: CheckState, answers: Mapping[Address, Answer | None], window: Window) -> float:
    """Seconds until the peers without evidence yet may have some: just after
    the soonest one's next run. Those that passed after this replica's latest
    failing run wait for this replica's next run (a new window asks everyone
    anew); with none to wait for, an interval. Never sooner than a quarter
    interval, so a peer that is late costs at most four requests an interval."""
    now, soonest = time.time(), None
    for answer in answers.values():
        if answer is None or evidence(answer, window) is not Evidence.NOT_YET:
            continue
        if answer.runs and answer.runs[-1].ended > window[1]:
            continue
        expected = _next_run_ends(answer, state.interval, now)
        soonest = expected if soonest is None else min(soonest, expected)
    if soonest is None:
        return state.interval
    return min(state.interval, max(state.interval / 4, soonest + MARGIN - now))


def _next_run_ends(answer: Answer, interval: float, now: float) -> float:
    """When a peer's next run should have ended (wall clock): one of its
    intervals after its latest run, lasting as long; a peer not run yet: now."""
    if not answer.runs:
        return now
    latest = answer.runs[-1]
    return latest.started + (answer.interval or interval) + (latest.ended - latest.started)


def _label(address: Address) -> str:
    host, port = address
    return f"{_host_in_url(host)}:{port}"


def new_instance_id() -> str:
    """Tells this replica's own answer apart when the peer name lists it too."""
    return secrets.token_hex(8)


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _system_resolve(name: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout)
    return sorted({str(info[4][0]) for info in infos})


# -- a DNS server given as ip:port: dnspython, UDP and TCP when the answer is truncated ------


def new_resolver(server: tuple[str, int], timeout: float) -> dns.asyncresolver.Resolver:
    """A resolver that asks one server, once per query within `timeout`.
    dnspython retries a truncated UDP answer over TCP, so a headless Service
    of hundreds of addresses resolves completely."""
    import dns.asyncbackend
    import dns.asyncresolver

    dns.asyncbackend.get_backend("asyncio")  # imports dnspython's asyncio side now, not on the loop's first ask
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [server[0]]
    resolver.port = server[1]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


async def resolve(name: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    """All A and AAAA addresses of `name` (none when it does not exist);
    TimeoutError or ValueError when the server does not answer usefully."""
    import dns.exception

    found = await asyncio.gather(
        _addresses(name, "A", resolver), _addresses(name, "AAAA", resolver), return_exceptions=True
    )
    lists = [addresses for addresses in found if isinstance(addresses, list)]
    if not lists:  # neither query answered (one that did, even with no address, is an answer)
        exc = found[0]
        if isinstance(exc, dns.exception.Timeout):
            raise TimeoutError(f"no answer from the DNS server within {resolver.lifetime:g} s")
        if isinstance(exc, dns.exception.DNSException):
            raise ValueError(str(exc) or type(exc).__name__)
        assert isinstance(exc, BaseException)
        raise exc
    return sorted({address for addresses in lists for address in addresses})


async def _addresses(name: str, rdtype: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    import dns.resolver

    try:
        answer = await resolver.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:  # the name has no replicas
        return []
    return [str(ipaddress.ip_address(record.address)) for record in answer.rrset or ()]
