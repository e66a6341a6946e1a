"""icmp: echo requests to a host (ping), judged on packet loss and round-trip time.

Linux lets a process send echoes without privileges through ICMP datagram
sockets when its group is in `net.ipv4.ping_group_range` (for IPv6 too;
Kubernetes counts it a safe sysctl); otherwise a raw socket, which needs root
or CAP_NET_RAW. Which of them this process may open is found out when the
check is created, as are the echo requests' bytes; when it may open neither,
every run fails saying what to set. Each run has a socket of its own,
connected to the target so that only its packets (and its ICMP errors) reach
it, and closes it however the run ends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.errors import network_failure
from probed.checks.tcp import FAMILIES, addresses, resolver
from probed.fields import Duration, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

# The check reports its own timeout (how many echoes went unanswered) a little
# before the runner's central timeout would cut it short with less to say.
_OWN_DEADLINE = 0.9
PAYLOAD = b"probed echo request ".ljust(56, b".")  # 56 bytes, as ping sends
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
# Raw sockets see every echo reply the host receives: a check's own identifier
# tells its replies from other checks' and other programs'. (A datagram socket
# gets one from the kernel, which delivers it only its own replies.)
_IDENTIFIERS = itertools.count(random.randrange(0x10000))


@dataclass(frozen=True)
class Protocol:
    """What differs between ICMP for IPv4 and ICMPv6."""

    proto: int
    request: int  # echo request type
    reply: int  # echo reply type
    header_in_raw: bool  # whether a raw socket's read starts with the IP header


PROTOCOLS: dict[int, Protocol] = {
    socket.AF_INET: Protocol(socket.IPPROTO_ICMP, 8, 0, header_in_raw=True),
    socket.AF_INET6: Protocol(socket.IPPROTO_ICMPV6, 128, 129, header_in_raw=False),
}
KINDS = {"datagram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}


class IcmpOptions(CheckOptions):
    type: Literal["icmp"]
    host: str = Field(description="host name or address (IPv4 or IPv6) to send echo requests to")
    ip_family: Literal["any", "ipv4", "ipv6"] = Field("any", description="resolve to these addresses only")
    count: int = Field(3, ge=1, le=100, description="echo requests sent each run")
    echo_interval: Duration = Field(0.2, ge=0.001, description="pause between two echo requests of a run")

    @model_validator(mode="after")
    def _echoes_fit(self) -> IcmpOptions:
        # The last echo needs time for its reply: the echoes are all sent in the first half of the timeout.
        sending = (self.count - 1) * self.echo_interval
        if sending > self.timeout / 2:
            raise ValueError(
                f"{self.count} echoes {format_duration(self.echo_interval)} apart take "
                f"{format_duration(round(sending, 3))}, more than half the timeout "
                f"({format_duration(self.timeout)}): lower count or echo_interval, or raise timeout"
            )
        return self


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) an IPv4 raw socket must fill in itself."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(kind: int, identifier: int, sequence: int) -> bytes:
    header = struct.pack("!BBHHH", kind, 0, 0, identifier, sequence)
    total = checksum(header + PAYLOAD)
    return struct.pack("!BBHHH", kind, 0, total, identifier, sequence) + PAYLOAD


def usable_kind(family: int) -> str | OSError | None:
    """The socket this process may send echoes from: datagram, raw, neither
    (None), or the error of a host without the family (IPv6 turned off)."""
    for name, kind in KINDS.items():
        try:
            socket.socket(family, kind, PROTOCOLS[family].proto).close()
        except PermissionError:
            continue
        except OSError as exc:
            return exc
        return name
    return None


def cannot_send(where: str, family: int) -> str:
    """The sentence for a process that may open neither socket: what to set."""
    try:
        with open(PING_GROUP_RANGE) as text:
            current = f'is "{" ".join(text.read().split())}"'
    except OSError:
        current = "cannot be read"
    ip = "IPv6" if family == socket.AF_INET6 else "IPv4"
    return (
        f"{where}: cannot send ICMP ({ip}) echo requests here: no datagram socket, as group {os.getgid()} "
        f"is outside net.ipv4.ping_group_range (which {current}), and no raw socket without root or "
        f"CAP_NET_RAW; set the sysctl net.ipv4.ping_group_range to a range that holds {os.getgid()} "
        f'(e.g. "0 2147483647"; Kubernetes: a safe sysctl in the pod\'s securityContext) or give probed CAP_NET_RAW'
    )


def literal_family(host: str) -> list[int]:
    """The one family of an address, both for a name."""
    try:
        return [socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET]
    except ValueError:
        return [socket.AF_INET, socket.AF_INET6]


class IcmpCheck(Check[IcmpOptions]):
    options_model = IcmpOptions
    acyclic = True
    component_type = "system"
    gauges = (
        Gauge(
            "packet_loss_ratio", "probed_icmp_packet_loss_ratio", "Share of the last run's echoes unanswered (0 to 1)."
        ),
        Gauge("rtt_min", "probed_icmp_rtt_min_seconds", "Shortest echo round trip of the last run."),
        Gauge("rtt_avg", "probed_icmp_rtt_avg_seconds", "Mean echo round trip of the last run."),
        Gauge("rtt_max", "probed_icmp_rtt_max_seconds", "Longest echo round trip of the last run."),
    )

    def __init__(self, name: str, options: IcmpOptions) -> None:
        super().__init__(name, options)
        host = options.host
        self.target = f"icmp://[{host}]" if ":" in host else f"icmp://{host}"
        self._resolver = resolver(self.target)
        self._identifier = next(_IDENTIFIERS) & 0xFFFF
        families = [FAMILIES[options.ip_family]] if options.ip_family != "any" else literal_family(host)
        # Sockets tried and echoes built now, not in a timed run.
        self._kinds = {family: usable_kind(family) for family in families}
        self._requests = {
            family: [echo_request(PROTOCOLS[family].request, self._identifier, seq) for seq in range(options.count)]
            for family in families
        }

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout * _OWN_DEADLINE
        ip = (await addresses(self._resolver, self.options.host, 0, self.options.ip_family, socket.SOCK_DGRAM))[0]
        where = self.target if ip == self.options.host else f"{self.target} ({ip})"
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        kind = self._kinds.get(family)
        if kind is None:
            raise CheckFailed(cannot_send(where, family))
        if isinstance(kind, OSError):
            raise CheckFailed(f"{where}: cannot open an ICMP socket: {kind.strerror}")
        round_trips = await self._echoes(ip, family, kind, where, deadline)
        observed = self._observed(round_trips, kind)
        count, answered = self.options.count, len(round_trips)
        if not answered:
            waited = format_duration(round(self.options.timeout * _OWN_DEADLINE, 3))
            raise CheckFailed(f"{where}: no reply to {count} echo requests within {waited}", Reason.TIMEOUT, observed)
        rtt = "/".join(format_duration(float(observed[f"rtt_{k}"].value)) for k in ("min", "avg", "max"))
        loss = f"{observed['packet_loss_percent'].value:g}% loss"
        return Outcome(Status.PASS, f"{where}: {answered}/{count} replies, {loss}, rtt min/avg/max {rtt}", observed)

    async def _echoes(self, ip: str, family: int, kind: str, where: str, deadline: float) -> list[float]:
        """Send the run's echo requests `echo_interval` apart on a socket of the
        run's own; the round trips of those answered by the deadline."""
        sock = socket.socket(family, KINDS[kind], PROTOCOLS[family].proto)
        try:
            sock.setblocking(False)
            sock.connect((ip, 0))  # sends nothing: only this host's packets and errors reach the socket
            return await self._exchange(sock, family, kind, deadline)
        except OSError as exc:  # unreachable (an ICMP error or no route): the address belongs in the sentence
            raise network_failure(exc, where) or self.describe_error(exc) from None
        finally:
            sock.close()

    async def _exchange(self, sock: socket.socket, family: int, kind: str, deadline: float) -> list[float]:
        loop = asyncio.get_running_loop()
        requests = self._requests[family]
        sent: dict[int, float] = {}
        answered: dict[int, float] = {}
        next_send = loop.time()
        # One task sends and receives: a receive waits at most until the next echo is due.
        while len(answered) < len(requests) and loop.time() < deadline:
            if len(sent) < len(requests) and loop.time() >= next_send:
                sequence = len(sent)
                sent[sequence] = time.perf_counter()
                await loop.sock_sendall(sock, requests[sequence])
                next_send += self.options.echo_interval
            try:
                async with asyncio.timeout_at(min(next_send, deadline) if len(sent) < len(requests) else deadline):
                    packet = await loop.sock_recv(sock, 65535)
            except TimeoutError:
                continue
            replied = self._sequence(packet, family, kind)
            if replied in sent and replied not in answered:
                answered[replied] = time.perf_counter() - sent[replied]
        return list(answered.values())

    def _sequence(self, packet: bytes, family: int, kind: str) -> int | None:
        """The sequence number of one of this run's echo replies; None for
        anything else a raw socket sees (the host's own echo requests on loopback)."""
        protocol = PROTOCOLS[family]
        if kind == "raw" and protocol.header_in_raw:
            packet = packet[(packet[0] & 0x0F) * 4 :] if packet else packet
        if len(packet) < 8 or packet[0] != protocol.reply or packet[8:] != PAYLOAD:
            return None
        identifier, sequence = struct.unpack("!HH", packet[4:8])
        if kind == "raw" and identifier != self._identifier:
            return None  # a datagram socket's identifier is the kernel's, and only its replies arrive
        return int(sequence)

    def _observed(self, round_trips: list[float], kind: str) -> Observed:
        count = self.options.count
        lost = count - len(round_trips)
        observed: Observed = {
            "packet_loss_percent": Observation(round(100 * lost / count, 2), "%"),
            "packet_loss_ratio": Observation(round(lost / count, 4), "ratio"),
            "replies": Observation(len(round_trips)),
        }
        if round_trips:
            observed["rtt_min"] = Observation(round(min(round_trips), 6), "s")
            observed["rtt_avg"] = Observation(round(sum(round_trips) / len(round_trips), 6), "s")
            observed["rtt_max"] = Observation(round(max(round_trips), 6), "s")
        observed["socket"] = Observation(kind)
        return observed
