"""mqtt: connect to an MQTT broker, optionally round-trip a message at QoS 1.

gmqtt is asyncio through and through (the loop's own connections, no helper
threads: a broker that hangs holds no thread of anyone's), speaks MQTT 3.1.1
and 5, and imports nothing heavy. The round trip subscribes to a probe topic,
publishes to it and waits for the message to come back: what an application
that both publishes and consumes needs from the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from probed.checks.base import Check, CheckOptions
from probed.checks.options import Credentials, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    import gmqtt

# CONNACK return codes of MQTT 3.1.1 and reason codes of MQTT 5 that mean "who are you".
_AUTH_CODES = {4, 5, 134, 135, 138, 140}
_NO_RECONNECT = -2  # gmqtt reconnects while failed attempts <= this; -1 means for ever


class MqttOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: the broker's login; the TLS options apply with `tls: true`."""

    type: Literal["mqtt"]
    host: str = Field(description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 8883 with tls, else 1883")
    tls: bool = Field(False, description="connect with TLS (MQTTS)")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version")
    client_id: str | None = Field(None, description="default: probed-<check name>-<random>, unique per run")
    round_trip: bool = Field(False, description="subscribe to topic, publish to it at QoS 1, wait for the message")
    topic: str | None = Field(None, description="the round trip's topic (default: probed/<check name>)")

    @field_validator("topic")
    @classmethod
    def _publishable(cls, value: str | None) -> str | None:
        if value is not None and (not value or "+" in value or "#" in value):
            raise ValueError("topic must be a plain topic name, without + or # wildcards")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)


class MqttCheck(Check[MqttOptions]):
    options_model = MqttOptions
    component_type = "component"
    requires = ("gmqtt",)
    extra = "mqtt"

    def __init__(self, name: str, options: MqttOptions) -> None:
        super().__init__(name, options)
        self.target = f"mqtt{'s' if options.tls else ''}://{options.host}:{options.effective_port}"
        self.topic = options.topic or f"probed/{name}"
        # gmqtt logs every refusal and disconnect itself; the check's verdict says it once.
        logging.getLogger("gmqtt").setLevel(logging.CRITICAL)

    def prepare(self) -> None:
        self._tls_context = self.options.ssl_context() if self.options.tls else False

    async def run(self) -> Outcome:
        start = time.perf_counter()
        client, messages = self._client()
        try:  # every end of a run, a timeout's cancellation too, closes the connection
            await self._connect(client)
            observed: Observed = {"connect_time": Observation(round(time.perf_counter() - start, 6), "s")}
            if self.options.round_trip:
                observed["round_trip_time"] = Observation(await self._round_trip(client, messages, start), "s")
        finally:
            await _disconnect(client)
        said = f"message round trip on {self.topic} ok" if self.options.round_trip else "connected"
        return Outcome(Status.PASS, f"{self.target}: {said}", observed)

    def _client(self) -> tuple[gmqtt.Client, asyncio.Queue[bytes]]:
        import gmqtt

        opts = self.options
        client = gmqtt.Client(opts.client_id or f"probed-{self.name}-{uuid.uuid4().hex[:8]}")
        # A check reports what one connection does; it never reconnects. gmqtt's
        # 0 still allows reconnects to a broker that accepts and closes (40
        # sockets a minute, left behind by runs long over): below its -1
        # ("unlimited"), no reconnect is ever allowed.
        client.set_config({"reconnect_retries": _NO_RECONNECT})
        if opts.username is not None:
            client.set_auth_credentials(opts.username, opts.password_text())
        messages: asyncio.Queue[bytes] = asyncio.Queue()

        def on_message(client: Any, topic: str, payload: bytes, qos: int, properties: Any) -> int:
            messages.put_nowait(payload)
            return 0  # PUBACK: received

        client.on_message = on_message
        return client, messages

    async def _connect(self, client: gmqtt.Client) -> None:
        """CONNECT and its CONNACK, or the broker closing first: gmqtt would
        wait for the CONNACK for ever, so a close reads as what it is."""
        from gmqtt.mqtt.constants import MQTTv50, MQTTv311

        opts = self.options
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_disconnect(*_: Any) -> None:
            if not lost.done():
                lost.set_result(None)

        client.on_disconnect = on_disconnect
        connecting = asyncio.ensure_future(
            client.connect(
                opts.host,
                opts.effective_port,
                ssl=self._tls_context,
                keepalive=max(5, int(opts.interval)),
                version=MQTTv50 if opts.protocol == "5" else MQTTv311,
            )
        )
        try:
            await asyncio.wait({connecting, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connecting.cancel()  # a no-op once it is done: gmqtt's error stays there to retrieve
            lost.cancel()
        if not connecting.done() or connecting.cancelled():
            raise CheckFailed(f"{self.target}: closed the connection before its CONNACK", Reason.UNEXPECTED)
        connecting.result()

    async def _round_trip(self, client: gmqtt.Client, messages: asyncio.Queue[bytes], start: float) -> float:
        """Subscribe, publish a unique payload, wait for it; seconds it took."""
        token = uuid.uuid4().hex.encode()
        sent = time.perf_counter()
        client.subscribe(self.topic, qos=1)
        client.publish(self.topic, token, qos=1)
        # Leave a tenth of the timeout to say why, rather than "timed out".
        budget = self.options.timeout * 0.9 - (time.perf_counter() - start)
        try:
            async with asyncio.timeout(max(0.0, budget)):
                while await messages.get() != token:
                    pass
        except TimeoutError:
            raise CheckFailed(
                f"{self.target}: the message published to {self.topic} did not come back "
                "(may this user publish and subscribe to the topic?)",
                Reason.UNEXPECTED,
            ) from None
        return round(time.perf_counter() - sent, 6)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """gmqtt's exceptions -> a plain sentence and a reason."""
        from gmqtt.mqtt.handler import MQTTConnectError

        if isinstance(exc, MQTTConnectError):
            code = getattr(exc, "_code", None)
            reason = Reason.AUTH if code in _AUTH_CODES else Reason.UNEXPECTED
            return CheckFailed(f"{self.target}: broker refused the connection: {exc}", reason)
        return super().describe_error(exc)


async def _disconnect(client: gmqtt.Client) -> None:
    with contextlib.suppress(Exception):  # a broken connection has nothing left to say goodbye to
        await asyncio.wait_for(client.disconnect(), 1.0)
