"""mysql: connect to MySQL or MariaDB with asyncmy, run a query, check the role and replica lag."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels
from probed.checks.options import Credentials, DatabaseLevels, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url

if TYPE_CHECKING:
    import ssl

    from asyncmy.connection import Connection
    from asyncmy.cursors import Cursor

# Server error numbers (mysqld_error.h) the check explains in its own words.
ACCESS_DENIED = (1045, 1698)  # wrong password, no password for a socket-auth user
UNKNOWN_DATABASE = 1049
DATABASE_DENIED = 1044  # what a user without global grants hears for a missing database too
TOO_MANY_CONNECTIONS = (1040, 1203)  # server-wide, per user
NO_PRIVILEGE = (1227,)  # SHOW REPLICA STATUS needs REPLICATION CLIENT / SLAVE MONITOR
SYNTAX_ERROR = 1064
CONNECTION_LOST = (2006, 2013)  # client-side: server gone away, lost during query
DSN_PARAMETERS = {"socket", "tls", "ssl"}


class MysqlOptions(CheckOptions, DatabaseLevels, Credentials, TlsOptions):
    """warn_above & co. judge the query's first number; the TLS options apply with tls: true."""

    type: Literal["mysql"]
    optional_levels = frozenset({"replication_lag"})
    dsn: SecretStr | None = Field(
        None, description="mysql://user:password@host:port/database?tls=true (or ?socket=/path/mysqld.sock)"
    )
    dsn_file: Path | None = Field(None, description="file holding the dsn (a mounted secret)")
    host: str | None = Field(None, description="host name or IP address (instead of dsn)")
    port: int = Field(3306, ge=1, le=65535, description="TCP port with host")
    socket: Path | None = Field(None, description="Unix socket of the server (instead of host)")
    username: str | None = Field(
        None, validation_alias=AliasChoices("username", "user"), description="user to log in as (or user:)"
    )
    database: str | None = Field(None, description="database to connect to (none: the server's default)")
    tls: bool = Field(False, description="encrypt the connection (TCP only); tls_verify & co. apply")
    query: str = Field("SELECT 1", description="run on every check; the first column of the first row is observed")
    expect: Literal["primary", "replica", "any"] = Field(
        "any", description="the role the server must have: replica = SHOW REPLICA STATUS has a row"
    )
    keep_connection: bool = Field(False, description="reuse one connection between runs (reconnect when it breaks)")

    @model_validator(mode="after")
    def _one_way_to_connect(self) -> MysqlOptions:
        ways = [self.dsn is not None, self.host is not None, self.socket is not None]
        if sum(ways) != 1:
            raise ValueError("give one of dsn (or dsn_file), host or socket")
        if self.dsn is not None:
            _check_dsn(self.dsn.get_secret_value())
        if self.socket is not None and self.tls:
            raise ValueError("tls: not over a Unix socket (the server does not offer it there)")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        return self.database_levels()

    def connect_arguments(self) -> dict[str, Any]:
        """asyncmy.connect's keywords from the dsn or the fields (the fields' credentials win)."""
        args: dict[str, Any] = {"host": self.host, "port": self.port, "database": self.database}
        if self.socket is not None:
            args["unix_socket"] = str(self.socket)
        user, password = self.username, self.password_text()
        if self.dsn is not None:
            parts = urlsplit(self.dsn.get_secret_value())
            query = dict(parse_qsl(parts.query))
            args = {
                "host": parts.hostname,
                "port": parts.port or 3306,
                "database": unquote(parts.path.lstrip("/")) or self.database,
            }
            if "socket" in query:
                args = {"unix_socket": query["socket"], "database": args["database"]}
            user = user or (unquote(parts.username) if parts.username else None)
            password = password if password is not None else (unquote(parts.password) if parts.password else None)
        return {**args, "user": user, "password": password or ""}

    def wants_tls(self) -> bool:
        """tls: true, or ?tls=true (or ssl=) in the dsn."""
        if self.tls or self.dsn is None:
            return self.tls
        query = dict(parse_qsl(urlsplit(self.dsn.get_secret_value()).query))
        return _truthy(query.get("tls", query.get("ssl", "false")))


