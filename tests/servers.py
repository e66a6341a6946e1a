"""Real servers and real faults for tests: HTTP(S) targets, silent and closed ports."""

from __future__ import annotations

import asyncio
import ctypes
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A port nothing listens on: connecting to it is refused."""
    return free_port()


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake)
    and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@contextmanager
def hung_filesystem(directory: Path) -> Iterator[Path]:
    """A FUSE filesystem mounted at `directory` whose daemon never answers:
    every stat below it blocks in the kernel, as on a dead NFS server.
    Leaving unmounts it and aborts the connection, which releases the
    blocked threads (ENOTCONN). Needs root and /dev/fuse."""
    import pytest

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fuse = os.open("/dev/fuse", os.O_RDWR)
    except OSError as exc:
        pytest.skip(f"no FUSE here to fake a hung filesystem: /dev/fuse: {exc.strerror}")
    options = f"fd={fuse},rootmode=40000,user_id=0,group_id=0".encode()
    directory.mkdir(parents=True, exist_ok=True)
    if libc.mount(b"probed-hung", str(directory).encode(), b"fuse.probed-hung", 0, options) != 0:
        os.close(fuse)
        pytest.skip(f"cannot mount a FUSE filesystem here: {os.strerror(ctypes.get_errno())}")
    try:
        yield directory  # the INIT request is never answered: every call below waits
    finally:
        libc.umount2(str(directory).encode(), 2)  # MNT_DETACH
        os.close(fuse)  # aborts the connection: blocked calls fail with ENOTCONN


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@dataclass
class Certificate:
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def self_signed_certificate(directory: Path, days: float = 90, name: str = "localhost") -> Certificate:
    """A certificate for localhost and 127.0.0.1, valid from an hour ago for `days`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}-{days}.crt", directory / f"{name}-{days}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_file, key_file)


def issue_certificate(
    directory: Path,
    name: str = "localhost",
    days: float = 90,
    issuer: Certificate | None = None,
    ca: bool = False,
    file_name: str | None = None,
) -> Certificate:
    """A certificate for `name` (and 127.0.0.1) expiring in `days` (negative:
    expired that long ago), signed by `issuer` (a CA made with ca=True), or
    self-signed without one. file_name: where to write it (default from name
    and days), e.g. the same name again to rotate a certificate in place."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    not_before = min(now - datetime.timedelta(hours=1), not_after - datetime.timedelta(days=1))
    signer_key, issuer_name, issuer_public = key, subject, key.public_key()
    if issuer is not None:
        signer = x509.load_pem_x509_certificate(issuer.cert_file.read_bytes())
        signer_key = serialization.load_pem_private_key(issuer.key_file.read_bytes(), None)  # type: ignore[assignment]
        issuer_name, issuer_public = signer.subject, signer.public_key()  # type: ignore[assignment]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False)
    )
    if ca:
        usage = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"],
            False,
        )
        builder = builder.add_extension(
            x509.KeyUsage(**usage, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        names = [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signer_key, hashes.SHA256())
    stem = file_name or f"{name}-{days:g}{'-ca' if ca else ''}"
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_file, key_file)


TOKEN = web.AppKey("token", str)  # the Authorization header /auth accepts


def target_app() -> web.Application:
    """An HTTP dependency with every behaviour the http check must judge."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="database exploded")

    async def status_json(request: web.Request) -> web.Response:
        return web.json_response({"status": request.query.get("status", "ok"), "checks": [{"up": True}]})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "5")))
        return web.Response(text="finally")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def echo(request: web.Request) -> web.Response:
        body = await request.text()
        return web.json_response({"method": request.method, "headers": dict(request.headers), "body": body})

    async def needs_token(request: web.Request) -> web.Response:
        expected = request.app[TOKEN]
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, text="who are you")
        return web.Response(text="welcome")

    app = web.Application()
    app[TOKEN] = ""
    app.router.add_get("/ok", ok)
    app.router.add_get("/error", error)
    app.router.add_get("/json", status_json)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/auth", needs_token)
    return app


@asynccontextmanager
async def serve_app(app: web.Application, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """Run an aiohttp app on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextmanager
def app_in_thread(app: web.Application) -> Iterator[str]:
    """Serve an aiohttp app from a thread of its own, for tests that drive
    probed as a separate process; yields the base URL."""
    import threading

    loop = asyncio.new_event_loop()
    started = threading.Event()
    urls: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        async with serve_app(app) as url:
            urls.append(url)
            started.set()
            await stop.wait()

    stop_event: list[asyncio.Event] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        stop_event.append(asyncio.Event())
        loop.run_until_complete(main(stop_event[0]))
        # Handlers still sleeping (/slow) end with the loop, not after it.
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("test server did not start")
    try:
        yield urls[0]
    finally:
        loop.call_soon_threadsafe(stop_event[0].set)
        thread.join(10)
        loop.close()


def http_get(url: str, timeout: float = 5, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Status and body of a plain GET, 4xx and 5xx included; (0, reason) when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def poll(url: str, until: Callable[[int, str], bool], seconds: float = 20) -> tuple[int, str]:
    """GET a URL every 100 ms until `until(status, body)`; the last answer."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        status, body = http_get(url)
        if until(status, body):
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never got there; last answer {status}: {body[:300]}")
        time.sleep(0.1)


def switch_app() -> tuple[web.Application, dict[str, int]]:
    """A dependency whose /health answers what the test sets: state["status"]."""
    state = {"status": 200}

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=state["status"], text=f"status {state['status']}")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="app says hi")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/", hello)
    return app, state
