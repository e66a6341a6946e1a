"""postgres: connect with asyncpg, run a query, check the server's role and lag."""

from __future__ import annotations

import ssl
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels
from probed.checks.options import Credentials, DatabaseLevels
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url

if TYPE_CHECKING:
    import asyncpg

# Seconds the replica is behind: zero when it has replayed all it received.
LAG_QUERY = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END
"""


class PostgresOptions(CheckOptions, DatabaseLevels, Credentials):
    type: Literal["postgres"]
    optional_levels = frozenset({"replication_lag"})
    dsn: SecretStr | None = Field(None, description="postgres://user:password@host:port/database?sslmode=...")
    dsn_file: Path | None = None
    host: str | None = Field(None, description="host name, IP address or Unix socket directory (instead of dsn)")
    port: int = Field(5432, ge=1, le=65535)
    username: str | None = Field(
        None, validation_alias=AliasChoices("username", "user"), description="role to log in as (or user:, as libpq)"
    )
    database: str | None = None
    query: str = Field("SELECT 1", description="run on every check; its first column of the first row is observed")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    ca_file: Path | None = Field(None, description="CA bundle for verify-ca / verify-full (default: the system's)")
    expect: Literal["primary", "replica", "any"] = Field("any", description="the role the server must have")
    keep_connection: bool = Field(False, description="reuse one connection between runs (reconnect when it breaks)")

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> PostgresOptions:
        if (self.dsn is None) == (self.host is None):
            raise ValueError("give either dsn (or dsn_file) or host")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        return self.database_levels()


class PostgresCheck(Check[PostgresOptions]):
    options_model = PostgresOptions
    component_type = "datastore"
    requires = ("asyncpg",)
    gauges = (
        Gauge("value", "probed_postgres_query_value", "The number the check's query returned."),
        Gauge("replication_lag", "probed_postgres_replication_lag_seconds", "How far a replica's replay lags."),
    )

    def __init__(self, name: str, options: PostgresOptions) -> None:
        super().__init__(name, options)
        self.target = describe_target(options)
        self._kept: asyncpg.Connection | None = None

    def prepare(self) -> None:
        self._ssl = self._ssl_option()

    async def run(self) -> Outcome:
        connection = await self._connect()
        try:
            return await self._probe(connection)
        except CheckFailed:
            raise
        except BaseException:  # an error or the timeout's cancellation: the connection is suspect
            self._drop(connection)
            raise
        finally:
            if not self.options.keep_connection:
                await _close(connection)

    async def close(self) -> None:
        if self._kept is not None:
            await _close(self._kept)
            self._kept = None

    async def _connect(self) -> asyncpg.Connection:
        if self._kept is not None and not self._kept.is_closed():
            return self._kept
        import asyncpg

        opts = self.options
        connection: asyncpg.Connection = await asyncpg.connect(
            dsn=opts.dsn.get_secret_value() if opts.dsn else None,
            host=opts.host,
            port=opts.port if opts.host else None,
            user=opts.username,
            password=opts.password_text(),
            database=opts.database,
            ssl=self._ssl,
            timeout=opts.timeout,
            statement_cache_size=0,  # one query per run: nothing to gain from caching
            server_settings={"application_name": "probed"},
        )
        if opts.keep_connection:
            self._kept = connection
        return connection

    def _ssl_option(self) -> ssl.SSLContext | str | None:
        """What asyncpg is given for TLS: the sslmode, or for the verifying
        modes a context, built once and not at each connect."""
        opts = self.options
        if opts.sslmode not in ("verify-ca", "verify-full"):
            return opts.sslmode
        # Verify against ca_file or the system's CAs, like the http check;
        # libpq's default, ~/.postgresql/root.crt, rarely exists beside a sidecar.
        context = ssl.create_default_context(cafile=opts.ca_file)
        context.check_hostname = opts.sslmode == "verify-full"
        return context

    async def _probe(self, connection: asyncpg.Connection) -> Outcome:
        opts = self.options
        start = time.perf_counter()
        value = await connection.fetchval(opts.query)
        observed: Observed = {"query_time": Observation(round(time.perf_counter() - start, 6), "s")}
        number = _as_number(value)
        if number is not None:
            observed = {"value": Observation(number), **observed}
        version = connection.get_server_version()
        observed["server_version"] = Observation(_version_text(version))
        in_recovery = bool(await connection.fetchval("SELECT pg_is_in_recovery()"))
        observed["in_recovery"] = Observation(in_recovery)
        if in_recovery:
            observed["replication_lag"] = Observation(float(await connection.fetchval(LAG_QUERY)), "s")
        return self._judge(value, number, in_recovery, observed)

    def _judge(self, value: Any, number: float | None, in_recovery: bool, observed: Observed) -> Outcome:
        role = "replica" if in_recovery else "primary"
        if self.options.expect not in ("any", role):
            raise CheckFailed(
                f"{self.target} is a {role}, expected a {self.options.expect}", Reason.UNEXPECTED, observed
            )
        return Outcome(Status.PASS, f"{self.target}: {role}, query ok", observed)

    def _drop(self, connection: asyncpg.Connection) -> None:
        if connection is self._kept:
            self._kept = None
        connection.terminate()

    def describe_error(self, exc: Exception) -> CheckFailed:
        """asyncpg's exceptions -> a plain sentence and a reason."""
        import asyncpg

        target = self.target
        if isinstance(exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
            return CheckFailed(f"{target}: authentication failed: {exc}", Reason.AUTH)
        if isinstance(exc, asyncpg.InvalidCatalogNameError):
            return CheckFailed(f"{target}: {exc}", Reason.UNEXPECTED)
        if isinstance(exc, asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
            return CheckFailed(f"{target}: server refuses connections: {exc}")
        if isinstance(exc, asyncpg.PostgresError):
            return CheckFailed(f"{target}: query failed: {exc}")
        failure = super().describe_error(exc)
        if isinstance(exc, asyncpg.InterfaceError) and failure.reason is Reason.ERROR:
            return CheckFailed(f"{target}: connection lost: {exc}")
        return failure


def describe_target(opts: PostgresOptions) -> str:
    """postgres://user@host:port/database, never with a password."""
    if opts.dsn is not None:
        dsn = opts.dsn.get_secret_value()
        parts = urlsplit(dsn)
        return display_url(dsn.split("?", 1)[0]) if parts.hostname else "postgres (dsn)"
    user = f"{opts.username}@" if opts.username else ""
    return f"postgres://{user}{opts.host}:{opts.port}/{opts.database or ''}"


def _version_text(version: Any) -> str:
    """asyncpg's ServerVersion(15, 0, 20, ...) of a 15.20 server -> '15.20'.

    Since PostgreSQL 10 the version has two parts, which asyncpg puts into
    major and micro; before 10 it had three."""
    if version.major >= 10:
        return f"{version.major}.{version.micro}"
    return f"{version.major}.{version.minor}.{version.micro}"


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


async def _close(connection: asyncpg.Connection) -> None:
    if connection.is_closed():
        return
    try:
        await connection.close(timeout=1.0)
    except Exception:
        connection.terminate()
    except BaseException:
        connection.terminate()
        raise
