"""Keeping secrets out of everything probed prints: masking and safe display.

A secret reaches the wire in forms probed derives itself: a URL password as
written (percent-encoded) and as sent (decoded), `user:password` base64-encoded
in a Basic auth header. Each form is masked, since a target may echo any of them.

Policy for short secrets: a secret shorter than MIN_MASKED_LENGTH characters is
never masked as a substring of other text (a one-letter password would turn
every such letter into `***`). It is still never shown from the field that
holds it: secret fields and URL passwords are masked by position, not by value.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_MASKED_LENGTH = 4
SENSITIVE_NAME = re.compile(
    r"auth|token|key|secret|cookie|session|password|passphrase|signature|credential", re.IGNORECASE
)


def secret_values(model: BaseModel) -> set[str]:
    """Every secret in a model tree, in every form probed derives from it."""
    found: set[str] = set()
    fields = type(model).model_fields
    for name in fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found |= secret_forms(value.get_secret_value())
        elif isinstance(value, str):
            found |= url_secrets(value)
        elif isinstance(value, BaseModel):
            found |= secret_values(value)
    password = getattr(model, "password", None)
    username = getattr(model, "username", None)
    if "username" in fields and isinstance(password, SecretStr):
        found |= basic_auth_forms(str(username or ""), password.get_secret_value())
    return found


def secret_forms(secret: str) -> set[str]:
    """A secret value and its encodings; for a URL (a DSN), only its secrets:
    mask the password, not the address."""
    if _is_url(secret):
        return url_secrets(secret)
    return {secret, *percent_encodings(secret)}


def header_secrets(value: str) -> set[str]:
    """A credential header's value (`Bearer abc`, `Basic dXNlcjpwdw==`), and
    the credentials after its scheme, which a target may echo alone."""
    scheme, _, credentials = value.strip().partition(" ")
    found = {value, *percent_encodings(value)}
    if credentials.strip() and scheme.isalpha():
        found |= secret_forms(credentials.strip())
    return found


def sensitive_header_secrets(headers: Mapping[str, str]) -> set[str]:
    """The secrets among request headers: the values of those with secret-looking names."""
    found: set[str] = set()
    for name, value in headers.items():
        if SENSITIVE_NAME.search(name):
            found |= header_secrets(value)
    return found


def url_secrets(url: str) -> set[str]:
    """A URL's password as written (percent-encoded) and as sent (decoded), the
    Basic auth header made from its user and password, and the values of query
    parameters with secret-looking names."""
    if "://" not in url:
        return set()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    found: set[str] = set()
    if password:
        found |= {password, unquote(password), *percent_encodings(unquote(password))}
        found |= basic_auth_forms(unquote(parts.username or ""), unquote(password))
    for key, _, value in (pair.partition("=") for pair in parts.query.split("&")):
        if value and SENSITIVE_NAME.search(key):
            found |= {value, unquote(value), *percent_encodings(unquote(value))}
    return found


def percent_encodings(secret: str) -> set[str]:
    """The forms a secret takes in a URL: percent-encoded, and form-encoded."""
    return {quote(secret, safe=""), quote_plus(secret, safe="")} - {secret}


def basic_auth_forms(username: str, password: str) -> set[str]:
    """The base64 `user:password` of an `Authorization: Basic` header, as
    aiohttp (latin-1) and most clients (UTF-8) encode it."""
    forms = set()
    for encoding in ("latin-1", "utf-8"):
        try:
            forms.add(base64.b64encode(f"{username}:{password}".encode(encoding)).decode("ascii"))
        except UnicodeEncodeError:
            continue
    return forms


def display_url(url: str) -> str:
    """The URL as it may be shown: password and secret-looking query values masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc
    if password is not None:
        netloc = netloc.replace(f":{password}@", f":{MASK}@", 1)
    query = "&".join(
        f"{key}={MASK}" if sep and SENSITIVE_NAME.search(key) else f"{key}{sep}{value}"
        for key, sep, value in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def maskable(secrets: Iterable[str]) -> frozenset[str]:
    """The secrets long enough to be masked wherever they appear (see the policy above)."""
    return frozenset(s for s in secrets if len(s) >= MIN_MASKED_LENGTH)


# The config's secrets, for the log lines whose text probed does not write itself
# (logs.py): a finalizer's "Exception ignored in: <repr>", a thread's traceback,
# asyncio's and aiohttp's messages. Longest first, in the forms a JSON line writes them.
_IN_LOGS: tuple[str, ...] = ()
_JSON_AS_IS = re.compile(r"[ !#-\[\]-~]*")  # printable ASCII but the quote and the backslash: as JSON writes it


def mask_in_logs(secrets: Iterable[str]) -> None:
    """Mask these too in what logs.py writes for other code; the ones given
    before stay masked (an object of a retired check may be collected later)."""
    global _IN_LOGS
    known = set(_IN_LOGS)
    new = maskable(secrets) - known
    if not new:  # a reload that rotated nothing: no work on the loop
        return
    # As a JSON line writes one with a quote, a backslash, a control character or a non-ASCII letter.
    new |= {json.dumps(secret)[1:-1] for secret in new if not _JSON_AS_IS.fullmatch(secret)}
    _IN_LOGS = tuple(sorted(known | new, key=len, reverse=True))


def redact_logged(text: str) -> str:
    """`text` with every secret given to mask_in_logs masked."""
    for secret in _IN_LOGS:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every secret in a message, longest first so no fragment survives."""
    for secret in sorted(maskable(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _is_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return bool(parts.scheme) and "://" in value and bool(parts.hostname)
    except ValueError:
        return False
