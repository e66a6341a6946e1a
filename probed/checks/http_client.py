"""What the http and websocket types share: aiohttp's client with a fresh
connection each run, the phases of that run from aiohttp's trace hooks, and
the aiohttp failures both meet on the way to an answer.

Nothing here imports aiohttp at module level: the types load it when a check
of theirs is created. The TraceConfig and the connector class are built once,
on first use, and serve every check of both types.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from probed.checks.base import Gauge
from probed.checks.errors import described_failure
from probed.model import CheckFailed, Observation, Observed, Reason

if TYPE_CHECKING:
    import aiohttp

# Where a connection's time goes, in order, up to the answer's first byte;
# each is observed as `<phase>_time`.
CONNECTION_PHASES = ("dns", "connect", "tls", "first_byte")
# Only a host name has a lookup, only TLS a handshake: levels on them are
# not judged on a run without them.
OPTIONAL_PHASES = frozenset({"dns_time", "tls_time"})


def phase_gauges(name: str, help: str, phases: tuple[str, ...]) -> tuple[Gauge, ...]:
    """One gauge family, a series per phase, labelled `phase`."""
    return tuple(Gauge(f"{phase}_time", name, help, (("phase", phase),)) for phase in phases)


class Phases:
    """Where one run's time went, from aiohttp's trace hooks: each hook ends
    the phase running since the previous one. Summed over redirects (each a
    new connection), as blackbox_exporter sums them."""

    __slots__ = ("mark", "spent", "start")

    def __init__(self) -> None:
        self.start = self.mark = time.perf_counter()
        self.spent: dict[str, float] = {}

    def lap(self, phase: str, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        self.spent[phase] = self.spent.get(phase, 0.0) + now - self.mark
        self.mark = now

    def since_start(self) -> Observation:
        return Observation(round(time.perf_counter() - self.start, 6), "s")

    def observed(self) -> Observed:
        """The phases this run went through (no dns for an address, no tls without TLS)."""
        return {f"{p}_time": Observation(round(self.spent[p], 6), "s") for p in CONNECTION_PHASES if p in self.spent}


class FreshClient:
    """One check's aiohttp session. Each request opens a new connection after
    a fresh lookup (a health check must see what a new client would, not a
    warm pooled socket) and is traced into the Phases of its run."""

    __slots__ = ("_connector_class", "_options", "_session", "connector")

    def __init__(self, connector_class: Any, **connector_options: Any) -> None:
        self._connector_class = connector_class
        self._options = connector_options
        self._session: aiohttp.ClientSession | None = None
        self.connector: Any = None  # a connector_class, once the first run built the session

    def session(self, phases: Phases) -> aiohttp.ClientSession:
        """The session, built on the first run (aiohttp binds it to the running loop)."""
        import aiohttp

        if self._session is None:
            self.connector = self._connector_class(force_close=True, use_dns_cache=False, **self._options)
            timeout = aiohttp.ClientTimeout(total=None)  # the runner enforces the check's timeout
            self._session = aiohttp.ClientSession(
                connector=self.connector, timeout=timeout, trace_configs=[phase_tracing()]
            )
        self.connector.begin(phases)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@functools.cache
def traced_connector() -> Any:
    """aiohttp's TCPConnector, holding what one run needs from its connection:
    the run's Phases (ws_connect passes no trace_request_ctx, so the hooks
    find them here), when TCP stood under TLS, and the transport, which a run
    that ends badly aborts. Built on first use: aiohttp loads with the first check."""
    import asyncio

    import aiohttp
    from aiohttp.client_proto import ResponseHandler

    class TracedConnector(aiohttp.TCPConnector):
        phases: Phases | None = None
        tcp_up: float | None = None  # when the TCP connection under a TLS one stood: its handshake began
        transport: asyncio.Transport | None = None
        _tls_next = False

        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            # asyncio asks for the protocol once the TCP connection stands and
            # before the TLS handshake starts: the one moment no trace hook marks.
            # A private attribute: an aiohttp without it folds TLS into connect.
            factory = getattr(self, "_factory", None)
            if callable(factory):
                self._factory = functools.partial(self._stamped, factory)

        def begin(self, phases: Phases) -> None:
            """A new run: its Phases, and nothing of the last run's connection."""
            self.phases, self.tcp_up, self.transport = phases, None, None

        def _stamped(self, factory: Callable[[], ResponseHandler]) -> ResponseHandler:
            if self._tls_next:
                self.tcp_up = time.perf_counter()
            return factory()

        async def connect(self, req: aiohttp.ClientRequest, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:
            self.tcp_up, self._tls_next = None, req.is_ssl()
            connection = await super().connect(req, traces, timeout)
            self.transport = connection.transport
            return connection

        def abort(self) -> None:
            if self.transport is not None:
                self.transport.abort()
                self.transport = None

        async def close(self, *, abort_ssl: bool = False) -> None:
            try:
                await super().close(abort_ssl=abort_ssl)
            finally:
                # partial(self._stamped) holds the connector in a cycle: without
                # it a retired check is freed at once, not by the collector.
                self._factory = None  # type: ignore[assignment]

    return TracedConnector


@functools.cache
def phase_tracing() -> aiohttp.TraceConfig:
    """One TraceConfig for every http and websocket check: the hooks keep
    nothing themselves, they lap the Phases the session's connector holds."""
    import aiohttp

    def phases_of(session: aiohttp.ClientSession) -> Phases:
        return session.connector.phases  # type: ignore[union-attr, no-any-return]  # a TracedConnector

    async def started(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
        phases_of(session).mark = time.perf_counter()

    async def resolved(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
        phases_of(session).lap("dns")

    async def connected(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
        phases, tcp_up = phases_of(session), session.connector.tcp_up  # type: ignore[union-attr]
        if tcp_up is not None:  # TLS: connect until the TCP connection stood, the handshake after it
            phases.lap("connect", tcp_up)
            phases.lap("tls")
        else:
            phases.lap("connect")

    async def answered(session: aiohttp.ClientSession, context: SimpleNamespace, params: object) -> None:
        phases_of(session).lap("first_byte")  # the answer's status line and headers are in

    tracing = aiohttp.TraceConfig()
    tracing.on_connection_create_start.append(started)
    tracing.on_dns_resolvehost_start.append(started)
    tracing.on_dns_resolvehost_end.append(resolved)
    tracing.on_connection_create_end.append(connected)
    tracing.on_request_redirect.append(answered)
    tracing.on_request_end.append(answered)
    tracing.freeze()
    return tracing


def client_failure(exc: Exception, target: str) -> CheckFailed | None:
    """aiohttp's failures to connect, as a sentence and a reason; None for
    anything else (the caller's own mapping and then the base's)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CheckFailed(f"{target}: certificate rejected: {exc.certificate_error}", Reason.TLS)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: its OSError says which
        return described_failure(exc.os_error, target)
    return None


def basic_authorization(username: str, password: str) -> str:
    """`Basic base64(user:password)` in UTF-8, as RFC 7617 has servers expect
    (aiohttp's BasicAuth is deprecated and refuses what latin-1 cannot spell)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
