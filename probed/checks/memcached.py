"""memcached: read `stats` (version, connections, evictions, hit ratio), optionally set, get and delete a key.

The text protocol is a few lines over one TCP connection, so the check speaks
it itself on asyncio streams: no driver to install, no pool that would keep a
connection between runs, and the connection is closed however a run ends.
Every request of a run is encoded once, when the check is created.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.options import Credentials, TlsOptions
from probed.checks.streams import connection, preview, read_exactly, read_line
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

# Stats observed on every run (when the server reports them); `levels:` may name any other numeric stat.
OBSERVED_STATS = ("curr_connections", "evictions", "curr_items", "bytes", "limit_maxbytes")
_KEY_UNSAFE = re.compile(rb"[\x00-\x20\x7f]")
_MAX_KEY = 250  # bytes: memcached's limit
_WRITE_TTL = 60  # seconds: a probe key left behind by a failed run expires by itself


class MemcachedOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: memcached's text-protocol login (`memcached -Y authfile`); the TLS
    options apply with `tls: true` (`memcached -Z`). `levels:` may name any numeric stat."""

    type: Literal["memcached"]
    host: str = Field("localhost", description="memcached host name or address")
    port: int = Field(11211, ge=1, le=65535, description="TCP port")
    tls: bool = Field(False, description="TLS from the first byte (memcached -Z)")
    server_name: str | None = Field(None, description="name sent (SNI) and verified with tls (default: host)")
    write_test: bool = Field(False, description="set, get and delete a probe key with a short TTL")
    key_prefix: str = Field("probed:", description="the probe key is this prefix and the check's name")

    username_required = True

    @model_validator(mode="after")
    def _login_complete(self) -> MemcachedOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password (or password_file) go together")
        return self


class MemcachedCheck(Check[MemcachedOptions]):
    options_model = MemcachedOptions
    component_type = "datastore"
    gauges = (
        Gauge("hit_ratio", "probed_memcached_hit_ratio", "get_hits / (get_hits + get_misses) since start."),
        Gauge("evictions", "probed_memcached_evictions", "Items evicted to free memory since the server started."),
        Gauge("curr_connections", "probed_memcached_connections", "Open connections on the memcached server."),
    )

    def __init__(self, name: str, options: MemcachedOptions) -> None:
        super().__init__(name, options)
        host = f"[{options.host}]" if ":" in options.host else options.host
        self.target = f"memcached://{host}:{options.port}"
        self._login = self._login_request()
        self._key = _probe_key(options.key_prefix + name)

    def prepare(self) -> None:
        # Built once: loading the system's CAs takes the loop for tens of ms.
        self._tls = self.options.ssl_context() if self.options.tls else None

    def _login_request(self) -> bytes | None:
        """The text protocol's login: a `set` whose data is `user password`."""
        if self.options.username is None:
            return None
        data = f"{self.options.username} {self.options.password_text()}".encode()
        return b"set probed 0 0 %d\r\n%s\r\n" % (len(data), data)

    async def run(self) -> Outcome:
        async with connection(self.options.host, self.options.port, self._tls, self.options.server_name) as (
            reader,
            writer,
        ):
            if self._login is not None:
                await self._log_in(reader, writer)
            start = time.perf_counter()
            token = os.urandom(8).hex().encode()  # this run's value: a stale one cannot pass
            writer.write(b"stats\r\n" + (self._write_requests(token) if self.options.write_test else b""))
            stats = await self._read_stats(reader)
            observed = self._observe(stats, time.perf_counter() - start)
            if self.options.write_test:
                await self._read_write_replies(reader, token)
            writer.write(b"quit\r\n")
        steps = "stats" + (", set/get/delete" if self.options.write_test else "")
        return Outcome(Status.PASS, f"{self.target}: memcached {stats.get('version', '?')}, {steps} ok", observed)

    async def _log_in(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Log in only when the server asks for it: a server without a login
        would store `set probed` and the password with it as a plain item."""
        assert self._login is not None
        writer.write(b"version\r\n")
        if not (await read_line(reader, self.target, "to version")).startswith(b"CLIENT_ERROR unauthenticated"):
            return  # no login required here
        writer.write(self._login)
        reply = await self._line(reader, "to the login")
        if reply != b"STORED":
            raise CheckFailed(f"{self.target}: login refused: {preview(reply)}", Reason.AUTH)

    def _write_requests(self, token: bytes) -> bytes:
        key = self._key
        return b"set %s 0 %d %d\r\n%s\r\nget %s\r\ndelete %s\r\n" % (key, _WRITE_TTL, len(token), token, key, key)

    async def _read_stats(self, reader: asyncio.StreamReader) -> dict[str, str]:
        stats: dict[str, str] = {}
        while True:
            line = await self._line(reader, "to stats")
            if line == b"END":
                return stats
            fields = line.split(b" ", 2)
            if len(fields) != 3 or fields[0] != b"STAT":
                raise self._unexpected(line, "to stats")
            stats[fields[1].decode(errors="replace")] = fields[2].decode(errors="replace")

    async def _read_write_replies(self, reader: asyncio.StreamReader, token: bytes) -> None:
        key = self._key.decode()
        stored = await self._line(reader, "to set")
        if stored != b"STORED":
            raise self._unexpected(stored, f"to set {key}")
        value = await self._line(reader, "to get")
        if value.startswith(b"VALUE "):
            size = value.rsplit(b" ", 1)[-1]
            data = await read_exactly(reader, int(size) + 2 if size.isdigit() else 0, self.target, "in get's value")
            if data[:-2] != token:
                raise CheckFailed(f"{self.target}: set {key} but read back something else", Reason.UNEXPECTED)
            value = await self._line(reader, "after get's value")
        elif value == b"END":
            raise CheckFailed(f"{self.target}: set {key} but get found nothing (evicted at once?)", Reason.UNEXPECTED)
        if value != b"END":
            raise self._unexpected(value, f"to get {key}")
        deleted = await self._line(reader, "to delete")
        if deleted != b"DELETED":
            raise self._unexpected(deleted, f"to delete {key}")

    async def _line(self, reader: asyncio.StreamReader, waiting_for: str) -> bytes:
        line = await read_line(reader, self.target, waiting_for)
        if line.startswith(b"CLIENT_ERROR unauthenticated"):
            raise CheckFailed(f"{self.target}: the server requires a login (username, password)", Reason.AUTH)
        return line

    def _unexpected(self, line: bytes, waiting_for: str) -> CheckFailed:
        return CheckFailed(f"{self.target}: answered {preview(line)} {waiting_for}", Reason.UNEXPECTED)

    def _observe(self, stats: dict[str, str], stats_time: float) -> Observed:
        observed: Observed = {"stats_time": Observation(round(stats_time, 6), "s")}
        if "version" in stats:
            observed["version"] = Observation(stats["version"])
        for name in (*OBSERVED_STATS, *self.options.levels):
            number = _number(stats.get(name))
            if number is not None and name not in observed:
                observed[name] = Observation(number, "bytes" if name in ("bytes", "limit_maxbytes") else "")
        hits, misses = _number(stats.get("get_hits")), _number(stats.get("get_misses"))
        if hits is not None and misses is not None and hits + misses > 0:
            observed["hit_ratio"] = Observation(round(hits / (hits + misses), 6), "ratio")
        return observed


def _probe_key(text: str) -> bytes:
    """A valid memcached key: no spaces or control characters, at most 250 bytes."""
    return _KEY_UNSAFE.sub(b"_", text.encode())[:_MAX_KEY]


def _number(value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        return None
