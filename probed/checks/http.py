"""http: request a URL and judge the answer: status, body, JSON, latency, certificate."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

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
from probed.checks.levels import Levels
from probed.checks.options import TlsOptions
from probed.fields import ByteSize, ProbedModel, Regex
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import SENSITIVE_NAME, display_url, header_secrets

if TYPE_CHECKING:
    import aiohttp

_STATUS_PATTERN = re.compile(r"^[1-5](xx|\d\d)$")
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Where a run's time went, in order; each is observed as `<phase>_time`.
PHASES = (*CONNECTION_PHASES, "total")
_BODY_EXPECTATIONS = ("expect_body_contains", "expect_body_regex", "expect_json", "observe")
BUILT_IN_OBSERVED = frozenset({"status_code", "cert_not_after", "cert_days_left", *(f"{p}_time" for p in PHASES)})


class BasicAuth(ProbedModel):
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None


class ExpiryLevels(Levels):
    fail_reason: ClassVar[Reason] = Reason.TLS


class HttpOptions(CheckOptions, TlsOptions):
    type: Literal["http"]
    # Only https has a certificate and a handshake, only a host name a lookup.
    optional_levels = frozenset({"cert_days_left", *OPTIONAL_PHASES})
    url: str = Field(description="http:// or https:// URL to request")
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict, description="request headers (values never shown)")
    body: str | None = Field(None, description="request body")
    bearer_token: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer <token>'")
    bearer_token_file: Path | None = None
    basic_auth: BasicAuth | None = None
    expect_status: list[int | str] = Field(["2xx"], description="accepted status codes: 200, or a class like 2xx")
    warn_status: list[int | str] = Field(
        [], description="status codes that mean degraded, not down: warn instead of fail (e.g. [429, 5xx])"
    )
    expect_body_contains: str | None = Field(None, description="the body must contain this text")
    expect_body_regex: Regex | None = Field(None, description="the body must match this regular expression")
    expect_json: dict[str, Any] | None = Field(
        None, description="dotted JSON paths and the values they must equal, e.g. {status: ok, 'checks.0.up': true}"
    )
    observe: dict[str, str] = Field(
        default_factory=dict,
        description="numbers read from the JSON body as observed values: {name: dotted path}, "
        "e.g. {pending: number_of_pending_tasks, heap: 'nodes.0.heap_used'}; judged by levels",
    )
    expect_headers: dict[str, Regex] = Field(
        default_factory=dict,
        description="response headers and the regular expression each must match (names case-insensitive)",
    )
    follow_redirects: bool = True
    max_redirects: int = Field(10, ge=0)
    warn_cert_expiry_days: float | None = Field(14, ge=0, description="warn when the certificate expires sooner")
    fail_cert_expiry_days: float | None = Field(None, ge=0, description="fail when the certificate expires sooner")
    max_body_bytes: ByteSize = Field(1024 * 1024, description="read at most this much of the body")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an absolute http:// or https:// URL")
        return value

    @field_validator("expect_status", "warn_status")
    @classmethod
    def _status_codes(cls, values: list[int | str]) -> list[int | str]:
        wrong = [repr(value) for value in values if not _STATUS_PATTERN.match(str(value))]
        if wrong:
            raise ValueError(f"entries are codes like 200 or classes like 2xx, got {', '.join(wrong)}")
        return values

    @field_validator("observe")
    @classmethod
    def _observed_names(cls, observe: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, path in observe.items():
            if not _NAME_PATTERN.match(name):
                problems.append(f"{name!r} is not a name (letters, digits, _)")
            elif name in BUILT_IN_OBSERVED:
                problems.append(f"{name!r} is a value the check observes itself")
            if not path or "" in path.split("."):
                problems.append(f"{name}: {path!r} is not a dotted path like 'nodes.0.heap'")
        if problems:
            raise ValueError("; ".join(problems))
        return observe

    @field_validator("expect_headers")
    @classmethod
    def _distinct_header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name in headers:
            if name.lower() in seen:
                raise ValueError(f"{seen[name.lower()]} and {name} are the same header (names are case-insensitive)")
            seen[name.lower()] = name
        return headers

    def implied_levels(self) -> dict[str, Levels]:
        """warn_/fail_cert_expiry_days are levels below on cert_days_left."""
        if self.warn_cert_expiry_days is None and self.fail_cert_expiry_days is None:
            return {}
        return {
            "cert_days_left": ExpiryLevels(warn_below=self.warn_cert_expiry_days, fail_below=self.fail_cert_expiry_days)
        }

    @model_validator(mode="after")
    def _body_to_judge(self) -> HttpOptions:
        # A HEAD answer has no body: these would fail every run, so say it once, here.
        judged = [name for name in _BODY_EXPECTATIONS if getattr(self, name)]
        if self.method == "HEAD" and judged:
            raise ValueError(f"method HEAD gets no body, so {', '.join(judged)} cannot be judged (use GET)")
        return self

    @model_validator(mode="after")
    def _one_authorization(self) -> HttpOptions:
        # aiohttp refuses a request with two (ValueError on every run): say so once, here.
        given = [
            label
            for label, present in (
                ("credentials in url", bool(urlsplit(self.url).username)),
                ("an Authorization header", any(name.lower() == "authorization" for name in self.headers)),
                ("bearer_token", self.bearer_token is not None or self.bearer_token_file is not None),
                ("basic_auth", self.basic_auth is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(given)}")
        return self


# One series per `observe:` name; the check names them (exported_gauges).
JSON_VALUE = Gauge("", "probed_http_json_value", "A number an http check read from the JSON body (observe:), by name.")


class HttpCheck(Check[HttpOptions]):
    options_model = HttpOptions
    acyclic = True
    component_type = "component"
    requires = ("aiohttp",)
    gauges = (
        Gauge("status_code", "probed_http_status_code", "HTTP status code of the last answer."),
        Gauge(
            "cert_not_after",
            "probed_tls_cert_expiry_timestamp_seconds",
            "When the peer certificate expires (Unix time).",
        ),
        *phase_gauges(
            "probed_http_phase_seconds",
            "Where an http check's last run spent its time (dns, connect, tls, first_byte, total).",
            PHASES,
        ),
        JSON_VALUE,
    )

    def __init__(self, name: str, options: HttpOptions) -> None:
        super().__init__(name, options)
        self.target = display_url(options.url)
        self._expect_headers = [(name, re.compile(pattern)) for name, pattern in options.expect_headers.items()]
        self._client = FreshClient(certificate_connector())  # its TLS context comes in prepare()

    def prepare(self) -> None:
        # A CA bundle that does not load fails this check's runs, not probed's start or reload.
        self._client = FreshClient(certificate_connector(), ssl=self._ssl())

    def exported_gauges(self) -> tuple[Gauge, ...]:
        named = (
            dataclasses.replace(JSON_VALUE, observed=name, labels=(("name", name),)) for name in self.options.observe
        )
        return (*(gauge for gauge in self.gauges if gauge is not JSON_VALUE), *named)

    def secrets(self) -> set[str]:
        found = super().secrets()
        for name, value in self.options.headers.items():
            if SENSITIVE_NAME.search(name):
                found |= header_secrets(value)
        return found

    async def run(self) -> Outcome:
        opts = self.options
        phases = Phases()
        async with self._client.session(phases).request(
            opts.method,
            opts.url,
            data=opts.body,
            headers=self._headers(),
            allow_redirects=opts.follow_redirects,
            max_redirects=opts.max_redirects,
        ) as response:
            observed: Observed = {"status_code": Observation(response.status, "status")}
            observed |= certificate_expiry(self._client.connector.peer_not_after)
            body = b"" if opts.method == "HEAD" else await read_limited(response, opts.max_body_bytes)
        observed |= phases.observed()
        observed["total_time"] = phases.since_start()
        return self._judge(response, body, observed)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """aiohttp's exceptions -> a plain sentence and a reason."""
        import aiohttp

        if isinstance(exc, aiohttp.TooManyRedirects):
            return CheckFailed(f"{self.target}: too many redirects", Reason.UNEXPECTED)
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return CheckFailed(f"{self.target}: server closed the connection without answering")
        return client_failure(exc, self.target) or super().describe_error(exc)

    async def close(self) -> None:
        await self._client.close()

    def _ssl(self) -> ssl.SSLContext | bool:
        opts = self.options
        if opts.ca_file is None and opts.cert_file is None:
            return opts.tls_verify  # aiohttp's own default context, or no verification
        return opts.ssl_context()

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "probed", **self.options.headers}
        if self.options.bearer_token:
            headers["Authorization"] = f"Bearer {self.options.bearer_token.get_secret_value()}"
        elif self.options.basic_auth:
            auth = self.options.basic_auth
            password = auth.password.get_secret_value() if auth.password else ""
            headers["Authorization"] = basic_authorization(auth.username, password)
        return headers

    def _judge(self, response: aiohttp.ClientResponse, body: bytes, observed: Observed) -> Outcome:
        opts, status = self.options, response.status
        said = f"{opts.method} {self.target} answered {status}"
        if not status_expected(status, opts.expect_status):
            if status_expected(status, opts.warn_status):  # it answered, but badly: degraded
                return Outcome(Status.WARN, f"{said}, degraded (warn_status)", observed)
            expected = ", ".join(str(s) for s in opts.expect_status)
            reason = Reason.AUTH if status in (401, 403, 407) else Reason.UNEXPECTED
            raise CheckFailed(f"{said}, expected {expected}", reason, observed)
        mismatch = self._header_mismatch(response)
        if mismatch:
            raise CheckFailed(f"{said}, {mismatch}", Reason.UNEXPECTED, observed)
        text = body.decode("utf-8", errors="replace")
        if opts.expect_body_contains is not None and opts.expect_body_contains not in text:
            raise CheckFailed(f"{said}, body lacks {opts.expect_body_contains!r}", Reason.UNEXPECTED, observed)
        if opts.expect_body_regex is not None and not re.search(opts.expect_body_regex, text):
            raise CheckFailed(f"{said}, body does not match /{opts.expect_body_regex}/", Reason.UNEXPECTED, observed)
        if opts.observe or opts.expect_json:
            try:
                document = json.loads(text)
            except ValueError:
                raise CheckFailed(f"{said}, body is not JSON", Reason.UNEXPECTED, observed) from None
            mismatch = json_numbers(document, opts.observe, observed) or json_mismatch(document, opts.expect_json or {})
            if mismatch:
                raise CheckFailed(f"{said}, {mismatch}", Reason.UNEXPECTED, observed)
        return Outcome(Status.PASS, said, observed)

    def _header_mismatch(self, response: aiohttp.ClientResponse) -> str | None:
        """A sentence naming the first expected header that is missing or does
        not match, or None. It never shows the value: it may be a secret."""
        for name, pattern in self._expect_headers:
            values = response.headers.getall(name, [])
            if not values:
                return f"header {name} is missing"
            if not any(pattern.search(value) for value in values):
                # A pattern for a credential header may spell the credential: not shown either.
                shown = "the expected pattern" if SENSITIVE_NAME.search(name) else f"/{pattern.pattern}/"
                return f"header {name} does not match {shown}"
        return None


