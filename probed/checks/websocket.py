"""websocket: upgrade to a WebSocket (ws://, wss://), optionally send a message and judge the reply, ping.

aiohttp's client speaks WebSocket. Each run opens its own connection (a
health check must see what a new client would) and ends it: a clean run says
goodbye with a close frame; any other end aborts the connection at once, so
a server that hangs or talks nonsense keeps no socket of probed's open.
Headers, the Basic login and the compiled pattern are built when the check is
created, and so is the SSL context of a wss:// URL.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.http_client import (
    CONNECTION_PHASES,
    OPTIONAL_PHASES,
    FreshClient,
    Phases,
    basic_authorization,
    client_failure,
    phase_gauges,
    traced_connector,
)
from probed.checks.options import Credentials, TlsOptions
from probed.checks.streams import preview
from probed.checks.tcp import payload, payload_secrets
from probed.fields import ByteSize, Regex
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url, sensitive_header_secrets

if TYPE_CHECKING:
    import aiohttp


class WebsocketOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: HTTP Basic on the upgrade request. The TLS options apply to wss://."""

    type: Literal["websocket"]
    optional_levels = OPTIONAL_PHASES  # only wss:// has a handshake, only a host name a lookup
    url: str = Field(description="ws:// or wss:// URL to upgrade")
    subprotocol: str | None = Field(None, description="ask for this subprotocol; the server must choose it")
    headers: dict[str, str] = Field(default_factory=dict, description="upgrade request headers (values never shown)")
    origin: str | None = Field(None, description="Origin header, for servers that check it")
    send: str | None = Field(
        None, description=r"text message sent after the upgrade; \r \n \t \0 \\ \xHH escapes; never shown"
    )
    expect_contains: str | None = Field(None, description="the first message received must contain this text")
    expect_regex: Regex | None = Field(None, description="the first message received must match this expression")
    ping: bool = Field(True, description="send a ping and wait for its pong (observed ping_time)")
    max_message_bytes: ByteSize = Field(1024 * 1024, ge=1, description="a longer message fails the run")

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError("url must be an absolute ws:// or wss:// URL")
        return value

    @field_validator("send")
    @classmethod
    def _escapes(cls, value: str | None) -> str | None:
        if value is not None:
            payload(value).decode()  # a text frame is UTF-8
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebsocketOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password (or password_file) go together")
        has_header = any(name.lower() == "authorization" for name in self.headers)
        if self.username is not None and (has_header or urlsplit(self.url).username):
            raise ValueError("give one way to authenticate: username, an Authorization header or the URL's user")
        return self


