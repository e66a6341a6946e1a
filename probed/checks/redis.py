"""redis: connect, PING, read INFO; optionally check the role, levels and a write."""

from __future__ import annotations

import functools
import ssl
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.options import Credentials, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

_AUTH_REPLIES = ("NOAUTH", "WRONGPASS", "invalid password", "invalid username-password")


class RedisOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: instead of the URL's (an ACL user, or AUTH with a password alone);
    the TLS options apply to rediss:// URLs. `levels:` may name any numeric INFO field."""

    type: Literal["redis"]
    url: str = Field("redis://localhost:6379/0", description="redis://, rediss:// (TLS) or unix:// URL")
    db: int | None = Field(None, ge=0, description="database number (instead of the URL's)")
    expect: Literal["primary", "master", "replica", "any"] = Field(
        "any", description="the role the server must have (master is another name for primary)"
    )
    write_test: bool = Field(False, description="SET, GET and DEL a probe key with a short TTL")
    key_prefix: str = Field("probed:", description="the probe key is this prefix and the check's name")

    @field_validator("url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        return value


class RedisCheck(Check[RedisOptions]):
    options_model = RedisOptions
    component_type = "datastore"
    requires = ("redis.asyncio",)
    gauges = (Gauge("used_memory_ratio", "probed_redis_used_memory_ratio", "used_memory / maxmemory (0 to 1)."),)

    def __init__(self, name: str, options: RedisOptions) -> None:
        super().__init__(name, options)
        self.target = display_url(options.url)

    def prepare(self) -> None:
        # One client for the check's life: made here, its TLS context too
        # (redis-py would build one on the loop for each new connection object).
        self._client = self._new_client()

    async def run(self) -> Outcome:
        try:
            observed = await self._probe(self._client)
        finally:
            # Closes this run's connection; the client and its pool stay for the next run.
            await self._client.aclose()
        return self._judge(observed)

    def _new_client(self) -> aioredis.Redis:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.driver_info import DriverInfo

        opts = self.options
        url = opts.url
        extra: dict[str, Any] = {}
        if url.startswith("rediss://"):
            # TLS the way every type's TLS options read (ca_file instead of the system's CAs),
            # in a context built now; redis:// keeps redis-py from choosing its own class.
            url = "redis://" + url.removeprefix("rediss://")
            extra = {"connection_class": prepared_tls_connection(), "prepared_context": opts.ssl_context()}
        if opts.username:
            extra["username"] = opts.username
        if opts.password:
            extra["password"] = opts.password_text()
        if opts.db is not None:
            extra["db"] = opts.db
        return aioredis.Redis.from_url(
            url,
            socket_connect_timeout=opts.timeout,
            socket_timeout=opts.timeout,
            # The client retries with backoff by default (a refused port then
            # takes seconds); a health check reports, its thresholds decide.
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
            single_connection_client=True,
            decode_responses=True,
            client_name="probed",  # visible in CLIENT LIST
            # Skip CLIENT SETINFO: redis-py reads its own package metadata for it
            # on every connection, which was most of a run's CPU.
            driver_info=DriverInfo(name=None, lib_version=None),
            **extra,
        )

    async def _probe(self, client: aioredis.Redis) -> Observed:
        start = time.perf_counter()
        await client.ping()
        observed: Observed = {"ping_time": Observation(round(time.perf_counter() - start, 6), "s")}
        info: dict[str, Any] = await client.info()
        observed["role"] = Observation(_role(info))
        for field in ("used_memory", "connected_clients", "maxmemory"):
            if field in info:
                observed[field] = Observation(info[field], "bytes" if "memory" in field else "")
        if info.get("maxmemory"):
            observed["used_memory_ratio"] = Observation(round(info["used_memory"] / info["maxmemory"], 6), "ratio")
        for field in self.options.levels:
            if field not in observed and isinstance(info.get(field), int | float):
                observed[field] = Observation(info[field])
        if self.options.write_test:
            await self._write_and_read(client)
        return observed

    async def _write_and_read(self, client: aioredis.Redis) -> None:
        key = f"{self.options.key_prefix}{self.name}"
        token = uuid.uuid4().hex
        await client.set(key, token, ex=60)
        if await client.get(key) != token:
            raise CheckFailed(f"{self.target}: wrote {key} but read back something else", Reason.UNEXPECTED)
        await client.delete(key)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """redis-py's exceptions -> a plain sentence and a reason."""
        import redis.exceptions as redis_errors

        target = self.target
        if isinstance(exc, redis_errors.AuthenticationError | redis_errors.AuthenticationWrongNumberOfArgsError):
            return CheckFailed(f"{target}: authentication failed: {exc}", Reason.AUTH)
        if isinstance(exc, redis_errors.ReadOnlyError):
            return CheckFailed(f"{target}: write refused, the server is read-only (a replica?)", Reason.UNEXPECTED)
        if isinstance(exc, redis_errors.ResponseError):
            if any(reply in str(exc) for reply in _AUTH_REPLIES):
                return CheckFailed(f"{target}: authentication failed: {exc}", Reason.AUTH)
            return CheckFailed(f"{target}: server said: {exc}", Reason.UNEXPECTED)
        if isinstance(exc, redis_errors.TimeoutError):
            return CheckFailed(f"{target}: timed out", Reason.TIMEOUT)
        return super().describe_error(exc)

    def _judge(self, observed: Observed) -> Outcome:
        role = str(observed["role"].value)
        expected = "primary" if self.options.expect == "master" else self.options.expect
        if expected not in ("any", role):
            raise CheckFailed(f"{self.target} is a {role}, expected a {expected}", Reason.UNEXPECTED, observed)
        return Outcome(Status.PASS, f"{self.target}: {role}, PONG", observed)


@functools.cache
def prepared_tls_connection() -> type[Any]:
    """redis-py's TLS connection, with the SSL context the check prepared."""
    from redis.asyncio.connection import SSLConnection

    class PreparedTlsConnection(SSLConnection):
        def __init__(self, *, prepared_context: ssl.SSLContext, **options: Any) -> None:
            super().__init__(**options)
            self.ssl_context.context = prepared_context  # what RedisSSLContext.get() returns once built

    return PreparedTlsConnection


def _role(info: dict[str, Any]) -> str:
    """primary or replica, the words postgres and mysql checks use too."""
    role = str(info.get("role", "unknown"))
    return {"master": "primary", "slave": "replica"}.get(role, role)
