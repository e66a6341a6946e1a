"""tcp: connect to a port, optionally over TLS, optionally send bytes and expect an answer.

For services no other type speaks: a message broker's port, a banner (FTP),
a line protocol (`PING` -> `+PONG`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import Field, field_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.errors import network_failure
from probed.checks.options import TlsOptions
from probed.checks.threads import OneAtATime
from probed.fields import ByteSize, Regex, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

# getaddrinfo blocks, and a dead DNS server makes it block for seconds: each
# check resolves in a thread of this pool, one lookup at a time, so a check
# holds at most one hung thread. Threads start only when needed; the pool is
# large enough that checks whose names hang leave threads for the others.
# (The udp and icmp checks resolve through the same pool.)
RESOLVER = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probed-tcp-resolve")
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}
FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
# The check reports its own timeouts (which phase, what it read) a little
# before the runner's central timeout would cut it short with less to say.
_OWN_DEADLINE = 0.9


class TcpOptions(CheckOptions, TlsOptions):
    """The TLS options apply with `tls: true`."""

    type: Literal["tcp"]
    host: str = Field(description="host name or address (IPv4 or IPv6) to connect to")
    port: int = Field(ge=1, le=65535, description="TCP port")
    addresses: Literal["first", "all"] = Field(
        "first", description="first: the first address the name resolves to; all: every address must accept"
    )
    ip_family: Literal["any", "ipv4", "ipv6"] = Field("any", description="resolve to these addresses only")
    tls: bool = Field(False, description="TLS handshake after connecting (verified as tls_verify says)")
    server_name: str | None = Field(None, description="name sent (SNI) and verified with tls (default: host)")
    send: str | None = Field(
        None, description=r"bytes to send after connecting; \r \n \t \0 \\ \xHH escapes; never shown"
    )
    expect: Regex | None = Field(None, description="regular expression the answer must match (re.MULTILINE)")
    max_read_bytes: ByteSize = Field(64 * 1024, ge=1, description="read at most this much while looking for expect")

    @field_validator("send")
    @classmethod
    def _escapes(cls, value: str | None) -> str | None:
        if value is not None:
            payload(value)
        return value


def endpoint(scheme: str, host: str, port: int) -> str:
    """tcp://host:port, an IPv6 address in brackets."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def resolver(target: str) -> OneAtATime[list[str]]:
    """A check's own lookups in the shared pool: one at a time."""
    return OneAtATime[list[str]](RESOLVER, f"{target}: the previous lookup is still waiting")


async def addresses(
    lookups: OneAtATime[list[str]], host: str, port: int, ip_family: str, kind: int = socket.SOCK_STREAM
) -> list[str]:
    """The addresses of host, in the resolver's order, each once."""
    try:
        ipaddress.ip_address(host)
        return [host]  # a literal: no lookup, no thread
    except ValueError:
        return await lookups.call(_lookup, host, port, FAMILIES[ip_family], kind)


def _lookup(host: str, port: int, family: int, kind: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, family, kind)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def payload_secrets(sent: bytes) -> set[str]:
    """What a sent payload may hold (a login such as `AUTH ...`): its text and each
    of its lines, masked because a server echoing it back must not show it."""
    text = sent.decode(errors="replace")
    return {line.strip() for line in [text, *text.splitlines()] if line.strip()}


def payload(text: str) -> bytes:
    r"""`send` as bytes: the text in UTF-8 with \r \n \t \0 \\ and \xHH decoded.
    YAML's double quotes decode escapes themselves; this covers plain and
    single-quoted values."""
    out, last = bytearray(), 0
    for match in _ESCAPE.finditer(text):
        out += text[last : match.start()].encode()
        code = match[1]
        if code.startswith("x") and len(code) == 3:
            out.append(int(code[1:], 16))
        elif code in _ESCAPES:
            out += _ESCAPES[code]
        else:
            raise ValueError(f"unknown escape \\{code} (use \\r \\n \\t \\0 \\\\ or \\xHH)")
        last = match.end()
    return bytes(out + text[last:].encode())


