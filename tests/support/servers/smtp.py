"""A real SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

from typing import Any

from tests.support.net import free_port


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free port: plain, STARTTLS or implicit
    TLS, optionally requiring AUTH with one user."""

    def __init__(
        self,
        tls_context: object | None = None,
        implicit_tls: bool = False,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()  # aiosmtpd's Controller cannot bind port 0
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.user = user
        self.controller: object | None = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Sink
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticate(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and self.user is not None
                and (data.login.decode(), data.password.decode()) == self.user
            )
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

        kwargs: dict[str, Any] = {}
        if self.implicit_tls:
            kwargs["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        if self.user is not None:
            kwargs |= {"authenticator": authenticate, "auth_require_tls": False}
        controller = Controller(Sink(), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs)
        controller.start()
        self.controller = controller

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()  # type: ignore[attr-defined]
            self.controller = None
