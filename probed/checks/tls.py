"""tls: the certificate of a TLS endpoint or of a PEM file: chain, name and expiry.

An endpoint is verified as a client would verify it (chain, name, dates),
optionally after STARTTLS (smtp, postgres). A file (a mounted Kubernetes
secret, a certificate some other process serves) is read again every run,
so a rotated certificate is seen at once.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels
from probed.checks.options import TlsOptions
from probed.checks.threads import OneAtATime
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.x509 import verification

# Lookups and file reads block (a dead DNS server, a hung network mount):
# they run in threads of this pool, one at a time per check, so a check holds
# at most one hung thread. Threads start only when needed; the pool is large
# enough that hung checks leave threads for the others.
_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probed-tls")
_DEFAULT_PORTS = {None: 443, "smtp": 587, "postgres": 5432}
_POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)
_SMTP_LINE_LIMIT = 64 * 1024
# The check keeps its own deadline at 90% of the timeout, so it can say which
# step hung, and a rejection is never hidden by the runner's timeout while
# the certificate is fetched again for its dates.
_OWN_DEADLINE = 0.9  # an SMTP reply longer than this is not an SMTP server


class ExpiryLevels(Levels):
    fail_reason: ClassVar[Reason] = Reason.TLS


class TlsCheckOptions(CheckOptions, TlsOptions):
    """An endpoint (host, port) or a file; the TLS options verify the endpoint."""

    type: Literal["tls"]
    host: str | None = Field(None, description="the endpoint's host name or address (or give file)")
    port: int | None = Field(
        None, ge=1, le=65535, description="default: 443, 587 with starttls: smtp, 5432 with starttls: postgres"
    )
    server_name: str | None = Field(None, description="the name sent (SNI) and verified (default: host)")
    starttls: Literal["smtp", "postgres"] | None = Field(
        None, description="speak this protocol's plain-text start, then upgrade to TLS"
    )
    file: Path | None = Field(None, description="a PEM certificate file to read every run, instead of an endpoint")
    warn_days: float | None = Field(14, ge=0, description="warn when the certificate expires in fewer days")
    fail_days: float | None = Field(None, ge=0, description="fail (reason tls) when it expires in fewer days")

    @model_validator(mode="after")
    def _endpoint_or_file(self) -> TlsCheckOptions:
        if self.host is None and self.file is None:
            raise ValueError("give host (an endpoint) or file (a PEM certificate)")
        if self.host is not None and self.file is not None:
            raise ValueError("file: give host (an endpoint) or file (a PEM certificate), not both")
        if self.file is not None:
            for key in ("port", "starttls", "cert_file"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key}: only for an endpoint (host), not with file")
            if self.ca_file is not None and self.server_name is None:
                raise ValueError("ca_file: with file, verifying needs server_name (the name to verify it for)")
        if self.warn_days is not None and self.fail_days is not None and self.warn_days < self.fail_days:
            raise ValueError(f"warn_days ({self.warn_days:g}) must not be below fail_days ({self.fail_days:g})")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.starttls]

    def implied_levels(self) -> dict[str, Levels]:
        """warn_days / fail_days are levels below on days_left, failing with reason tls."""
        if self.warn_days is None and self.fail_days is None:
            return {}
        return {"days_left": ExpiryLevels(warn_below=self.warn_days, fail_below=self.fail_days)}


class TlsCheck(Check[TlsCheckOptions]):
    options_model = TlsCheckOptions
    component_type = "component"
    requires = ("cryptography.x509",)
    gauges = (
        Gauge(
            "not_after",
            "probed_tls_cert_expiry_timestamp_seconds",
            "When the peer certificate expires (Unix time).",
        ),
    )

    def __init__(self, name: str, options: TlsCheckOptions) -> None:
        super().__init__(name, options)
        if options.file is not None:
            self.target = str(options.file)
        else:
            host = f"[{options.host}]" if ":" in str(options.host) else options.host
            self.target = f"tls://{host}:{options.effective_port}"
        self._lookups = OneAtATime[list[str]](_POOL, f"{self.target}: the previous lookup is still waiting")
        self._reads = OneAtATime["list[x509.Certificate]"](_POOL, f"{self.target}: the previous read is still blocked")

    async def run(self) -> Outcome:
        if self.options.file is not None:
            certificates = await self._reads.call(self._read_file)
            return self._judge(certificates[0], describe_file(certificates))
        leaf, version = await self._handshake()
        return self._judge(leaf, f"{version}, verified" if self.options.tls_verify else version)

    # -- endpoints --------------------------------------------------------------------------

    def prepare(self) -> None:
        if self.options.file is not None:
            return
        self._context = self.options.ssl_context()
        # For the dates of a rejected certificate: verifies nothing, so needs no CAs.
        self._unverified_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._unverified_context.check_hostname = False
        self._unverified_context.verify_mode = ssl.CERT_NONE

    async def _handshake(self) -> tuple[x509.Certificate, str]:
        """Connect, STARTTLS if asked, and complete a handshake; the peer's
        certificate and the TLS version. A rejected certificate is fetched
        again unverified, so the failure still says when it expires."""
        deadline = asyncio.get_running_loop().time() + self.options.timeout * _OWN_DEADLINE
        steps: list[str] = []  # what _fetch is doing: a timeout names the step that hung
        try:
            async with asyncio.timeout_at(deadline):
                return await self._fetch(self._context, steps)
        except TimeoutError:
            raise CheckFailed(f"{self.target}: {steps[-1] if steps else 'connect'} timed out", Reason.TIMEOUT) from None
        except ssl.SSLCertVerificationError as exc:
            sentence = f"{self.target}: certificate rejected: {verify_sentence(exc)}"
            observed: Observed = {}
            try:
                # Within the check's own deadline: the rejection must not turn into a timeout.
                async with asyncio.timeout_at(deadline):
                    leaf, _ = await self._fetch(self._unverified_context, [])
                observed = observe(leaf)
            except Exception:  # the sentence above is the news; the dates are a bonus
                pass
            raise CheckFailed(sentence, Reason.TLS, observed) from None

    async def _fetch(self, context: ssl.SSLContext, steps: list[str]) -> tuple[x509.Certificate, str]:
        from cryptography import x509

        opts = self.options
        host = str(opts.host)
        steps.append("name lookup")
        address = await self._address(host)
        steps.append("connect")
        reader, writer = await asyncio.open_connection(address, opts.effective_port)
        try:
            if opts.starttls is not None:
                steps.append(f"STARTTLS ({opts.starttls})")
                starttls = smtp_starttls if opts.starttls == "smtp" else postgres_starttls
                await starttls(reader, writer, self.target)
            steps.append("TLS handshake")
            await writer.start_tls(context, server_hostname=opts.server_name or host)
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
            if not der:
                raise CheckFailed(f"{self.target}: the server sent no certificate", Reason.TLS)
            return x509.load_der_x509_certificate(der), str(ssl_object.version())
        finally:
            # No goodbye: a TLS close_notify to a peer that never answers would keep the socket.
            writer.transport.abort()

    async def _address(self, host: str) -> str:
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            addresses = await self._lookups.call(_lookup, host, self.options.effective_port)
            return str(addresses[0])

    # -- files --------------------------------------------------------------------------------

    def _read_file(self) -> list[x509.Certificate]:
        from cryptography import x509

        path = Path(str(self.options.file))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CheckFailed(f"{path}: no such file", Reason.UNEXPECTED) from None
        except OSError as exc:
            raise CheckFailed(f"{path}: {exc.strerror or exc}") from None
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CheckFailed(f"{path}: no PEM certificate in it", Reason.TLS) from None
        # A Kubernetes tls.crt holds the leaf, then intermediates: judge the one
        # that expires first (an intermediate can expire before the leaf).
        certificates.sort(key=lambda c: c.not_valid_after_utc)
        if self.options.server_name is not None:
            self._verify_file(certificates, self.options.server_name)
        return certificates

    def _verify_file(self, certificates: list[x509.Certificate], name: str) -> None:
        """With server_name: the file's certificate must be for that name, and
        with ca_file, chain to it as a client for that name would require."""
        from cryptography.x509 import verification as verifying

        leaf = next((c for c in certificates if not _is_ca(c)), certificates[0])
        if not name_matches(leaf, name):
            raise CheckFailed(f"{self.target}: certificate is not valid for {name!r}", Reason.TLS, observe(leaf))
        if self.options.ca_file is None or leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
            return  # an expired leaf: _judge says so more plainly than the verifier
        from cryptography import x509

        roots = x509.load_pem_x509_certificates(Path(self.options.ca_file).read_bytes())
        subject = _subject_for(name)
        verifier = verifying.PolicyBuilder().store(verifying.Store(roots)).build_server_verifier(subject)
        try:
            verifier.verify(leaf, [c for c in certificates if c is not leaf])
        except verifying.VerificationError as exc:
            why = str(exc)
            if "candidates exhausted" in why:  # no path from the leaf to a root in ca_file
                why = f"not issued by a CA in {self.options.ca_file}"
            raise CheckFailed(f"{self.target}: certificate rejected: {why}", Reason.TLS, observe(leaf)) from None

    # -- judging ------------------------------------------------------------------------------

    def _judge(self, certificate: x509.Certificate, how: str) -> Outcome:
        """Dates first (expired, not yet valid: reason tls), then a pass saying
        whose certificate it is; the levels on days_left come after, in the runner."""
        observed = observe(certificate)
        now = datetime.datetime.now(datetime.UTC)
        expires = certificate.not_valid_after_utc
        if expires < now:
            ago = (now - expires).days
            message = f"{self.target}: certificate expired on {expires:%Y-%m-%d} ({ago} days ago)"
            raise CheckFailed(message, Reason.TLS, observed)
        if certificate.not_valid_before_utc > now:
            message = (
                f"{self.target}: certificate not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )
            raise CheckFailed(message, Reason.TLS, observed)
        days = float(observed["days_left"].value)
        said = (
            f"{observed['subject'].value}, by {observed['issuer'].value}, expires {expires:%Y-%m-%d} ({days:.0f} days)"
        )
        return Outcome(Status.PASS, f"{self.target}: {how}; {said}", observed)

    def describe_error(self, exc: Exception) -> CheckFailed:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return CheckFailed(f"{self.target}: certificate rejected: {verify_sentence(exc)}", Reason.TLS)
        return super().describe_error(exc)


# -- STARTTLS -------------------------------------------------------------------------------------


async def smtp_starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> None:
    """Greeting, EHLO, STARTTLS: what an SMTP client says before its handshake."""
    await _smtp_reply(reader, 220, "greeting", target)
    writer.write(b"EHLO probed\r\n")
    extensions = await _smtp_reply(reader, 250, "EHLO", target)
    if not any(line[4:].upper().startswith("STARTTLS") for line in extensions):
        raise CheckFailed(f"{target}: server does not offer STARTTLS", Reason.UNEXPECTED)
    writer.write(b"STARTTLS\r\n")
    await _smtp_reply(reader, 220, "STARTTLS", target)


async def _smtp_reply(reader: asyncio.StreamReader, code: int, step: str, target: str) -> list[str]:
    """The lines of one (multi-line) SMTP reply, which must have `code`."""
    lines: list[str] = []
    read = 0
    while True:
        raw = await reader.readline()
        read += len(raw)
        if not raw or read > _SMTP_LINE_LIMIT:
            raise CheckFailed(f"{target}: server closed the connection during {step}", Reason.UNEXPECTED)
        line = raw.decode(errors="replace").rstrip("\r\n")
        lines.append(line)
        if line[3:4] != "-":  # "250-..." continues, "250 ..." ends
            break
    if not lines[-1][:3] == str(code):
        raise CheckFailed(f"{target}: answered {lines[-1][:80]!r} to {step}, expected {code}", Reason.UNEXPECTED)
    return lines


async def postgres_starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> None:
    """PostgreSQL's SSLRequest: the server answers S (go ahead) or N (no TLS here)."""
    writer.write(_POSTGRES_SSL_REQUEST)
    answer = await reader.read(1)
    if answer == b"N":
        raise CheckFailed(f"{target}: PostgreSQL does not accept TLS here (ssl = off)", Reason.TLS)
    if answer != b"S":
        raise CheckFailed(f"{target}: answered {answer!r} to an SSLRequest: not PostgreSQL?", Reason.UNEXPECTED)


