"""udp: send one datagram and judge the first datagram that comes back.

For request/response services over UDP (a game server's status query, a
syslog relay that acknowledges, a protocol of one's own). The run's socket is
connected to the target, so only the target's datagrams reach it and the
kernel reports an ICMP port unreachable as a refused receive: that is
`refused`, no reply within the timeout is `timeout`. The payload's bytes and
the compiled pattern are built when the check is created; each run has a
socket of its own and closes it however the run ends.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from typing import Literal

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.errors import network_failure
from probed.checks.streams import preview
from probed.checks.tcp import addresses, endpoint, payload, payload_secrets, resolver
from probed.fields import Regex, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

MAX_DATAGRAM = 65535  # a reply is one datagram: read it whole
# The check reports its own timeout (what it sent, how long it waited) a
# little before the runner's central timeout would cut it short with less to say.
_OWN_DEADLINE = 0.9


class UdpOptions(CheckOptions):
    type: Literal["udp"]
    host: str = Field(description="host name or address (IPv4 or IPv6) to send to")
    port: int = Field(ge=1, le=65535, description="UDP port")
    ip_family: Literal["any", "ipv4", "ipv6"] = Field("any", description="resolve to these addresses only")
    send: str | None = Field(None, description=r"text datagram to send; \r \n \t \0 \\ \xHH escapes; never shown")
    send_hex: str | None = Field(None, description="datagram to send as hex digits (spaces allowed); never shown")
    expect_contains: str | None = Field(None, description="the reply must contain this text")
    expect_regex: Regex | None = Field(None, description="the reply must match this regular expression")
    expect_hex_prefix: str | None = Field(None, description="the reply must start with these bytes (hex digits)")

    @field_validator("send")
    @classmethod
    def _escapes(cls, value: str | None) -> str | None:
        if value is not None:
            payload(value)
        return value

    @field_validator("send_hex", "expect_hex_prefix")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is not None:
            hex_bytes(value)
        return value

    @model_validator(mode="after")
    def _one_payload(self) -> UdpOptions:
        if (self.send is None) == (self.send_hex is None):
            raise ValueError("give the datagram to send: send or send_hex (one of them)")
        return self


def hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("must be pairs of hex digits (spaces allowed between bytes)") from None


class UdpCheck(Check[UdpOptions]):
    options_model = UdpOptions
    acyclic = True
    component_type = "component"
    gauges = (Gauge("reply_time", "probed_udp_reply_seconds", "Time from sending the datagram to its reply."),)

    def __init__(self, name: str, options: UdpOptions) -> None:
        super().__init__(name, options)
        self.target = endpoint("udp", options.host, options.port)
        self._resolver = resolver(self.target)
        self._payload = payload(options.send) if options.send is not None else hex_bytes(options.send_hex or "")
        self._regex = re.compile(options.expect_regex) if options.expect_regex is not None else None
        prefix = options.expect_hex_prefix
        self._prefix = hex_bytes(prefix) if prefix is not None else None

    def secrets(self) -> set[str]:
        # The datagram may carry a login: a server echoing it back must not show it.
        return super().secrets() | payload_secrets(self._payload)

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout * _OWN_DEADLINE
        ip = (await addresses(self._resolver, self.options.host, self.options.port, self.options.ip_family))[0]
        where = self.target if ip == self.options.host else f"{self.target} ({ip})"
        start = time.perf_counter()
        reply = await self._exchange(ip, where, deadline)
        observed: Observed = {
            "reply_time": Observation(round(time.perf_counter() - start, 6), "s"),
            "reply_bytes": Observation(len(reply), "B"),
        }
        self._judge(reply, where, observed)
        said = "reply ok" if self._expects else "replied"
        return Outcome(Status.PASS, f"{where}: sent {len(self._payload)} bytes, {said} ({len(reply)} bytes)", observed)

    async def _exchange(self, ip: str, where: str, deadline: float) -> bytes:
        """Send the datagram and receive the first one that comes back."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((ip, self.options.port))  # sends nothing: the peer whose datagrams (and errors) we get
            async with asyncio.timeout_at(deadline):
                await loop.sock_sendall(sock, self._payload)
                return await loop.sock_recv(sock, MAX_DATAGRAM)
        except TimeoutError:
            waited = format_duration(round(self.options.timeout * _OWN_DEADLINE, 3))
            message = f"{where}: sent {len(self._payload)} bytes, no reply within {waited}"
            raise CheckFailed(message, Reason.TIMEOUT) from None
        except ConnectionRefusedError:
            raise CheckFailed(f"{where}: port unreachable (ICMP): nothing listens there", Reason.REFUSED) from None
        except OSError as exc:  # no route, network down: the address belongs in the sentence
            raise network_failure(exc, where) or self.describe_error(exc) from None
        finally:
            sock.close()

    @property
    def _expects(self) -> bool:
        return self.options.expect_contains is not None or self._regex is not None or self._prefix is not None

    def _judge(self, reply: bytes, where: str, observed: Observed) -> None:
        contains, regex, prefix = self.options.expect_contains, self._regex, self._prefix
        if prefix is not None and not reply.startswith(prefix):
            shown = reply[:32].hex() + ("..." if len(reply) > 32 else "")
            message = f"{where}: replied 0x{shown}, which does not start with 0x{prefix.hex()}"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
        text = reply.decode(errors="replace")
        if contains is not None and contains not in text:
            raise CheckFailed(
                f"{where}: replied {preview(reply)}, which lacks {contains!r}", Reason.UNEXPECTED, observed
            )
        if regex is not None and not regex.search(text):
            message = f"{where}: replied {preview(reply)}, no match for /{regex.pattern}/"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
