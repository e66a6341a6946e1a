"""ldap: connect (ldap://, ldaps://, StartTLS), simple bind, optionally search with a minimum of entries.

The check speaks the few LDAPv3 messages it needs itself (RFC 4511's BER:
StartTLS, bind, search, unbind) on asyncio streams. The clients at hand do
I/O the loop cannot bound: ldap3 uses blocking sockets (its asynchronous
strategies are threads), and bonsai opens each connection in a thread of
libldap's while its asyncio connection wakes on every writable event. A
server that hangs would hold those threads; here it holds one socket, which
the run closes when its timeout cancels it. Every request is encoded and the
filter parsed when the check is created.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels
from probed.checks.options import Credentials, TlsOptions
from probed.checks.streams import connection, preview, read_exactly
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

MAX_MESSAGE = 1024 * 1024  # bytes: an entry of a DN only is far smaller; more is not LDAP
_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
_SCOPES = {"base": 0, "one": 1, "sub": 2}
_SUCCESS, _SIZE_LIMIT_EXCEEDED = 0, 4
_AUTH_CODES = {48, 49, 50}  # inappropriateAuthentication, invalidCredentials, insufficientAccessRights
_RESULT_NAMES = {
    1: "operationsError",
    2: "protocolError",
    3: "timeLimitExceeded",
    7: "authMethodNotSupported",
    8: "strongerAuthRequired",
    10: "referral",
    13: "confidentialityRequired",
    32: "noSuchObject",
    34: "invalidDNSyntax",
    48: "inappropriateAuthentication",
    49: "invalidCredentials",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}
# Protocol operations (RFC 4511 section 4.2 on), as BER tags.
_BIND_RESPONSE, _SEARCH_ENTRY, _SEARCH_DONE, _SEARCH_REFERENCE, _EXTENDED_RESPONSE = 0x61, 0x64, 0x65, 0x73, 0x78
_STARTTLS_ID, _BIND_ID, _SEARCH_ID, _UNBIND_ID = 1, 2, 3, 4


class LdapOptions(CheckOptions, Credentials, TlsOptions):
    """username is the bind DN (Spring's spelling); without it the bind is anonymous. The
    TLS options apply to ldaps:// and starttls."""

    type: Literal["ldap"]
    url: str = Field("ldap://localhost", description="ldap://host:port (389) or ldaps://host:port (636)")
    starttls: bool = Field(False, description="upgrade an ldap:// connection with StartTLS before binding")
    server_name: str | None = Field(None, description="name sent (SNI) and verified with TLS (default: the URL's host)")
    search_base: str | None = Field(None, description="DN to search under after the bind (none: bind only)")
    search_scope: Literal["base", "one", "sub"] = Field("sub", description="base, one level or the whole subtree")
    search_filter: str = Field("(objectClass=*)", description="RFC 4515 filter, e.g. (&(objectClass=person)(uid=*))")
    min_entries: int = Field(1, ge=0, description="fail when the search finds fewer entries")
    size_limit: int = Field(1000, ge=1, description="ask for at most this many entries (DNs only)")

    username_required = True

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        parse_url(value)
        return value

    @field_validator("search_filter")
    @classmethod
    def _filter(cls, value: str) -> str:
        encode_filter(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LdapOptions:
        if (self.username is None) != (self.password is None):
            raise ValueError("username (the bind DN) and password (or password_file) go together")
        if self.starttls and parse_url(self.url)[0]:
            raise ValueError("starttls: an ldaps:// URL is TLS from the first byte already")
        searching = {"search_scope", "search_filter", "min_entries", "size_limit"} & self.model_fields_set
        if searching and self.search_base is None:
            raise ValueError(f"{sorted(searching)[0]}: needs search_base")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        if self.search_base is None or self.min_entries == 0:
            return {}
        return {"entries": Levels(fail_below=self.min_entries)}


def parse_url(url: str) -> tuple[bool, str, int]:
    """(TLS from the first byte, host, port) of an ldap:// or ldaps:// URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("ldap", "ldaps"):
        raise ValueError("url must start with ldap:// or ldaps://")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError("url: give scheme, host and port only (the search has options of its own)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("url: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError("url: no host")
    tls = parts.scheme == "ldaps"
    return tls, parts.hostname, port or (636 if tls else 389)


@dataclass(frozen=True)
class Message:
    id: int
    tag: int  # the protocol operation
    body: bytes  # its contents


@dataclass(frozen=True)
class LdapResult:
    code: int
    diagnostic: str

    @property
    def said(self) -> str:
        name = _RESULT_NAMES.get(self.code, f"result code {self.code}")
        return f"{name} ({self.code})" + (f": {self.diagnostic}" if self.diagnostic else "")


class LdapCheck(Check[LdapOptions]):
    options_model = LdapOptions
    component_type = "datastore"
    gauges = (
        Gauge("bind_time", "probed_ldap_bind_seconds", "Time the LDAP server took to answer the bind."),
        Gauge("entries", "probed_ldap_search_entries", "Entries the LDAP search found (at most size_limit)."),
    )

    def __init__(self, name: str, options: LdapOptions) -> None:
        super().__init__(name, options)
        self._tls_first, self._host, self._port = parse_url(options.url)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.target = f"{'ldaps' if self._tls_first else 'ldap'}://{host}:{self._port}"
        self._starttls = _message(_STARTTLS_ID, _tlv(0x77, _tlv(0x80, _STARTTLS_OID)))
        self._bind = _message(_BIND_ID, bind_request(options.username or "", options.password_text() or ""))
        self._search = None
        if options.search_base is not None:
            request = search_request(
                options.search_base,
                options.search_scope,
                options.search_filter,
                options.size_limit,
                max(1, round(options.timeout)),
            )
            self._search = _message(_SEARCH_ID, request)
        self._unbind = _message(_UNBIND_ID, b"\x42\x00")

    def prepare(self) -> None:
        # Built once: loading the system's CAs takes the loop for tens of ms.
        self._tls = self.options.ssl_context() if self._tls_first or self.options.starttls else None

    async def run(self) -> Outcome:
        server_name = self.options.server_name or self._host
        first_tls = self._tls if self._tls_first else None
        async with connection(self._host, self._port, first_tls, server_name) as (reader, writer):
            if self.options.starttls:
                assert self._tls is not None
                writer.write(self._starttls)
                self._require_success(await self._result(reader, _STARTTLS_ID, _EXTENDED_RESPONSE), "StartTLS")
                await writer.start_tls(self._tls, server_hostname=server_name)
            start = time.perf_counter()
            writer.write(self._bind)
            self._require_success(await self._result(reader, _BIND_ID, _BIND_RESPONSE), "bind")
            observed: Observed = {"bind_time": Observation(round(time.perf_counter() - start, 6), "s")}
            if self._search is not None:
                start = time.perf_counter()
                writer.write(self._search)
                entries = await self._search_entries(reader)
                observed = {
                    "entries": Observation(entries),
                    "search_time": Observation(round(time.perf_counter() - start, 6), "s"),
                    **observed,
                }
            writer.write(self._unbind)
            await writer.drain()
        return Outcome(Status.PASS, self._said(observed), observed)

    def _said(self, observed: Observed) -> str:
        who = f"bound as {self.options.username}" if self.options.username else "bound anonymously"
        steps = ["StartTLS", who] if self.options.starttls else [who]
        if "entries" in observed:
            steps.append(f"{observed['entries'].value} entries under {self.options.search_base}")
        return f"{self.target}: {', '.join(steps)}"

    async def _search_entries(self, reader: asyncio.StreamReader) -> int:
        entries = 0
        while True:
            message = await self._read(reader)
            if message.id != _SEARCH_ID:
                raise self._stray(message)
            if message.tag == _SEARCH_ENTRY:
                entries += 1
            elif message.tag == _SEARCH_DONE:
                break
            elif message.tag != _SEARCH_REFERENCE:
                raise self._stray(message)
        result = self._ldap_result(message)
        if result.code == 32:
            raise CheckFailed(f"{self.target}: search base {self.options.search_base} not found", Reason.UNEXPECTED)
        if result.code not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):  # size_limit reached: enough entries
            self._require_success(result, "search")
        return entries

    async def _result(self, reader: asyncio.StreamReader, message_id: int, tag: int) -> LdapResult:
        message = await self._read(reader)
        if message.id != message_id or message.tag != tag:
            raise self._stray(message)
        return self._ldap_result(message)

    def _require_success(self, result: LdapResult, step: str) -> None:
        if result.code == _SUCCESS:
            return
        if step == "bind" and result.code in _AUTH_CODES:
            raise CheckFailed(f"{self.target}: bind failed: {result.said}", Reason.AUTH)
        reason = Reason.TLS if step == "StartTLS" else Reason.UNEXPECTED
        raise CheckFailed(f"{self.target}: {step} failed: {result.said}", reason)

    def _stray(self, message: Message) -> CheckFailed:
        if message.id == 0 and message.tag == _EXTENDED_RESPONSE:  # a notice of disconnection
            said = self._ldap_result(message).said
            return CheckFailed(f"{self.target}: the server is disconnecting: {said}", Reason.UNEXPECTED)
        return CheckFailed(
            f"{self.target}: answered message {message.id} with operation {message.tag:#x}", Reason.UNEXPECTED
        )

    async def _read(self, reader: asyncio.StreamReader) -> Message:
        """One LDAPMessage off the wire, bounded by MAX_MESSAGE."""
        head = await read_exactly(reader, 2, self.target, "instead of an LDAP answer")
        if head[0] != 0x30:
            raise self._garbage(head)
        size = head[1]
        if size & 0x80:
            count = size & 0x7F
            if not 1 <= count <= 4:
                raise self._garbage(head)
            size = int.from_bytes(await read_exactly(reader, count, self.target, "in an LDAP answer"), "big")
        if size > MAX_MESSAGE:
            raise CheckFailed(f"{self.target}: sent an answer of {size} bytes, over {MAX_MESSAGE}", Reason.UNEXPECTED)
        data = await read_exactly(reader, size, self.target, "in the middle of an LDAP answer")
        try:
            id_tag, id_bytes, offset = _read_tlv(data, 0)
            op_tag, body, _ = _read_tlv(data, offset)
        except ValueError:
            raise self._garbage(head + data) from None
        if id_tag != 0x02:
            raise self._garbage(head + data)
        return Message(int.from_bytes(id_bytes, "big", signed=True), op_tag, body)

    def _ldap_result(self, message: Message) -> LdapResult:
        try:
            code_tag, code, offset = _read_tlv(message.body, 0)
            _, _, offset = _read_tlv(message.body, offset)  # matchedDN
            _, diagnostic, _ = _read_tlv(message.body, offset)
        except ValueError:
            raise CheckFailed(f"{self.target}: sent a malformed LDAP result", Reason.UNEXPECTED) from None
        if code_tag != 0x0A:
            raise CheckFailed(f"{self.target}: sent a malformed LDAP result", Reason.UNEXPECTED)
        return LdapResult(int.from_bytes(code, "big"), diagnostic.decode(errors="replace").strip())

    def _garbage(self, received: bytes) -> CheckFailed:
        return CheckFailed(f"{self.target}: answered {preview(received)}, not LDAP", Reason.UNEXPECTED)


# -- BER (X.690) as LDAP uses it: definite lengths, the few types its messages need ------------


def _tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def _integer(value: int, tag: int = 0x02) -> bytes:
    return _tlv(tag, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _octets(value: bytes | str, tag: int = 0x04) -> bytes:
    return _tlv(tag, value.encode() if isinstance(value, str) else value)


def _message(message_id: int, operation: bytes) -> bytes:
    return _tlv(0x30, _integer(message_id) + operation)


def _read_tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, contents, offset after it) of the element at `offset`; ValueError when malformed."""
    if offset + 2 > len(data):
        raise ValueError("truncated")
    tag, size = data[offset], data[offset + 1]
    offset += 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 4 or offset + count > len(data):
            raise ValueError("bad length")
        size = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    if offset + size > len(data):
        raise ValueError("truncated")
    return tag, data[offset : offset + size], offset + size


def bind_request(dn: str, password: str) -> bytes:
    """BindRequest: LDAPv3, simple authentication."""
    return _tlv(0x60, _integer(3) + _octets(dn) + _octets(password, 0x80))


def search_request(base: str, scope: str, filter_text: str, size_limit: int, time_limit: int) -> bytes:
    """SearchRequest for DNs only (the attribute list "1.1"), never dereferencing aliases."""
    return _tlv(
        0x63,
        _octets(base)
        + _integer(_SCOPES[scope], 0x0A)
        + _integer(0, 0x0A)
        + _integer(size_limit)
        + _integer(time_limit)
        + _tlv(0x01, b"\x00")
        + encode_filter(filter_text)
        + _tlv(0x30, _octets("1.1")),
    )


# -- RFC 4515 string filters -> BER ------------------------------------------------------------

_ATTRIBUTE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9;.\-]*$")
_ESCAPED = re.compile(rb"\\([0-9A-Fa-f]{2})")


def encode_filter(text: str) -> bytes:
    """The BER Filter of an RFC 4515 string; ValueError names the problem."""
    encoded, end = _parse_filter(text.strip(), 0)
    if end != len(text.strip()):
        raise ValueError(f"unexpected text after the filter at position {end + 1}")
    return encoded


def _parse_filter(text: str, start: int) -> tuple[bytes, int]:
    if start >= len(text) or text[start] != "(":
        raise ValueError(f"expected '(' at position {start + 1}")
    position = start + 1
    kind = text[position : position + 1]
    if kind in ("&", "|", "!"):
        parts, position = [], position + 1
        while position < len(text) and text[position] == "(":
            part, position = _parse_filter(text, position)
            parts.append(part)
        if position >= len(text) or text[position] != ")":
            raise ValueError(f"expected ')' at position {position + 1}")
        if kind == "!" and len(parts) != 1:
            raise ValueError(f"'!' takes exactly one filter (position {start + 2})")
        if not parts:
            raise ValueError(f"'{kind}' takes at least one filter (position {start + 2})")
        return _tlv({"&": 0xA0, "|": 0xA1, "!": 0xA2}[kind], b"".join(parts)), position + 1
    end = text.find(")", position)
    if end < 0:
        raise ValueError(f"no ')' closes the '(' at position {start + 1}")
    return _item(text[position:end], position), end + 1


def _item(item: str, at: int) -> bytes:
    equals = item.find("=")
    if equals < 1:
        raise ValueError(f"expected attribute=value at position {at + 1}")
    operator = item[equals - 1] if item[equals - 1] in "~<>:" else ""
    attribute, value = item[: equals - len(operator)], item[equals + 1 :]
    if operator == ":":
        return _extensible(attribute, value, at)
    if not _ATTRIBUTE.match(attribute):
        raise ValueError(f"{attribute!r} is not an attribute name (position {at + 1})")
    if operator:
        tag = {"~": 0xA8, ">": 0xA5, "<": 0xA6}[operator]
        return _tlv(tag, _octets(attribute) + _octets(_unescape(value, at)))
    if value == "*":
        return _octets(attribute, 0x87)
    if "*" not in value:
        return _tlv(0xA3, _octets(attribute) + _octets(_unescape(value, at)))
    pieces = value.split("*")
    substrings = b"".join(
        _octets(_unescape(piece, at), 0x80 if i == 0 else 0x82 if i == len(pieces) - 1 else 0x81)
        for i, piece in enumerate(pieces)
        if piece
    )
    return _tlv(0xA4, _octets(attribute) + _tlv(0x30, substrings))


def _extensible(left: str, value: str, at: int) -> bytes:
    """attr[:dn][:rule]:=value, or [:dn]:rule:=value."""
    attribute, *options = left.split(":")
    dn = "dn" in [option.lower() for option in options]
    rules = [option for option in options if option.lower() != "dn"]
    if len(rules) > 1 or (not attribute and not rules) or (attribute and not _ATTRIBUTE.match(attribute)):
        raise ValueError(f"{left + ':='!r} is not an extensible match (position {at + 1})")
    content = _octets(rules[0], 0x81) if rules else b""
    content += _octets(attribute, 0x82) if attribute else b""
    content += _octets(_unescape(value, at), 0x83)
    content += _tlv(0x84, b"\xff") if dn else b""
    return _tlv(0xA9, content)


def _unescape(value: str, at: int) -> bytes:
    if "(" in value or "\\" in _ESCAPED.sub(b"", value.encode()).decode(errors="replace"):
        raise ValueError(f"a value has an unescaped '(' or a bad '\\' escape (position {at + 1}); write \\28, \\5c")
    return _ESCAPED.sub(lambda match: bytes.fromhex(match[1].decode()), value.encode())