def status_expected(status: int, expected: list[int | str]) -> bool:
    for pattern in expected:
        text = str(pattern)
        if text == str(status) or (text.endswith("xx") and text[0] == str(status)[0]):
            return True
    return False


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def json_numbers(document: Any, paths: dict[str, str], observed: Observed) -> str | None:
    """Add the number at each path to `observed` under its name; a sentence
    naming the first path that is missing or holds no number, or None."""
    for name, path in paths.items():
        found, value = _lookup(document, path)
        if not found:
            return f"JSON field {path} is missing"
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"JSON field {path} is {_short(value)}, not a number"
        if not _finite(value):  # NaN is no JSON for /health's readers; past a float, /metrics cannot say it
            return f"JSON field {path} is {_short(value)}, not a finite number"
        observed[name] = Observation(value)
    return None


def json_mismatch(document: Any, expected: dict[str, Any]) -> str | None:
    """A sentence saying which expected JSON field differs, or None."""
    for path, want in expected.items():
        found, value = _lookup(document, path)
        if not found:
            return f"JSON field {path} is missing"
        if value != want:
            return f"JSON field {path} is {_short(value)}, expected {_short(want)}"
    return None


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


@functools.cache
def certificate_connector() -> Any:
    """The traced connector, noting when the peer certificate of the last
    connection expires. Built on first use: aiohttp loads with the first check.

    aiohttp hands a small response's connection back before the caller sees
    the response, so the certificate must be read as the connection is made.
    """

    class CertificateConnector(traced_connector()):  # type: ignore[misc]
        peer_not_after: float | None = None

        def begin(self, phases: Phases) -> None:
            super().begin(phases)
            self.peer_not_after = None

        async def connect(self, req: aiohttp.ClientRequest, traces: Any, timeout: aiohttp.ClientTimeout) -> Any:
            connection = await super().connect(req, traces, timeout)
            transport = connection.transport
            ssl_object = transport.get_extra_info("ssl_object") if transport else None
            if ssl_object is not None:
                self.peer_not_after = _not_after(ssl_object)
            return connection

    return CertificateConnector


def certificate_expiry(not_after: float | None) -> Observed:
    if not_after is None:
        return {}
    return {
        "cert_not_after": Observation(int(not_after), "timestamp"),
        "cert_days_left": Observation(round((not_after - time.time()) / 86400, 2), "days"),
    }


def _not_after(ssl_object: ssl.SSLObject) -> float | None:
    decoded = ssl_object.getpeercert()
    if decoded and "notAfter" in decoded:
        return float(ssl.cert_time_to_seconds(str(decoded["notAfter"])))
    # Without verification Python decodes nothing; parse the DER certificate.
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    from cryptography import x509

    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
