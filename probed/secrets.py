"""Keeping secrets out of everything probed prints: masking and safe display."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

MASK = "***"
SENSITIVE_NAME = re.compile(r"auth|token|key|secret|cookie|session|password|signature|credential", re.IGNORECASE)


def secret_values(model: BaseModel) -> set[str]:
    """Every SecretStr value in a model tree, and the password of any URL in it."""
    found: set[str] = set()
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.add(value.get_secret_value())
            found |= url_secrets(value.get_secret_value())
        elif isinstance(value, str):
            found |= url_secrets(value)
        elif isinstance(value, BaseModel):
            found |= secret_values(value)
    return found


def url_secrets(url: str) -> set[str]:
    """A URL's password as written (percent-encoded) and as sent (decoded),
    and the values of query parameters with secret-looking names."""
    if "://" not in url:
        return set()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return set()
    found = {password, unquote(password)} if password else set()
    for key, _, value in (pair.partition("=") for pair in parts.query.split("&")):
        if value and SENSITIVE_NAME.search(key):
            found |= {value, unquote(value)}
    return found


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


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask every secret in a message, longest first so no fragment survives."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return text
