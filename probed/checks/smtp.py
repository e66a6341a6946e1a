"""smtp: connect, check the banner, EHLO, optional STARTTLS and AUTH, NOOP, QUIT.

It never sends mail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions
from probed.checks.options import Credentials, TlsOptions
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    import aiosmtplib


class SmtpOptions(CheckOptions, Credentials, TlsOptions):
    """username/password: log in with AUTH; the TLS options apply to tls and starttls."""

    type: Literal["smtp"]
    host: str = Field(description="SMTP server host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 465 with tls, 587 with starttls, else 25")
    tls: bool = Field(False, description="implicit TLS from the first byte (SMTPS, usually port 465)")
    starttls: bool = Field(False, description="upgrade with STARTTLS after EHLO (usually port 587)")
    expect_banner_code: int = Field(220, description="the greeting code the server must send")
    helo_name: str | None = Field(None, description="name to send in EHLO (default: this host's name)")

    @model_validator(mode="after")
    def _consistent(self) -> SmtpOptions:
        if self.tls and self.starttls:
            raise ValueError("choose tls (implicit) or starttls, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password (or password_file) go together")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)


class SmtpCheck(Check[SmtpOptions]):
    options_model = SmtpOptions
    component_type = "component"
    requires = ("aiosmtplib",)

    def __init__(self, name: str, options: SmtpOptions) -> None:
        super().__init__(name, options)
        self.target = f"smtp://{options.host}:{options.effective_port}"

    def prepare(self) -> None:
        opts = self.options
        self._tls_context = opts.ssl_context() if opts.tls or opts.starttls else None

    async def run(self) -> Outcome:
        import aiosmtplib

        opts = self.options
        client = aiosmtplib.SMTP(
            hostname=opts.host,
            port=opts.effective_port,
            use_tls=opts.tls,
            start_tls=False,  # never upgrade behind the config's back
            tls_context=self._tls_context,
            local_hostname=opts.helo_name,
            timeout=opts.timeout,
        )
        try:
            observed = await self._converse(client)
        finally:
            client.close()
        steps = "banner, EHLO" + (", STARTTLS" if opts.starttls else "") + (", AUTH" if opts.username else "")
        return Outcome(Status.PASS, f"{self.target}: {steps}, NOOP ok", observed)

    async def _converse(self, client: aiosmtplib.SMTP) -> Observed:
        import aiosmtplib

        opts = self.options
        try:
            code = (await client.connect()).code
        except aiosmtplib.SMTPConnectResponseError as exc:  # a greeting other than 220
            code = exc.code
        observed: Observed = {"banner_code": Observation(code)}
        if code != opts.expect_banner_code:
            message = f"{self.target}: greeted with {code}, expected {opts.expect_banner_code}"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
        if not client.is_connected:  # the expected greeting was a refusal; nothing more to ask
            return observed
        await client.ehlo()
        if opts.starttls:
            if not client.supports_extension("starttls"):
                raise CheckFailed(f"{self.target}: server does not offer STARTTLS", Reason.UNEXPECTED, observed)
            await client.starttls()
            await client.ehlo()
        observed["tls"] = Observation(opts.tls or opts.starttls)
        if opts.username and opts.password:
            await client.login(opts.username, opts.password_text() or "")
        await client.noop()
        await client.quit()
        return observed

    def describe_error(self, exc: Exception) -> CheckFailed:
        """aiosmtplib's exceptions -> a plain sentence and a reason."""
        import aiosmtplib

        target = self.target
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return CheckFailed(f"{target}: authentication failed: {exc.code} {exc.message}", Reason.AUTH)
        if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError | aiosmtplib.SMTPTimeoutError):
            return CheckFailed(f"{target}: timed out", Reason.TIMEOUT)
        failure = super().describe_error(exc)
        if failure.reason is not Reason.ERROR:  # refused, DNS, TLS
            return failure
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return CheckFailed(f"{target}: server answered {exc.code} {exc.message}", Reason.UNEXPECTED)
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return CheckFailed(f"{target}: server closed the connection: {exc}")
        return failure