class MysqlCheck(Check[MysqlOptions]):
    options_model = MysqlOptions
    component_type = "datastore"
    requires = ("asyncmy",)
    extra = "mysql"
    gauges = (
        Gauge("value", "probed_mysql_query_value", "The number the check's query returned."),
        Gauge("replication_lag", "probed_mysql_replication_lag_seconds", "Seconds a replica is behind its source."),
    )

    def __init__(self, name: str, options: MysqlOptions) -> None:
        super().__init__(name, options)
        self.target = describe_target(options)
        self._kept: Connection | None = None
        self._status_statement = "SHOW REPLICA STATUS"  # SHOW SLAVE STATUS before MySQL 8.0.22 / MariaDB 10.5.1

    def prepare(self) -> None:
        self._ssl: ssl.SSLContext | None = self.options.ssl_context() if self.options.wants_tls() else None

    async def run(self) -> Outcome:
        # The kept connection is taken, not shared: a run the timeout abandoned
        # may still hold it when the next one starts.
        connection, self._kept = self._kept, None
        if connection is None or not connection.connected:
            connection = await self._connect()
        try:
            outcome = await self._probe(connection)
        except CheckFailed:
            await self._release(connection)
            raise
        except BaseException:  # an error or the timeout's cancellation: the connection is suspect
            connection.close()
            raise
        await self._release(connection)
        return outcome

    async def close(self) -> None:
        if self._kept is not None:
            await _close(self._kept)
            self._kept = None

    async def _connect(self) -> Connection:
        import asyncmy

        connection: Connection = await asyncmy.connect(
            **self.options.connect_arguments(),
            ssl=self._ssl,
            connect_timeout=self.options.timeout,
            read_timeout=self.options.timeout,  # a server that stops answering mid-query frees the socket
            autocommit=True,  # a kept connection must not read one old snapshot forever
            program_name="probed",
        )
        return connection

    async def _release(self, connection: Connection) -> None:
        """Keep the connection for the next run, or close it."""
        if self.options.keep_connection and self._kept is None:
            self._kept = connection
        else:
            await _close(connection)

    async def _probe(self, connection: Connection) -> Outcome:
        start = time.perf_counter()
        async with connection.cursor() as cursor:
            await cursor.execute(self.options.query)
            row = await cursor.fetchone()
            observed: Observed = {"query_time": Observation(round(time.perf_counter() - start, 6), "s")}
            number = _as_number(row[0] if row else None)
            if number is not None:
                observed = {"value": Observation(number), **observed}
            observed["server_version"] = Observation(connection.get_server_info())
            replica_rows = await self._replica_status(cursor)
        if replica_rows is None:
            return self._judge(None, observed)
        if replica_rows:
            observed["replication_lag"] = Observation(self._lag(replica_rows, observed), "s")
        return self._judge(bool(replica_rows), observed)

    async def _replica_status(self, cursor: Cursor) -> list[dict[str, Any]] | None:
        """The rows of SHOW REPLICA STATUS (none on a primary); None when this
        user may not ask and nothing depends on the answer."""
        import asyncmy.errors

        try:
            await self._show_status(cursor)
        except asyncmy.errors.MySQLError as exc:
            code = exc.args[0] if exc.args else None
            needed = self.options.expect != "any" or "replication_lag" in self.levels
            if code in NO_PRIVILEGE and not needed:
                return None
            if code in NO_PRIVILEGE:
                raise CheckFailed(
                    f"{self.target}: the role cannot be told: {exc.args[1]} "
                    "(grant REPLICATION CLIENT, or SLAVE MONITOR on MariaDB)",
                    Reason.AUTH,
                ) from exc
            raise
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row)) for row in await cursor.fetchall()]

    async def _show_status(self, cursor: Cursor) -> None:
        import asyncmy.errors

        try:
            await cursor.execute(self._status_statement)
        except asyncmy.errors.ProgrammingError as exc:
            if exc.args[0] != SYNTAX_ERROR or self._status_statement == "SHOW SLAVE STATUS":
                raise
            self._status_statement = "SHOW SLAVE STATUS"
            await cursor.execute(self._status_statement)

    def _lag(self, rows: list[dict[str, Any]], observed: Observed) -> float:
        """The largest lag of all replication channels; a stopped one fails the check."""
        lags = []
        for row in rows:
            lag = _field(row, "Seconds_Behind_Source", "Seconds_Behind_Master")
            if lag is None:
                raise CheckFailed(f"{self.target}: {_stopped(row)}", Reason.UNEXPECTED, observed)
            lags.append(float(lag))
        return max(lags)

    def _judge(self, is_replica: bool | None, observed: Observed) -> Outcome:
        if is_replica is None:
            return Outcome(Status.PASS, f"{self.target}: query ok", observed)
        role = "replica" if is_replica else "primary"
        observed["role"] = Observation(role)
        if self.options.expect not in ("any", role):
            raise CheckFailed(
                f"{self.target} is a {role}, expected a {self.options.expect}", Reason.UNEXPECTED, observed
            )
        return Outcome(Status.PASS, f"{self.target}: {role}, query ok", observed)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """asyncmy's exceptions (errno, message) -> a plain sentence and a reason."""
        import asyncmy.errors

        target = self.target
        if not isinstance(exc, asyncmy.errors.MySQLError) or len(exc.args) < 2:
            return super().describe_error(exc)
        code, message = exc.args[0], str(exc.args[1])
        if code in ACCESS_DENIED:
            return CheckFailed(f"{target}: authentication failed: {message}", Reason.AUTH)
        if code == UNKNOWN_DATABASE:
            return CheckFailed(f"{target}: {message}", Reason.UNEXPECTED)
        if code == DATABASE_DENIED:  # the login worked: the database is missing or not granted
            return CheckFailed(f"{target}: {message} (missing, or no grant on it)", Reason.UNEXPECTED)
        if code in TOO_MANY_CONNECTIONS:
            return CheckFailed(f"{target}: server refuses connections: {message}")
        if code in CONNECTION_LOST:
            return super().describe_error(exc) if exc.__cause__ else CheckFailed(f"{target}: connection lost")
        if code < 2000:  # the server answered with an error
            return CheckFailed(f"{target}: query failed: {message}")
        return super().describe_error(exc)  # client-side: refused, timed out, ...


