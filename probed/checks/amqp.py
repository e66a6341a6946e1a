"""amqp: connect to RabbitMQ with aiormq, open a channel, optionally look at a queue."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels
from probed.checks.options import Credentials, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url

if TYPE_CHECKING:
    import ssl

    import aiormq
    from yarl import URL

# AMQP reply codes the broker closes a connection or channel with.
ACCESS_REFUSED = 403
NOT_FOUND = 404
NOT_ALLOWED = 530  # Connection.Open to a vhost that is missing or not permitted


class AmqpOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: instead of the URL's; the TLS options apply to amqps:// URLs."""

    type: Literal["amqp"]
    url: str = Field(
        "amqp://localhost:5672/", description="amqp:// or amqps:// (TLS) URL; its path is the vhost (%2F for /)"
    )
    queue: str | None = Field(None, description="declare this queue passively: it must exist; observes its counts")
    warn_messages: int | None = Field(None, ge=0, description="warn when the queue has more messages ready")
    max_messages: int | None = Field(None, ge=0, description="fail when the queue has more messages ready")
    min_consumers: int | None = Field(None, ge=0, description="fail when the queue has fewer consumers")

    @field_validator("url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("url must start with amqp:// or amqps://")
        try:
            urlsplit(value).port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError("url: invalid port") from None
        return value

    @model_validator(mode="after")
    def _levels_need_a_queue(self) -> AmqpOptions:
        for key in ("warn_messages", "max_messages", "min_consumers"):
            if getattr(self, key) is not None and self.queue is None:
                raise ValueError(f"{key}: needs queue")
        if self.warn_messages is not None and self.max_messages is not None and self.warn_messages > self.max_messages:
            raise ValueError("warn_messages must not be above max_messages")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        implied = {}
        if self.warn_messages is not None or self.max_messages is not None:
            implied["messages"] = Levels(warn_above=self.warn_messages, fail_above=self.max_messages)
        if self.min_consumers is not None:
            implied["consumers"] = Levels(fail_below=self.min_consumers)
        return implied

    @property
    def vhost(self) -> str:
        path = urlsplit(self.url).path
        return "/" if path in ("", "/") else unquote(path[1:])


class AmqpCheck(Check[AmqpOptions]):
    options_model = AmqpOptions
    component_type = "component"
    requires = ("aiormq",)
    extra = "amqp"
    gauges = (
        Gauge("messages", "probed_amqp_queue_messages", "Messages ready for delivery in the check's queue."),
        Gauge("consumers", "probed_amqp_queue_consumers", "Consumers of the check's queue."),
    )

    def __init__(self, name: str, options: AmqpOptions) -> None:
        super().__init__(name, options)
        self.target = display_url(options.url)
        # aiormq logs each failed connection as an error; the check's result already says it.
        logging.getLogger("aiormq").setLevel(logging.CRITICAL)

    def prepare(self) -> None:
        self._ssl: ssl.SSLContext | None = (
            self.options.ssl_context() if self.options.url.startswith("amqps://") else None
        )

    async def run(self) -> Outcome:
        import aiormq

        start = time.perf_counter()
        connection = aiormq.Connection(
            self._connection_url(),
            context=self._ssl,
            client_properties={"connection_name": f"probed {self.name}"},  # shown by rabbitmqctl list_connections
        )
        try:
            await connection.connect()
            channel = await connection.channel()
            observed: Observed = {"connect_time": Observation(round(time.perf_counter() - start, 6), "s")}
            version = (connection.server_properties or {}).get("version")
            if version:
                observed["server_version"] = Observation(_text(version))
            if self.options.queue is not None:
                observed = {**await self._queue(channel, self.options.queue), **observed}
        finally:
            await _close(connection)
        queue = f", queue {self.options.queue}: {observed['messages'].value} ready" if self.options.queue else ""
        return Outcome(Status.PASS, f"{self.target}: channel open{queue}", observed)

    def _connection_url(self) -> URL:
        """The URL aiormq gets: credentials from the options win; no heartbeats
        (a connection lives one run); the timeout bounds each RPC."""
        from yarl import URL

        opts = self.options
        url = URL(opts.url)
        if opts.username is not None:
            url = url.with_user(opts.username)
        if opts.password is not None:
            url = url.with_password(opts.password_text())
        return url.update_query(heartbeat=0, timeout=max(1, round(opts.timeout)))

    async def _queue(self, channel: aiormq.abc.AbstractChannel, queue: str) -> Observed:
        declared = await channel.queue_declare(queue, passive=True)
        return {
            "messages": Observation(int(declared.message_count or 0)),
            "consumers": Observation(int(declared.consumer_count or 0)),
        }

    def describe_error(self, exc: Exception) -> CheckFailed:
        """aiormq's exceptions -> a plain sentence and a reason."""
        import aiormq.exceptions as amqp_errors

        target, vhost = self.target, self.options.vhost
        if isinstance(exc, amqp_errors.ChannelNotFoundEntity):
            return CheckFailed(
                f"{target}: queue {self.options.queue!r} does not exist in vhost {vhost!r}", Reason.UNEXPECTED
            )
        if isinstance(exc, amqp_errors.ChannelAccessRefused):
            return CheckFailed(f"{target}: no permission for queue {self.options.queue!r}: {_said(exc)}", Reason.AUTH)
        if isinstance(exc, amqp_errors.ConnectionNotAllowed) or _vhost_refused(exc):
            return CheckFailed(
                f"{target}: the broker refused vhost {vhost!r}: "
                "it does not exist, or this user has no permission on it",
                Reason.AUTH,
            )
        if isinstance(exc, amqp_errors.ProbableAuthenticationError | amqp_errors.AuthenticationError):
            return CheckFailed(f"{target}: authentication failed (wrong username or password?)", Reason.AUTH)
        if _reply_code(exc) == ACCESS_REFUSED:
            return CheckFailed(f"{target}: authentication failed: {_said(exc)}", Reason.AUTH)
        if isinstance(exc, amqp_errors.IncompatibleProtocolError):
            return CheckFailed(f"{target}: the server closed the connection before speaking AMQP", Reason.UNEXPECTED)
        failure = super().describe_error(exc)
        if isinstance(exc, amqp_errors.AMQPError) and failure.reason is Reason.ERROR:
            return CheckFailed(f"{target}: {_said(exc)}")
        return failure


def _vhost_refused(exc: BaseException) -> bool:
    """aiormq answers the broker's Connection.Close to a Connection.Open (530,
    NOT_ALLOWED: a missing vhost or no permission on it) with an
    InvalidFrameError that keeps only the frames' names."""
    text = str(exc)
    return type(exc).__name__ == "InvalidFrameError" and "Connection.OpenOk" in text and "Connection.Close" in text


def _reply_code(exc: BaseException) -> int | None:
    """The AMQP reply code of a Connection.Close / Channel.Close the driver raised."""
    for arg in exc.args:
        code = getattr(arg, "reply_code", None)
        if isinstance(code, int):
            return code
    return None


def _said(exc: BaseException) -> str:
    """What the broker said (its reply text), or the driver's description."""
    for arg in exc.args:
        text = getattr(arg, "reply_text", None)
        if text:
            return str(text)
    return str(exc.args[-1]) if exc.args else type(exc).__name__


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _close(connection: aiormq.Connection) -> None:
    """Close the connection and its channels, within a second; a broker that
    does not answer the close still loses the socket."""
    import asyncio
    import contextlib

    with contextlib.suppress(Exception):  # the run's own result matters, not a failed goodbye
        await asyncio.wait_for(connection.close(), 1.0)
