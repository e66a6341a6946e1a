"""nats: connect to a NATS server, round-trip a PING, optionally read a
JetStream stream's or consumer's state.

nats-py is asyncio-native (the NATS maintainers' own client). Reconnects are
off: a health check reports what a fresh client sees, its thresholds decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.options import Credentials, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import MASK, display_url

if TYPE_CHECKING:
    from nats.aio.client import Client

_CLOSE_GRACE = 0.1  # seconds: a clean close takes a loop iteration or two


class NatsOptions(CheckOptions, Credentials, TlsOptions):
    """Log in with username/password, a token, an nkey seed or a creds file
    (JWT + nkey, as `nats context` writes them). The TLS options apply to
    tls:// URLs and to `tls: true`."""

    type: Literal["nats"]
    url: str = Field("nats://localhost:4222", description="nats:// or tls:// URL (user:password@ allowed)")
    token: SecretStr | None = Field(None, description="authentication token")
    token_file: Path | None = None
    nkey_seed: SecretStr | None = Field(None, description="nkey seed (SU...) to sign the server's nonce")
    nkey_seed_file: Path | None = None
    creds_file: Path | None = Field(None, description="credentials file with a user JWT and its nkey seed")
    tls: bool = Field(False, description="use TLS with a nats:// URL too")
    stream: str | None = Field(None, description="a JetStream stream whose state is observed")
    consumer: str | None = Field(None, description="a consumer of `stream` whose pending counts are observed")

    @field_validator("url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        if not value.startswith(("nats://", "tls://")):
            raise ValueError("url must start with nats:// or tls://")
        return value

    @model_validator(mode="after")
    def _one_way_to_log_in(self) -> NatsOptions:
        ways = [self.username is not None, self.token is not None, self.nkey_seed is not None, bool(self.creds_file)]
        if sum(ways) > 1:
            raise ValueError("choose one of username/password, token, nkey_seed or creds_file")
        if self.consumer is not None and self.stream is None:
            raise ValueError("consumer: needs stream")
        if self.creds_file is not None and not Path(self.creds_file).is_file():
            raise ValueError(f"creds_file: {self.creds_file} is not a readable file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.url.startswith("tls://")


class NatsCheck(Check[NatsOptions]):
    options_model = NatsOptions
    component_type = "component"
    requires = ("nats",)
    extra = "nats"
    gauges = (
        Gauge("messages", "probed_nats_stream_messages", "Messages stored in the JetStream stream."),
        Gauge("pending", "probed_nats_consumer_pending", "Messages the JetStream consumer has not yet delivered."),
        Gauge("ack_pending", "probed_nats_consumer_ack_pending", "Messages delivered and not yet acknowledged."),
    )

    def __init__(self, name: str, options: NatsOptions) -> None:
        super().__init__(name, options)
        self.target = display_url(_mask_url_token(options.url))

    def secrets(self) -> set[str]:
        token = _url_token(self.options.url)
        return super().secrets() | ({token, unquote(token)} if token else set())

    def prepare(self) -> None:
        self._tls_context = self.options.ssl_context() if self.options.uses_tls else None

    async def run(self) -> Outcome:
        from nats.aio.client import Client

        # Made here, not by nats.connect(): a connect that fails (a server
        # that closes, garbage, a timeout) would leave its socket open in a
        # client nobody holds. Closed however the run ends.
        client = Client()
        try:
            await self._connect(client)
            start = time.perf_counter()
            # PING, PONG: the server answers. (flush takes whole seconds; the runner bounds the run.)
            await client.flush(timeout=math.ceil(self.options.timeout))
            observed: Observed = {"rtt": Observation(round(time.perf_counter() - start, 6), "s")}
            observed |= {"server_version": Observation(str(client.connected_server_version))}
            if self.options.stream is not None:
                observed |= await self._jetstream(client)
        finally:
            await _close(client)
        return Outcome(Status.PASS, f"{self.target}: {self._said()}", observed)

    async def _connect(self, client: Client) -> None:
        opts = self.options
        login: dict[str, Any] = {}
        if opts.username is not None:
            login = {"user": opts.username, "password": opts.password_text()}
        elif opts.token is not None:
            login = {"token": opts.token.get_secret_value()}
        elif opts.nkey_seed is not None:
            login = {"nkeys_seed_str": opts.nkey_seed.get_secret_value()}
        elif opts.creds_file is not None:
            login = {"user_credentials": str(opts.creds_file)}
        errors: list[Exception] = []

        async def remember(exc: Exception) -> None:  # the client reports auth errors here, not by raising
            errors.append(exc)

        try:
            await client.connect(
                servers=[opts.url],
                name="probed",
                connect_timeout=opts.timeout,  # type: ignore[arg-type]  # typed int, used as a float
                allow_reconnect=False,
                # 0 means "retry forever" to nats-py's first connect; 1 with no
                # wait is one quick retry, then NoServersError.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                tls=self._tls_context,
                error_cb=remember,
                **login,
            )
        except Exception as exc:
            raise (errors[0] if errors else exc) from exc

    async def _jetstream(self, client: Client) -> Observed:
        opts = self.options
        jetstream = client.jetstream(timeout=opts.timeout)
        assert opts.stream is not None
        if opts.consumer is None:
            info = await jetstream.stream_info(opts.stream)
            return {
                "messages": Observation(info.state.messages),
                "bytes": Observation(info.state.bytes, "bytes"),
                "consumers": Observation(info.state.consumer_count),
            }
        consumer = await jetstream.consumer_info(opts.stream, opts.consumer)
        return {
            "pending": Observation(consumer.num_pending or 0),
            "ack_pending": Observation(consumer.num_ack_pending or 0),
            "redelivered": Observation(consumer.num_redelivered or 0),
            "waiting": Observation(consumer.num_waiting or 0),
        }

    def _said(self) -> str:
        opts = self.options
        if opts.consumer is not None:
            return f"consumer {opts.stream}/{opts.consumer} ok"
        if opts.stream is not None:
            return f"stream {opts.stream} ok"
        return "PONG"

    def describe_error(self, exc: Exception) -> CheckFailed:
        """nats-py's exceptions -> a plain sentence and a reason."""
        import nats.errors as nats_errors
        import nats.js.errors as js_errors

        target = self.target
        if isinstance(exc, nats_errors.AuthorizationError) or "authorization violation" in str(exc).lower():
            return CheckFailed(f"{target}: authorization violation: check the credentials", Reason.AUTH)
        if isinstance(exc, js_errors.NotFoundError):
            opts = self.options
            what = f"consumer {opts.stream}/{opts.consumer}" if opts.consumer else f"stream {opts.stream}"
            return CheckFailed(f"{target}: {what} not found", Reason.UNEXPECTED)
        if isinstance(exc, js_errors.ServiceUnavailableError | nats_errors.NoRespondersError):
            return CheckFailed(f"{target}: JetStream is not enabled or not available", Reason.UNEXPECTED)
        if isinstance(exc, js_errors.APIError):
            return CheckFailed(f"{target}: JetStream said: {exc.description or exc}", Reason.UNEXPECTED)
        if isinstance(exc, nats_errors.TimeoutError | nats_errors.FlushTimeoutError):
            return CheckFailed(f"{target}: timed out", Reason.TIMEOUT)
        failure = super().describe_error(exc)
        if failure.reason is Reason.ERROR and isinstance(exc, nats_errors.NoServersError):
            return CheckFailed(f"{target}: no server could be reached")
        return failure


def _url_token(url: str) -> str | None:
    """NATS reads nats://TOKEN@host (userinfo without a password) as a token."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.username if parts.username and parts.password is None else None


def _mask_url_token(url: str) -> str:
    token = _url_token(url)
    return url.replace(f"{token}@", f"{MASK}@", 1) if token else url


async def _close(client: Client) -> None:
    """close() closes the socket, then waits for it to be closed: for ever
    after a failed TLS handshake (nats-py waits on the plain stream TLS took
    over), so the wait is bounded; the socket is closed by then."""
    with contextlib.suppress(Exception):  # a broken connection has nothing left to close
        await asyncio.wait_for(client.close(), _CLOSE_GRACE)