def describe_target(opts: MysqlOptions) -> str:
    """mysql://user@host:port/database, never with a password."""
    if opts.dsn is not None:
        return display_url(opts.dsn.get_secret_value().split("?", 1)[0])
    user = f"{opts.username}@" if opts.username else ""
    where = f"{opts.host}:{opts.port}" if opts.host else f"localhost:{opts.socket}"
    return f"mysql://{user}{where}/{opts.database or ''}"


def _check_dsn(dsn: str) -> None:
    """Errors that never repeat the dsn: it holds a password."""
    try:
        parts = urlsplit(dsn)
        _ = parts.port
    except ValueError:
        raise ValueError("dsn: not a valid URL (mysql://user:password@host:port/database)") from None
    if parts.scheme not in ("mysql", "mariadb"):
        raise ValueError("dsn: must start with mysql:// or mariadb://")
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - DSN_PARAMETERS)
    if unknown:
        raise ValueError(f"dsn: unknown parameter {unknown[0]} (known: socket, tls)")
    if not parts.hostname and "socket" not in query:
        raise ValueError("dsn: needs a host, or ?socket=/path")


def _truthy(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on", "required")


def _field(row: dict[str, Any], *names: str) -> Any:
    """The first of several column names a server version uses (Source since MySQL 8.0.22)."""
    return next((row[name] for name in names if name in row), None)


def _stopped(row: dict[str, Any]) -> str:
    io = _field(row, "Replica_IO_Running", "Slave_IO_Running")
    sql = _field(row, "Replica_SQL_Running", "Slave_SQL_Running")
    error = _field(row, "Last_IO_Error") or _field(row, "Last_SQL_Error") or ""
    said = f"replication is stopped (IO thread: {io}, SQL thread: {sql})"
    return f"{said}: {error}" if error else said


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return float(value)


async def _close(connection: Connection) -> None:
    """QUIT politely, within a second; close the socket whatever happens."""
    import asyncio

    try:
        await asyncio.wait_for(connection.ensure_closed(), 1.0)
    except Exception:
        connection.close()
    except BaseException:
        connection.close()
        raise
