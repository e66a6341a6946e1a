"""ssh: the server's banner and protocol version; optionally a login and a command judged like `command`.

Without `username` the check reads the identification line itself and says
goodbye: no key exchange, no login attempt in the server's log. With one it
logs in with asyncssh (password or key file), and only after the server's
host key matched `known_hosts` or `host_key`: a check that sends a password
to whoever answers must say so, with `insecure_ignore_host_key: true`.

Keys (a passphrase's KDF takes a good part of a second), the known hosts and
the connection options are prepared when the check is created; nothing of
the user's ~/.ssh (config, keys, agent, known_hosts) is ever read.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.command import Finished, judge
from probed.checks.options import Credentials
from probed.checks.streams import closed, connection, preview
from probed.fields import ByteSize, Regex
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    import asyncssh

_IDENTIFICATION = re.compile(r"^SSH-(?P<protocol>[!-,.-~]+)-(?P<software>[!-,.-~]+)(?: (?P<comments>.*))?$")
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")
_MAX_PREAMBLE_LINES = 20  # RFC 4253 lets a server send lines before its identification
_OUR_IDENTIFICATION = b"SSH-2.0-probed\r\n"


class SshOptions(CheckOptions, Credentials):
    """username with password / password_file or key_file: log in (keyboard-interactive answers
    with the password too); a host key check is then required (known_hosts, host_key, or
    insecure_ignore_host_key: true)."""

    type: Literal["ssh"]
    host: str = Field(description="SSH server host name or address")
    port: int = Field(22, ge=1, le=65535, description="TCP port")
    expect_banner: Regex | None = Field(
        None, description="regular expression the identification line must match, e.g. OpenSSH_9"
    )
    key_file: Path | None = Field(None, description="private key to log in with (OpenSSH or PEM)")
    passphrase: SecretStr | None = Field(None, description="passphrase of key_file (never shown)")
    passphrase_file: Path | None = Field(None, description="file holding the passphrase (a mounted secret)")
    known_hosts: Path | None = Field(None, description="OpenSSH known_hosts file the server's host key must be in")
    host_key: str | None = Field(
        None, description="the server's host key (ssh-ed25519 AAAA...) or its fingerprint (SHA256:...)"
    )
    insecure_ignore_host_key: bool = Field(
        False, description="log in without checking the server's host key (anyone on the path can answer)"
    )
    command: str | None = Field(
        None, description="run after the login; exit 0 passes, 1 warns, 2 fails, others fail (as type: command)"
    )
    max_output_bytes: ByteSize = Field(
        64 * 1024, description="keep at most this much of the command's stdout and stderr"
    )

    username_required = True

    @field_validator("key_file", "known_hosts")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("host_key")
    @classmethod
    def _key_or_fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not (_FINGERPRINT.match(value) or len(value.split()) >= 2):
            raise ValueError("give the key as in known_hosts (ssh-ed25519 AAAA...) or a SHA256:... fingerprint")
        return value

    @model_validator(mode="after")
    def _login_consistent(self) -> SshOptions:
        if self.username is not None and self.password is None and self.key_file is None:
            raise ValueError("username: needs password (or password_file) or key_file")
        if self.username is None:
            for key in ("key_file", "command", "known_hosts", "host_key", "insecure_ignore_host_key"):
                if key in self.model_fields_set:
                    raise ValueError(f"{key}: applies to a login (needs username)")
            return self
        if self.passphrase is not None and self.key_file is None:
            raise ValueError("passphrase: needs key_file")
        trust = [key for key in ("known_hosts", "host_key") if getattr(self, key) is not None]
        if self.insecure_ignore_host_key:
            trust.append("insecure_ignore_host_key")
        if len(trust) != 1:
            said = "give one of" if not trust else f"give only one of ({', '.join(trust)}):"
            raise ValueError(f"{said} known_hosts, host_key or insecure_ignore_host_key: true")
        return self


class SshCheck(Check[SshOptions]):
    options_model = SshOptions
    component_type = "component"
    requires = ("asyncssh",)
    extra = "ssh"
    gauges = (
        Gauge("login_time", "probed_ssh_login_seconds", "Time to connect, exchange keys and log in."),
        Gauge("exit_code", "probed_ssh_command_exit_code", "Exit code of the ssh check's remote command."),
    )

    def __init__(self, name: str, options: SshOptions) -> None:
        super().__init__(name, options)
        host = f"[{options.host}]" if ":" in options.host else options.host
        self.target = f"ssh://{host}:{options.port}"
        self._expect = re.compile(options.expect_banner) if options.expect_banner else None
        self._unusable: str | None = None  # why a login can never work (a key that does not load)
        self._connect_options: asyncssh.SSHClientConnectionOptions | None = None
        if options.username is not None:
            self._client_class = _client_class()
            try:
                self._connect_options = self._login_options()
            except Exception as exc:  # a key that cannot be read or decrypted: every run says so
                self._unusable = f"{self.target}: key_file {options.key_file}: {exc}"

    def _login_options(self) -> asyncssh.SSHClientConnectionOptions:
        import asyncssh

        opts = self.options
        keys = None
        if opts.key_file is not None:
            passphrase = opts.passphrase.get_secret_value() if opts.passphrase else None
            keys = [asyncssh.read_private_key(opts.key_file, passphrase)]
        return asyncssh.SSHClientConnectionOptions(
            config=None,  # never the user's ~/.ssh/config, keys, agent or known_hosts
            username=opts.username,
            password=opts.password_text(),
            client_keys=keys,
            agent_path=None,
            known_hosts=self._known_hosts(),
            x509_trusted_certs=None,
            gss_auth=False,
            gss_kex=False,
            client_version="probed",
            login_timeout=opts.timeout,
        )

    def _known_hosts(self) -> Any:
        """What asyncssh checks the host key against; a fingerprint is
        checked by the client (validate_host_public_key) instead."""
        import asyncssh

        opts = self.options
        if opts.known_hosts is not None:
            return asyncssh.import_known_hosts(opts.known_hosts.read_text())
        if opts.host_key is not None and not _FINGERPRINT.match(opts.host_key):
            return ([asyncssh.import_public_key(opts.host_key)], [], [])
        if opts.host_key is not None:
            return ([], [], [])  # nothing trusted up front: the client compares the fingerprint
        return None  # insecure_ignore_host_key

    async def run(self) -> Outcome:
        if self.options.username is None:
            return await self._banner_only()
        if self._unusable is not None:
            raise CheckFailed(self._unusable)
        return await self._log_in()

    # -- banner only ------------------------------------------------------------------------

    async def _banner_only(self) -> Outcome:
        start = time.perf_counter()
        async with connection(self.options.host, self.options.port) as (reader, writer):
            line = await self._identification(reader)
            banner_time = time.perf_counter() - start
            writer.write(_OUR_IDENTIFICATION)  # a polite goodbye: the server logs a closed connection, no error
        observed = self._banner_observed(line)
        observed = {"banner_time": Observation(round(banner_time, 6), "s"), **observed}
        return Outcome(Status.PASS, f"{self.target}: {line}", observed)

    async def _identification(self, reader: asyncio.StreamReader) -> str:
        said = b""  # what came before an identification, for the failure's message
        for _ in range(_MAX_PREAMBLE_LINES):
            try:
                raw = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                said = said or exc.partial
                if not said:
                    raise closed(self.target, "before its identification") from None
                message = f"{self.target}: answered {preview(said)} and closed the connection, not SSH"
                raise CheckFailed(message, Reason.UNEXPECTED) from None
            except asyncio.LimitOverrunError:
                raise CheckFailed(f"{self.target}: sent an endless line, not SSH", Reason.UNEXPECTED) from None
            line = raw.rstrip(b"\r\n").decode(errors="replace")
            if line.startswith("SSH-"):
                return line
            said = said or raw
        raise CheckFailed(f"{self.target}: answered {preview(said)} and no SSH identification", Reason.UNEXPECTED)

    def _banner_observed(self, line: str) -> Observed:
        """The identification line judged: SSH 2, and expect_banner."""
        match = _IDENTIFICATION.match(line)
        if match is None:
            raise CheckFailed(f"{self.target}: answered {preview(line.encode())}, not SSH", Reason.UNEXPECTED)
        observed: Observed = {
            "protocol_version": Observation(match["protocol"]),
            "server_software": Observation(match["software"]),
        }
        if match["protocol"] not in ("2.0", "1.99"):
            message = f"{self.target}: speaks SSH protocol {match['protocol']} only, not 2.0"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
        if self._expect is not None and not self._expect.search(line):
            message = f"{self.target}: banner {line!r} does not match /{self._expect.pattern}/"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
        return observed

    # -- login and command ------------------------------------------------------------------

    async def _log_in(self) -> Outcome:
        import asyncssh

        client = self._client_class(self.options.host_key)
        start = time.perf_counter()
        try:
            conn = await asyncssh.connect(
                self.options.host, self.options.port, options=self._connect_options, client_factory=lambda: client
            )
        except asyncssh.HostKeyNotVerifiable:
            raise self._untrusted(client.presented) from None
        clean = False
        try:
            login_time = time.perf_counter() - start
            observed = self._banner_observed(str(conn.get_extra_info("server_version", "")))
            observed = {"login_time": Observation(round(login_time, 6), "s"), **observed}
            outcome = Outcome(Status.PASS, f"{self.target}: logged in as {self.options.username}", observed)
            if self.options.command is not None:
                outcome = await self._command(conn, observed)
            clean = True
            return outcome
        finally:
            if clean:
                conn.close()
                await conn.wait_closed()
            else:
                conn.abort()

    async def _command(self, conn: asyncssh.SSHClientConnection, observed: Observed) -> Outcome:
        import asyncssh

        assert self.options.command is not None
        process = await conn.create_process(self.options.command, stdin=asyncssh.DEVNULL, encoding=None)
        limit = self.options.max_output_bytes
        stdout, stderr = await asyncio.gather(_bounded(process.stdout, limit), _bounded(process.stderr, limit))
        completed = await process.wait()
        finished = Finished(_exit_code(completed.exit_status, completed.exit_signal), stdout, stderr)
        try:
            outcome = judge(finished, f"{self.target}: {self.options.command}")
        except CheckFailed as failed:
            failed.observed.update(observed)
            raise
        return Outcome(outcome.status, outcome.output, {**outcome.observed, **observed})

    def _untrusted(self, presented: str | None) -> CheckFailed:
        where = {"known_hosts": f"not in {self.options.known_hosts}", "host_key": "not the configured host_key"}
        why = where["known_hosts" if self.options.known_hosts is not None else "host_key"]
        key = f" ({presented})" if presented else ""
        return CheckFailed(f"{self.target}: host key not trusted: the server's key{key} is {why}", Reason.AUTH)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """asyncssh's exceptions -> a plain sentence and a reason."""
        import asyncssh

        if isinstance(exc, asyncssh.PermissionDenied):
            return CheckFailed(f"{self.target}: login as {self.options.username} refused: {exc.reason}", Reason.AUTH)
        if isinstance(exc, asyncssh.ConnectionLost):
            return CheckFailed(f"{self.target}: closed the connection ({exc.reason})", Reason.UNEXPECTED)
        if isinstance(exc, asyncssh.DisconnectError):
            return CheckFailed(f"{self.target}: {exc.reason}", Reason.UNEXPECTED)
        if isinstance(exc, asyncssh.ChannelOpenError):
            return CheckFailed(f"{self.target}: cannot run the command: {exc.reason}", Reason.UNEXPECTED)
        return super().describe_error(exc)


def _client_class() -> type[Any]:
    import asyncssh

    class Client(asyncssh.SSHClient):
        """Compares a SHA256 fingerprint (asyncssh takes keys, not fingerprints)
        and notes the key a server presented, for the failure's message."""

        def __init__(self, fingerprint: str | None) -> None:
            self.fingerprint = fingerprint if fingerprint and _FINGERPRINT.match(fingerprint) else None
            self.presented: str | None = None

        def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
            self.presented = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"
            return self.fingerprint is not None and key.get_fingerprint("sha256") == self.fingerprint

    return Client


async def _bounded(stream: Any, limit: int) -> str:
    """Everything the stream sends, the first `limit` bytes kept: a flood costs no memory."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < limit:
            kept += chunk[: limit - len(kept)]
    return kept.decode(errors="replace")


def _exit_code(status: int | None, exit_signal: tuple[str, bool, str, str] | None) -> int:
    """The command type's convention: a negative number for a signal."""
    if exit_signal is not None:
        try:
            return -signal.Signals[f"SIG{exit_signal[0]}"].value
        except KeyError:
            return 255
    return 255 if status is None or status < 0 else status
