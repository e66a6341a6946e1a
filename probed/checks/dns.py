"""dns: resolve a name against the system resolver or a given server; judge the rcode and the answers."""

from __future__ import annotations

import ipaddress
import re
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.errors import exception_text, network_failure
from probed.checks.levels import Levels
from probed.fields import Regex, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    import dns.asyncresolver
    import dns.resolver

RecordType = Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "NS"]
Rcode = Literal["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR"]
_NAME_TYPES = {"CNAME", "MX", "SRV", "NS"}  # answers that end in a domain name, compared without case
_SHOWN_ANSWERS = 5


class DnsOptions(CheckOptions):
    type: Literal["dns"]
    name: str = Field(description="the domain name to resolve (absolute: no search domains are appended)")
    record_type: RecordType = Field("A", description="A, AAAA, CNAME, MX, TXT, SRV or NS")
    server: str | None = Field(
        None, description="IP address of the DNS server to ask (default: the system resolver, /etc/resolv.conf)"
    )
    port: int = Field(53, ge=1, le=65535, description="the server's port")
    tcp: bool = Field(False, description="ask over TCP instead of UDP")
    expect_rcode: Rcode = Field(
        "NOERROR", description="the response code the answer must have (NXDOMAIN: must not exist)"
    )
    expect_contains: list[str] = Field(
        default_factory=list, description="each of these must be among the answers (in the form answers are shown)"
    )
    expect_exact: list[str] | None = Field(None, description="the answers must be exactly these, in any order")
    expect_regex: Regex | None = Field(None, description="at least one answer must match this regular expression")
    min_answers: int | None = Field(
        None, ge=0, description="fail with fewer answers (default: 1 when expect_rcode is NOERROR, else 0)"
    )

    @field_validator("server")
    @classmethod
    def _ip_address(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"server must be an IP address, got {value!r}") from None
        return value

    @model_validator(mode="after")
    def _answers_need_noerror(self) -> DnsOptions:
        expects_answers = self.expect_contains or self.expect_exact or self.expect_regex
        if expects_answers and self.expect_rcode != "NOERROR":
            raise ValueError(f"expect_rcode: {self.expect_rcode} has no answers to expect")
        return self

    @property
    def answers_needed(self) -> int:
        if self.min_answers is not None:
            return self.min_answers
        return 1 if self.expect_rcode == "NOERROR" else 0

    def implied_levels(self) -> dict[str, Levels]:
        """min_answers: 2 is `levels: {answer_count: {fail_below: 2}}`."""
        if self.answers_needed == 0:
            return {}
        return {"answer_count": Levels(fail_below=self.answers_needed)}