# -- certificates ----------------------------------------------------------------------------------


def observe(certificate: x509.Certificate) -> Observed:
    not_after = certificate.not_valid_after_utc.timestamp()
    return {
        "days_left": Observation(round((not_after - time.time()) / 86400, 2), "days"),
        "not_after": Observation(int(not_after), "timestamp"),
        "subject": Observation(_name(certificate.subject)),
        "issuer": Observation(_name(certificate.issuer)),
    }


def describe_file(certificates: list[x509.Certificate]) -> str:
    count = len(certificates)
    return "1 certificate" if count == 1 else f"{count} certificates, the first to expire"


# OpenSSL's verify codes whose message a reader may not decode at once.
_UNTRUSTED_ISSUER = {2, 19, 20, 21}  # unable to get (local) issuer, self-signed in chain, ...


def verify_sentence(exc: ssl.SSLCertVerificationError) -> str:
    """OpenSSL's verify message, said plainly."""
    message = str(exc.verify_message or exc.reason or exc)
    if message.lower().startswith("hostname mismatch"):
        return message.rstrip(".") + " (wrong name)"
    if exc.verify_code in _UNTRUSTED_ISSUER:
        return f"{message} (the issuer is not a trusted CA; ca_file sets the CAs to trust)"
    return message


def name_matches(certificate: x509.Certificate, name: str) -> bool:
    """Whether the certificate's subjectAltName covers `name` (one-label wildcards)."""
    from cryptography import x509

    try:
        alt_names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(name)
        return address in alt_names.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    wanted = name.lower().rstrip(".")
    for pattern in alt_names.get_values_for_type(x509.DNSName):
        pattern = pattern.lower().rstrip(".")
        if pattern == wanted:
            return True
        if pattern.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _subject_for(name: str) -> verification.Subject:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _is_ca(certificate: x509.Certificate) -> bool:
    from cryptography import x509

    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _name(name: x509.Name) -> str:
    """The common name, else the whole distinguished name."""
    from cryptography.x509.oid import NameOID

    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def _lookup(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
