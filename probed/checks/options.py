"""Option groups several check types share, defined once and mixed in.

A type that speaks TLS takes `TlsOptions`; a type that logs in takes
`Credentials`. Their names, defaults, documentation and validation are the
same everywhere, and so is the SSL context they build.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from probed.checks.levels import Levels
from probed.fields import Duration, ProbedModel


class TlsOptions(ProbedModel):
    tls_verify: bool = Field(True, description="verify the server's certificate chain and name")
    ca_file: Path | None = Field(None, description="CA bundle to verify against instead of the system's")
    cert_file: Path | None = Field(None, description="client certificate (PEM) for servers that ask for one")
    key_file: Path | None = Field(None, description="private key of cert_file, when it is not in cert_file")

    @model_validator(mode="after")
    def _readable_files(self) -> TlsOptions:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: needs cert_file")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{key}: {path} is not a readable file")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the system's CAs or ca_file, verification as
        configured, and the client certificate when one is given."""
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


class Credentials(ProbedModel):
    username: str | None = Field(None, description="user to log in as")
    password: SecretStr | None = Field(None, description="password (never shown)")
    password_file: Path | None = Field(None, description="file holding the password (a mounted secret)")

    # Redis' AUTH takes a password alone; types whose servers need a user say so.
    username_required: ClassVar[bool] = False

    @model_validator(mode="after")
    def _password_needs_user(self) -> Credentials:
        has_password = self.password is not None or self.password_file is not None
        if has_password and self.username is None and self.username_required:
            raise ValueError("username: required with a password")
        return self

    def password_text(self) -> str | None:
        return self.password.get_secret_value() if self.password is not None else None


class DatabaseLevels(Levels):
    """What database types (postgres, mysql) judge, spelled as options:
    warn_above & co. on the number the query returned (observed `value`),
    max_replication_lag on a replica's lag (observed `replication_lag`)."""

    max_replication_lag: Duration | None = Field(
        None, description="on a replica, fail when it lags more (levels: {replication_lag: {fail_above: ...}})"
    )

    def database_levels(self) -> dict[str, Levels]:
        implied = {}
        if self.has_levels:
            implied["value"] = Levels(
                warn_above=self.warn_above,
                fail_above=self.fail_above,
                warn_below=self.warn_below,
                fail_below=self.fail_below,
            )
        if self.max_replication_lag is not None:
            implied["replication_lag"] = Levels(fail_above=self.max_replication_lag)
        return implied