class DnsCheck(Check[DnsOptions]):
    options_model = DnsOptions
    component_type = "component"
    requires = ("dns.asyncresolver",)
    extra = "dns"
    gauges = (
        Gauge("resolve_time", "probed_dns_resolve_time_seconds", "How long the last resolution took (seconds)."),
        Gauge("answer_count", "probed_dns_answer_count", "Number of records in the last answer."),
    )

    def __init__(self, name: str, options: DnsOptions) -> None:
        super().__init__(name, options)
        where = f"@{_host_port(options.server, options.port)}" if options.server else "(system resolver)"
        self.target = f"{options.name} {options.record_type} {where}"

    def prepare(self) -> None:
        import dns.asyncbackend
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype

        # dnspython imports its asyncio backend and each record type's parser
        # on first use: the first run would pay a few ms of imports.
        dns.asyncbackend.get_backend("asyncio")
        for record_type in {self.options.record_type, "SOA", "CNAME"}:  # SOA: a negative answer's authority
            dns.rdata.get_rdata_class(dns.rdataclass.IN, dns.rdatatype.from_text(record_type))  # type: ignore[no-untyped-call]

    async def run(self) -> Outcome:
        resolver = self._resolver()
        start = time.perf_counter()
        rcode, answers = await self._resolve(resolver)
        observed: Observed = {
            "resolve_time": Observation(round(time.perf_counter() - start, 6), "s"),
            "answer_count": Observation(len(answers), "records"),
            "rcode": Observation(rcode),
        }
        self._judge(rcode, answers, observed)
        shown = ", ".join(answers[:_SHOWN_ANSWERS]) + (", ..." if len(answers) > _SHOWN_ANSWERS else "")
        said = f"{rcode}, {len(answers)} answer{'s' if len(answers) != 1 else ''}" + (f": {shown}" if shown else "")
        return Outcome(Status.PASS, f"{self.target}: {said}", observed)

    def _resolver(self) -> dns.asyncresolver.Resolver:
        """A new resolver each run: the system's reads /etc/resolv.conf again,
        as a new client of the dependency would (a few tens of microseconds)."""
        import dns.asyncresolver

        opts = self.options
        resolver = dns.asyncresolver.Resolver(configure=opts.server is None)
        if opts.server is not None:
            resolver.nameservers = [opts.server]
            resolver.port = opts.port
        # One attempt per server within the check's timeout; the runner's
        # timeout is the backstop, this one closes the socket in time.
        resolver.lifetime = opts.timeout
        resolver.timeout = opts.timeout
        return resolver

    async def _resolve(self, resolver: dns.asyncresolver.Resolver) -> tuple[str, list[str]]:
        """The rcode and the answers as text; an error rcode is a result here, not an exception."""
        import dns.resolver

        opts = self.options
        try:
            answer = await resolver.resolve(opts.name, opts.record_type, tcp=opts.tcp, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return "NXDOMAIN", []
        except dns.resolver.NoNameservers as exc:
            rcode = _error_rcode(exc)
            if rcode is None:
                raise
            return rcode, []
        return "NOERROR", [_answer_text(record, opts.record_type) for record in answer.rrset or ()]

    def _judge(self, rcode: str, answers: list[str], observed: Observed) -> None:
        opts = self.options
        if rcode != opts.expect_rcode:
            # The name did not resolve (a dns failure), or exists where it must not (a wrong answer).
            reason = Reason.UNEXPECTED if rcode == "NOERROR" else Reason.DNS
            raise CheckFailed(f"{self.target}: answered {rcode}, expected {opts.expect_rcode}", reason, observed)
        got = {_normal(answer, opts.record_type) for answer in answers}
        missing = [want for want in opts.expect_contains if _normal(want, opts.record_type) not in got]
        if missing:
            self._wrong(f"{', '.join(missing)} not among the answers", answers, observed)
        if opts.expect_exact is not None and got != {_normal(want, opts.record_type) for want in opts.expect_exact}:
            self._wrong(f"answers are not exactly {', '.join(opts.expect_exact)}", answers, observed)
        if opts.expect_regex is not None and not any(re.search(opts.expect_regex, answer) for answer in answers):
            self._wrong(f"no answer matches {opts.expect_regex!r}", answers, observed)

    def _wrong(self, what: str, answers: list[str], observed: Observed) -> None:
        got = ", ".join(answers[:_SHOWN_ANSWERS]) or "none"
        raise CheckFailed(f"{self.target}: {what} (got {got})", Reason.UNEXPECTED, observed)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """dnspython's exceptions -> a plain sentence and a reason."""
        import dns.exception
        import dns.resolver

        target = self.target
        if isinstance(exc, dns.exception.Timeout):
            waited = float(exc.kwargs.get("timeout") or self.options.timeout)
            return CheckFailed(f"{target}: no answer within {format_duration(waited)}", Reason.TIMEOUT)
        if isinstance(exc, dns.resolver.NoResolverConfiguration):
            return CheckFailed(f"{target}: no nameserver configured in /etc/resolv.conf")
        if isinstance(exc, dns.resolver.NoNameservers):
            cause = _first_failure(exc)
            failure = network_failure(cause, target) if cause is not None else None
            return failure or CheckFailed(f"{target}: no server answered: {exception_text(cause or exc)}")
        if isinstance(exc, dns.exception.DNSException):
            return CheckFailed(f"{target}: {exc}", Reason.DNS)
        return super().describe_error(exc)


def _answer_text(record: Any, record_type: str) -> str:
    """A record as people write it: names without the final dot, TXT strings without quotes."""
    if record_type == "TXT":
        return b"".join(record.strings).decode(errors="replace")
    text = str(record.to_text())
    if record_type in _NAME_TYPES:
        text = text.rstrip(".")
    return text


def _normal(answer: str, record_type: str) -> str:
    if record_type in _NAME_TYPES:
        return answer.rstrip(".").lower()
    if record_type in ("A", "AAAA"):
        try:
            return str(ipaddress.ip_address(answer))  # 2001:DB8::0001 and 2001:db8::1 are one address
        except ValueError:
            return answer
    return answer


def _server_errors(exc: dns.resolver.NoNameservers) -> list[tuple[Any, ...]]:
    return list(exc.kwargs.get("errors") or [])


def _error_rcode(exc: dns.resolver.NoNameservers) -> str | None:
    """The rcode every server answered with (SERVFAIL, REFUSED, ...), or None
    when a server failed otherwise (a network error, not an answer)."""
    # dnspython records (server, tcp, port, error, response); an answer with a
    # bad rcode is recorded with the rcode's name as its error.
    said = [error[3] for error in _server_errors(exc)]
    if not said or not all(isinstance(rcode, str) for rcode in said) or len(set(said)) != 1:
        return None
    return str(said[0])


def _first_failure(exc: dns.resolver.NoNameservers) -> BaseException | None:
    """The first server's own error (refused, reset, ...), when it had one."""
    for error in _server_errors(exc):
        if isinstance(error[3], BaseException):
            return error[3]
    return None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
