"""Network failures every client library ends up raising, in plain words.

Each check maps its own driver's exceptions first (authentication, missing
database, ...); what remains is usually an OSError somewhere in the chain,
which this module turns into a reason and a sentence.
"""

from __future__ import annotations

import errno
import socket
import ssl

from probed.model import CheckFailed, Reason


def network_failure(exc: BaseException, target: str) -> CheckFailed | None:
    """A CheckFailed for a refused, unresolved, TLS or timed-out connection
    anywhere in the exception's chain; None when it is none of those."""
    for cause in _chain(exc):
        if isinstance(cause, ConnectionRefusedError) or _refused_in_text(cause):
            return CheckFailed(f"{target}: connection refused", Reason.REFUSED)
        if isinstance(cause, socket.gaierror):
            return CheckFailed(f"{target}: name not resolved ({cause.strerror or cause})", Reason.DNS)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return CheckFailed(f"{target}: certificate rejected: {cause.verify_message or cause}", Reason.TLS)
        if isinstance(cause, ssl.SSLError):
            return CheckFailed(f"{target}: TLS failed: {cause.reason or cause}", Reason.TLS)
        if isinstance(cause, TimeoutError):
            return CheckFailed(f"{target}: timed out", Reason.TIMEOUT)
        if isinstance(cause, ConnectionResetError):
            return CheckFailed(f"{target}: connection reset by the server")
    for cause in _chain(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return CheckFailed(f"{target}: {cause.strerror}")
    return None


def described_failure(exc: BaseException, target: str) -> CheckFailed:
    """network_failure, or else the exception in its own words."""
    return network_failure(exc, target) or CheckFailed(f"{target}: {exception_text(exc)}")


def exception_text(exc: BaseException) -> str:
    """`KeyError: 'x'`, or the bare type name when the exception says nothing."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _refused_in_text(exc: BaseException) -> bool:
    # asyncio reports a name with several addresses (localhost: ::1 and
    # 127.0.0.1) as one OSError("Multiple exceptions: [Errno 111] ...").
    return isinstance(exc, OSError) and exc.errno is None and f"[Errno {errno.ECONNREFUSED}]" in str(exc)
