"""A run's own connection for the types that speak their protocol themselves
(ldap, memcached, the ssh banner): opened per run, closed however it ends.

A clean plain close says goodbye (FIN). Anything else must not wait on a peer
that may never answer: a failed exchange is aborted, and so is TLS, whose
polite close waits up to 30 s for the peer's close_notify.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from probed.model import CheckFailed, Reason

MAX_LINE = 64 * 1024  # bytes: a reply line longer than this is not the protocol we speak


@asynccontextmanager
async def connection(
    host: str, port: int, tls: ssl.SSLContext | None = None, server_name: str | None = None
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection for one run; TLS from the first byte with `tls`."""
    reader, writer = await asyncio.open_connection(
        host, port, ssl=tls, server_hostname=(server_name or host) if tls else None, limit=MAX_LINE
    )
    clean = False
    try:
        yield reader, writer
        clean = True
    finally:
        if clean and writer.get_extra_info("ssl_object") is None:
            writer.close()
        else:
            writer.transport.abort()


async def read_line(reader: asyncio.StreamReader, target: str, waiting_for: str) -> bytes:
    """One CRLF-terminated line, without the CRLF. A peer that closes is a
    fast, plain failure (never a timeout); an endless line is not our protocol."""
    try:
        return (await reader.readuntil(b"\r\n"))[:-2]
    except asyncio.IncompleteReadError as exc:
        raise closed(target, waiting_for, exc.partial) from None
    except asyncio.LimitOverrunError:
        raise CheckFailed(f"{target}: sent a line over {MAX_LINE} bytes {waiting_for}", Reason.UNEXPECTED) from None


async def read_exactly(reader: asyncio.StreamReader, size: int, target: str, waiting_for: str) -> bytes:
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise closed(target, waiting_for, exc.partial) from None


def closed(target: str, waiting_for: str, partial: bytes = b"") -> CheckFailed:
    said = f" after {preview(partial)}" if partial else ""
    return CheckFailed(f"{target}: closed the connection{said} {waiting_for}", Reason.UNEXPECTED)


def preview(received: bytes) -> str:
    """The first bytes of an answer, quoted, control characters escaped."""
    shown = repr(received[:80].decode(errors="replace"))
    return shown + ("..." if len(received) > 80 else "")
