"""Fleet-safe readiness: ask the other replicas whether a failing shared check
fails for them too.

An input beside the checks: a background task that, only while a check with
`scope: shared` is failing here, asks each peer's `GET /peers/checks/{name}`
what its last run of that check said, and writes the conclusion into the
store (Store.set_fleet). No request path ever waits on a peer.

The conclusion, for one failing shared check:
- no peer answered (unreachable, hanging, garbage): `alone`, and the
  `alone` policy says whether readiness fails;
- at least `quorum` of the replicas that answered, this one included, see it
  failing: `shared-outage` (readiness stays up);
- otherwise `local-fault` (readiness fails, as for a local check);
- peers answered, but none ran the check since this replica saw it fail and
  none sees it failing: `asking` (no evidence yet; ask again after their
  next run).

A peer's passing answer counts only when it passed while this replica was
failing: its run began after this replica's failure began (else the first
replica to notice an outage would call it local) and before this replica's
latest failing run (else the last replica to recover from an outage would).
A failing answer always counts: the peer saw it fail.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import structlog

from probed.config import PeersOptions, parse_listen
from probed.model import Fleet, Status
from probed.store import CheckState, Store

log = structlog.get_logger("probed.peers")

TICK = 0.25  # seconds between looks at the store for failing shared checks
MIN_RETRY = 0.5  # seconds: the soonest an `asking` check asks again
PATH = "/peers/checks/{name}"
MAX_ANSWER = 4096  # bytes: a peer's answer is a few fields; more is garbage


@dataclass(frozen=True)
class Answer:
    """What one peer's last run of a check said (None fields: the peer did not answer usefully)."""

    failing: bool
    started_at: float  # wall clock start of the peer's last run


@dataclass
class _Asked:
    due: float  # time.monotonic() of the next round
    latest: float  # the latest local failing run it judged: a newer one is new evidence


@dataclass(frozen=True)
class Verdict:
    fleet: Fleet
    gates: bool
    failing: int  # replicas seeing it failing, this one included
    answering: int  # replicas whose answer counted, this one included
    reachable: int  # peers that answered at all


def judge(answers: list[Answer | None], streak: tuple[float, float], quorum: float, alone_fails: bool) -> Verdict:
    """The fleet's verdict on a check failing here; `streak`: the wall clock
    start of the first and of the latest failing run of this failure."""
    reachable = [a for a in answers if a is not None]
    if not reachable:
        return Verdict(Fleet.ALONE, alone_fails, 1, 1, 0)
    first, latest = streak
    counted = [a for a in reachable if a.failing or first <= a.started_at <= latest]
    if not counted:
        return Verdict(Fleet.ASKING, False, 1, 1, len(reachable))
    failing = 1 + sum(a.failing for a in counted)
    answering = 1 + len(counted)
    if failing >= quorum * answering:
        return Verdict(Fleet.SHARED_OUTAGE, False, failing, answering, len(reachable))
    return Verdict(Fleet.LOCAL_FAULT, True, failing, answering, len(reachable))