class TcpCheck(Check[TcpOptions]):
    options_model = TcpOptions
    component_type = "component"
    gauges = (Gauge("connect_time", "probed_tcp_connect_seconds", "Time to establish the TCP connection."),)

    def __init__(self, name: str, options: TcpOptions) -> None:
        super().__init__(name, options)
        self.target = endpoint("tcp", options.host, options.port)
        self._resolver = resolver(self.target)
        self._send = payload(options.send) if options.send is not None else None
        self._expect = re.compile(options.expect, re.MULTILINE) if options.expect is not None else None

    def secrets(self) -> set[str]:
        # `send` may carry a login (AUTH ...): a server echoing it back must not show it.
        return super().secrets() | (payload_secrets(self._send) if self._send else set())

    def prepare(self) -> None:
        if self.options.tls:
            self._tls_context = self.options.ssl_context()

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.timeout * _OWN_DEADLINE
        resolved = await self._resolve()
        chosen = resolved[:1] if self.options.addresses == "first" else resolved
        connect_times: dict[str, float] = {}  # filled as connections succeed, failed runs included
        outcomes = await self._reach_each(chosen, deadline, connect_times)
        observed: Observed = {}
        if connect_times:  # the slowest address: the one a client may get
            observed["connect_time"] = Observation(round(max(connect_times.values()), 6), "s")
        observed["addresses"] = Observation(len(resolved))
        versions = [o for o in outcomes if isinstance(o, str)]
        if versions:
            observed["tls_version"] = Observation(versions[0])
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            raise self._failure(failed, len(chosen), observed)
        return Outcome(Status.PASS, self._said(chosen), observed)

    async def _reach_each(
        self, chosen: list[str], deadline: float, connect_times: dict[str, float]
    ) -> list[str | BaseException | None]:
        """What reaching each address gave: its TLS version, or what it raised."""
        if len(chosen) == 1:  # the usual case, without gather's tasks: 5 % of a run's CPU at a pod's pace
            try:
                return [await self._reach(chosen[0], deadline, connect_times)]
            except Exception as exc:
                return [exc]
        reaching = (self._reach(ip, deadline, connect_times) for ip in chosen)
        return await asyncio.gather(*reaching, return_exceptions=True)

    async def _resolve(self) -> list[str]:
        return await addresses(self._resolver, self.options.host, self.options.port, self.options.ip_family)

    async def _reach(self, ip: str, deadline: float, connect_times: dict[str, float]) -> str | None:
        """Connect to one address and talk as configured; the TLS version, if any."""
        where = self.target if ip == self.options.host else f"{self.target} ({ip})"
        phase = "connect"
        start = time.perf_counter()
        writer: asyncio.StreamWriter | None = None
        clean = False
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(ip, self.options.port, limit=self.options.max_read_bytes)
                connect_times[ip] = time.perf_counter() - start
                tls_version = None
                if self.options.tls:
                    phase = "TLS handshake"
                    await writer.start_tls(
                        self._tls_context, server_hostname=self.options.server_name or self.options.host
                    )
                    ssl_object = writer.get_extra_info("ssl_object")
                    tls_version = ssl_object.version() if ssl_object else None
                if self._send is not None:
                    phase = "send"
                    writer.write(self._send)
                    await writer.drain()
            if self._expect is not None:
                await self._await_answer(reader, deadline, where)
            clean = True
            return tls_version
        except TimeoutError:
            raise CheckFailed(f"{where}: {phase} timed out", Reason.TIMEOUT) from None
        except CheckFailed:
            raise
        except Exception as exc:  # refused, reset, TLS: the address belongs in the sentence
            raise network_failure(exc, where) or self.describe_error(exc) from None
        finally:
            if writer is not None:
                # A clean plain close says goodbye (FIN). Anything else must not
                # wait on a peer that may never answer: a failed exchange, or
                # TLS, whose close waits up to 30 s for the peer's close_notify.
                if clean and not self.options.tls:
                    writer.close()
                else:
                    writer.transport.abort()

    async def _await_answer(self, reader: asyncio.StreamReader, deadline: float, where: str) -> None:
        """Read until `expect` matches, the peer closes, max_read_bytes or the deadline."""
        assert self._expect is not None
        limit, received, ending = self.options.max_read_bytes, b"", "closed the connection"
        try:
            async with asyncio.timeout_at(deadline):
                while len(received) < limit:
                    chunk = await reader.read(limit - len(received))
                    if not chunk:
                        break
                    received += chunk
                    if self._expect.search(received.decode(errors="replace")):
                        return
                else:
                    ending = f"sent max_read_bytes ({len(received)} bytes)"
        except TimeoutError:
            waited = format_duration(round(self.options.timeout * _OWN_DEADLINE, 3))
            if not received:
                raise CheckFailed(f"{where}: connected, but nothing received within {waited}", Reason.TIMEOUT) from None
            ending = f"said nothing more within {waited}"
        said = f"answered {preview(received)}" if received else "answered nothing"
        message = f"{where}: {said} and {ending}, no match for /{self._expect.pattern}/"
        raise CheckFailed(message, Reason.UNEXPECTED)

    def _failure(self, failed: list[BaseException], tried: int, observed: Observed) -> CheckFailed:
        """One failure for the run: the address's own sentence, or with
        addresses: all, every failed address's sentence in one."""
        failures = [f for f in failed if isinstance(f, CheckFailed)]
        for other in failed:
            if not isinstance(other, CheckFailed):  # cancellation: not a failure of the target
                raise other
        if tried == 1:
            return CheckFailed(failures[0].message, failures[0].reason, observed)
        sentences = "; ".join(f.message for f in failures)
        return CheckFailed(f"{len(failures)} of {tried} addresses failed: {sentences}", failures[0].reason, observed)

    def _said(self, chosen: list[str]) -> str:
        steps = ["connected"]
        if self.options.tls:
            steps.append("TLS ok")
        if self._send is not None:
            steps.append("sent")
        if self._expect is not None:
            steps.append(f"answer matches /{self._expect.pattern}/")
        where = self.target if len(chosen) == 1 else f"{self.target} ({len(chosen)} addresses)"
        return f"{where}: {', '.join(steps)}"


def preview(received: bytes) -> str:
    """The first bytes of an answer, quoted, control characters escaped."""
    text = received[:80].decode(errors="replace")
    shown = repr(text)
    return shown + ("..." if len(received) > 80 else "")