class WebsocketCheck(Check[WebsocketOptions]):
    options_model = WebsocketOptions
    acyclic = True
    component_type = "component"
    requires = ("aiohttp",)
    gauges = (
        Gauge("handshake_time", "probed_websocket_handshake_seconds", "Time to connect and upgrade to WebSocket."),
        Gauge("ping_time", "probed_websocket_ping_seconds", "Round trip of a WebSocket ping to its pong."),
        *phase_gauges(
            "probed_websocket_phase_seconds",
            "Where a websocket check's last upgrade spent its time (dns, connect, tls, first_byte).",
            CONNECTION_PHASES,
        ),
    )

    def __init__(self, name: str, options: WebsocketOptions) -> None:
        super().__init__(name, options)
        self.target = display_url(options.url)
        self._headers = {"User-Agent": "probed", **options.headers}
        if options.username is not None:
            self._headers["Authorization"] = basic_authorization(options.username, options.password_text() or "")
        self._send = payload(options.send).decode() if options.send is not None else None
        self._regex = re.compile(options.expect_regex) if options.expect_regex is not None else None
        self._expects = options.expect_contains is not None or self._regex is not None
        self._ssl: ssl.SSLContext | bool = True
        self._client = FreshClient(traced_connector())

    def prepare(self) -> None:
        # Built once: loading the system's CAs takes the loop for tens of ms. A CA
        # bundle that does not load fails this check's runs, not probed's start or reload.
        if urlsplit(self.options.url).scheme == "wss":
            self._ssl = self.options.ssl_context()

    def secrets(self) -> set[str]:
        # `send` may carry a login: a server echoing it back must not show it.
        found = super().secrets() | sensitive_header_secrets(self.options.headers)
        return found | (payload_secrets(self._send.encode()) if self._send else set())

    async def run(self) -> Outcome:
        import aiohttp

        phases = Phases()
        ws = await self._client.session(phases).ws_connect(
            self.options.url,
            protocols=(self.options.subprotocol,) if self.options.subprotocol else (),
            headers=self._headers,
            origin=self.options.origin,
            ssl=self._ssl,
            autoping=False,  # the pong must reach the check, which answers the server's pings itself
            max_msg_size=self.options.max_message_bytes,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=self.options.timeout),
        )
        clean = False
        try:
            observed: Observed = {"handshake_time": phases.since_start(), **phases.observed()}
            steps = ["upgraded"] + self._subprotocol(ws, observed)
            if self._send is not None or self._expects:
                steps += await self._exchange(ws, observed)
            if self.options.ping:
                steps += await self._ping(ws, observed)
            clean = True
        finally:
            if clean:
                await ws.close()  # the close handshake, bounded by the runner's timeout
            else:
                self._client.connector.abort()
        return Outcome(Status.PASS, f"{self.target}: {', '.join(steps)}", observed)

    def _subprotocol(self, ws: aiohttp.ClientWebSocketResponse, observed: Observed) -> list[str]:
        wanted = self.options.subprotocol
        if wanted is None:
            return []
        if ws.protocol != wanted:
            raise CheckFailed(f"{self.target}: upgraded without the subprotocol {wanted!r}", Reason.UNEXPECTED)
        observed["subprotocol"] = Observation(wanted)
        return [f"subprotocol {wanted}"]

    async def _exchange(self, ws: aiohttp.ClientWebSocketResponse, observed: Observed) -> list[str]:
        """Send the message, if any, and judge the first message that comes back."""
        start = time.perf_counter()
        if self._send is not None:
            await ws.send_str(self._send)
        data = await self._next(ws, "a reply", data=True)
        observed["reply_time"] = Observation(round(time.perf_counter() - start, 6), "s")
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        contains, regex, said = self.options.expect_contains, self._regex, f"{self.target}: replied {_quoted(text)}"
        if contains is not None and contains not in text:
            raise CheckFailed(f"{said}, which lacks {contains!r}", Reason.UNEXPECTED)
        if regex is not None and not regex.search(text):
            raise CheckFailed(f"{said}, no match for /{regex.pattern}/", Reason.UNEXPECTED)
        return (["sent"] if self._send is not None else []) + (["reply ok"] if self._expects else ["replied"])

    async def _ping(self, ws: aiohttp.ClientWebSocketResponse, observed: Observed) -> list[str]:
        token = os.urandom(8)  # this run's ping: a stray pong cannot answer it
        start = time.perf_counter()
        await ws.ping(token)
        while await self._next(ws, "the pong", data=False) != token:
            pass
        observed["ping_time"] = Observation(round(time.perf_counter() - start, 6), "s")
        return ["pong"]

    async def _next(self, ws: aiohttp.ClientWebSocketResponse, waiting_for: str, data: bool) -> str | bytes:
        """The next data message (data=True) or pong payload (data=False);
        the server's pings are answered, messages it pushes meanwhile skipped."""
        from aiohttp import WSMsgType

        while True:
            message = await ws.receive()
            if message.type is WSMsgType.PING:
                await ws.pong(message.data)
            elif message.type in ((WSMsgType.TEXT, WSMsgType.BINARY) if data else (WSMsgType.PONG,)):
                return message.data  # type: ignore[no-any-return]
            elif message.type is WSMsgType.ERROR:
                raise self._receive_error(message.data, waiting_for)
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                code = f" (code {ws.close_code})" if ws.close_code else ""
                raise CheckFailed(f"{self.target}: closed the WebSocket{code} before {waiting_for}", Reason.UNEXPECTED)

    def _receive_error(self, error: Exception, waiting_for: str) -> CheckFailed:
        from aiohttp import WebSocketError

        if isinstance(error, WebSocketError) and error.code == 1009:  # message too big
            limit = self.options.max_message_bytes
            return CheckFailed(f"{self.target}: sent a message over {limit} bytes", Reason.UNEXPECTED)
        said = f"{self.target}: broke the WebSocket protocol before {waiting_for}: {error}"
        return CheckFailed(said, Reason.UNEXPECTED)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """aiohttp's exceptions -> a plain sentence and a reason."""
        import aiohttp

        if isinstance(exc, aiohttp.WSServerHandshakeError):
            if exc.status != 101:
                reason = Reason.AUTH if exc.status in (401, 403, 407) else Reason.UNEXPECTED
                return CheckFailed(f"{self.target}: answered {exc.status} instead of upgrading to WebSocket", reason)
            return CheckFailed(f"{self.target}: upgrade refused: {exc.message}", Reason.UNEXPECTED)
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return CheckFailed(f"{self.target}: closed the connection without upgrading", Reason.UNEXPECTED)
        if isinstance(exc, aiohttp.ClientResponseError):  # what came back is not HTTP
            return CheckFailed(f"{self.target}: answered something that is not HTTP: {exc.message}", Reason.UNEXPECTED)
        return client_failure(exc, self.target) or super().describe_error(exc)

    async def close(self) -> None:
        await self._client.close()


def _quoted(text: str) -> str:
    return preview(text.encode())