def parse_answer(body: bytes) -> tuple[str, Answer] | None:
    """A peer's JSON answer with the instance that gave it; None for garbage."""
    try:
        data = json.loads(body)
        instance, last, started_at = data["instance"], data["last"], data["time"]
        if not isinstance(instance, str) or last not in ("pass", "warn", "fail"):
            return None
        if not isinstance(started_at, (int, float)):
            return None
        return instance, Answer(failing=last == "fail", started_at=float(started_at))
    except (ValueError, KeyError, TypeError):
        return None


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
        self._own: set[tuple[str, int]] = set()  # addresses that answered with this instance: not asked again
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.requests: Counter[str] = Counter()  # peer requests by outcome: answered, unreachable
        self._shared: tuple[Store | None, list[CheckState]] = (None, [])

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
        """Ask about every failing shared check whose answers are due."""
        store = self._store()
        if self._shared[0] is not store:  # a reload: find the shared checks once per store
            self._shared = (store, [state for state in store.checks.values() if state.scope == "shared"])
        now = time.monotonic()
        due = []
        for state in self._shared[1]:
            if state.fleet is None or state.failing_since is None or state.last_failure_at is None:
                self._asked.pop(state.name, None)
                continue
            asked = self._asked.get(state.name)
            if asked is None or asked.due <= now or asked.latest != state.last_failure_at:
                due.append(state)
        if not due:
            return
        addresses = await self.addresses()
        await asyncio.gather(*(self._ask_about(store, state, addresses) for state in due))

    async def _ask_about(self, store: Store, state: CheckState, addresses: list[tuple[str, int]]) -> None:
        failing_since, latest = state.failing_since, state.last_failure_at
        assert failing_since is not None and latest is not None
        answers = await asyncio.gather(*(self.ask(host, port, state.name) for host, port in addresses))
        verdict = judge(answers, (failing_since, latest), self.options.quorum, self.options.alone == "fail")
        if state.effective is not Status.FAIL or state.failing_since != failing_since:
            return  # it changed while we asked: the next round judges afresh
        store.set_fleet(state.name, verdict.fleet, verdict.gates, (verdict.failing, verdict.answering))
        self._asked[state.name] = _Asked(time.monotonic() + self._retry_after(state, verdict), latest)

    def _retry_after(self, state: CheckState, verdict: Verdict) -> float:
        """Decided: ask again in an interval. Asking: soon, the peers run again within one."""
        if verdict.fleet is Fleet.ASKING:
            return max(MIN_RETRY, state.interval / 4)
        return state.interval

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

    async def addresses(self) -> list[tuple[str, int]]:
        """Every replica's (host, port): the static list, or each A/AAAA record of the name."""
        if self.options.static:
            return [a for a in map(parse_listen, self.options.static) if a not in self._own]
        assert self.options.dns is not None
        try:
            if self.options.resolver:
                server = parse_listen(self.options.resolver)
                hosts = await resolve(self.options.dns, server, self.options.timeout)
            else:
                hosts = await _system_resolve(self.options.dns, self.options.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("peers_unresolved", name=self.options.dns, error=str(exc) or type(exc).__name__)
            return []
        return [(host, self.port) for host in hosts if (host, self.port) not in self._own]


def new_instance_id() -> str:
    """Tells this replica's own answer apart when the peer name lists it too."""
    return secrets.token_hex(8)


def _host_in_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _system_resolve(name: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout)
    return sorted({str(info[4][0]) for info in infos})


# -- a minimal DNS client: A and AAAA over UDP, for a resolver given as host:port ---------


async def resolve(name: str, server: tuple[str, int], timeout: float) -> list[str]:
    """All A and AAAA addresses of `name`, asked of one DNS server (RFC 1035)."""
    answers = await asyncio.gather(
        _query(name, 1, server, timeout), _query(name, 28, server, timeout), return_exceptions=True
    )
    found = [address for answer in answers if isinstance(answer, list) for address in answer]
    if not found:
        errors = [a for a in answers if isinstance(a, BaseException)]
        if errors and all(isinstance(e, (OSError, TimeoutError, ValueError)) for e in errors):
            raise errors[0]
    return sorted(set(found))


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, ident: int) -> None:
        self.ident = ident
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == self.ident and not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _query(name: str, qtype: int, server: tuple[str, int], timeout: float) -> list[str]:
    ident = secrets.randbelow(65536)
    question = b"".join(bytes([len(label)]) + label.encode("idna") for label in name.rstrip(".").split("."))
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + b"\0" + struct.pack("!HH", qtype, 1)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: _Datagram(ident), remote_addr=server)
    try:
        transport.sendto(packet)
        reply = await asyncio.wait_for(protocol.reply, timeout)
    finally:
        transport.close()
    try:
        return _addresses_in(reply, qtype)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"malformed DNS reply: {exc}") from None


def _addresses_in(reply: bytes, qtype: int) -> list[str]:
    _, flags, questions, count, _, _ = struct.unpack("!HHHHHH", reply[:12])
    rcode = flags & 0xF
    if rcode == 3:  # NXDOMAIN: the name has no replicas
        return []
    if rcode:
        raise ValueError(f"DNS server answered rcode {rcode}")
    offset = 12
    for _ in range(questions):
        offset = _skip_name(reply, offset) + 4
    found = []
    for _ in range(count):
        offset = _skip_name(reply, offset)
        rtype, _, _, length = struct.unpack("!HHIH", reply[offset : offset + 10])
        data = reply[offset + 10 : offset + 10 + length]
        offset += 10 + length
        if rtype == qtype == 1 and length == 4:
            found.append(str(ipaddress.IPv4Address(data)))
        elif rtype == qtype == 28 and length == 16:
            found.append(str(ipaddress.IPv6Address(data)))
    return found


def _skip_name(message: bytes, offset: int) -> int:
    while True:
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a compression pointer ends the name
            return offset + 2
        offset += length + 1
