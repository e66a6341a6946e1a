"""probed probe [URL]: one GET for a container HEALTHCHECK, with the standard library alone.

Docker runs the HEALTHCHECK every interval in every container, so this module
imports nothing of the application (no aiohttp, pydantic, structlog): keep it
that way (tests/test_imports.py guards it). Without a URL it asks the address
`probed serve` listens on: the config's server.listen when a config is given
(reading it needs yaml, and only then), else PROBED_LISTEN, else port 8080.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
DEFAULT_LISTEN = "0.0.0.0:8080"  # the same default as ServerOptions.listen
DEFAULT_PATH = "/health/live"


class ProbeUsageError(Exception):
    """The URL cannot be made: exit 2 with this one line."""


class NotHttp(Exception):
    """The server answered, but not with an HTTP status line."""


def probe_command(url: str | None, timeout: float, config: str | None, environ: Mapping[str, str] = os.environ) -> int:
    try:
        target = url or default_url(config or environ.get("PROBED_CONFIG") or None, environ)
        status = get_status(target, timeout)
    except ProbeUsageError as error:
        print(f"probed: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, NotHttp) as error:
        print(f"probed: {target}: {_describe(error)}", file=sys.stderr)
        return EXIT_FAIL
    if 200 <= status < 400:  # a 3xx is an answer, as for kubelet's httpGet probe: no redirect is followed
        return EXIT_OK
    print(f"probed: {target}: answered {status}", file=sys.stderr)
    return EXIT_FAIL


def get_status(url: str, timeout: float) -> int:
    """The status of one GET, read from the answer's status line. A socket rather than
    urllib or http.client: it imports far less (no email parser, no ssl for http://),
    follows no redirect and asks no proxy (a probe must see the server itself, as
    kubelet's does). The timeout applies to connecting and to each read."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeUsageError(f"probe needs an http:// or https:// URL, got {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ProbeUsageError(f"probe needs a port from 1 to 65535, got {url!r}") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rpartition("@")[2]
    request = f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: probed-probe\r\nConnection: close\r\n\r\n"
    with socket.create_connection((parts.hostname, port), timeout=timeout) as raw:
        if parts.scheme == "https":
            import ssl  # only for https: a tenth of the probe's start-up

            with ssl.create_default_context().wrap_socket(raw, server_hostname=parts.hostname) as tls:
                return _exchange(tls, request.encode())
        return _exchange(raw, request.encode())


def _exchange(sock: socket.socket, request: bytes) -> int:
    sock.sendall(request)
    answer = b""
    while b"\n" not in answer and len(answer) < 1024:
        chunk = sock.recv(1024)
        if not chunk:
            break
        answer += chunk
    version, _, rest = answer.partition(b"\n")[0].partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/") or not code.isdigit():
        raise NotHttp("closed the connection without an HTTP answer" if not answer else "answered, but not in HTTP")
    return int(code)


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)  # ssl errors carry a short reason
    return str(getattr(error, "strerror", None) or reason or error or type(error).__name__)


# -- the default URL: where `probed serve` listens -----------------------------------


def default_url(config_path: str | None, environ: Mapping[str, str]) -> str:
    listen = config_listen(config_path, environ) if config_path else environ.get("PROBED_LISTEN") or DEFAULT_LISTEN
    return f"http://{loopback_host_port(listen)}{DEFAULT_PATH}"


def loopback_host_port(listen: str) -> str:
    """'0.0.0.0:8080' -> '127.0.0.1:8080', '[::]:9000' -> '[::1]:9000': a wildcard bind
    is reached through loopback, a named host as it is."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ProbeUsageError(f"listen must be host:port, got {listen!r}")
    host = host.strip("[]")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def config_listen(path: str, environ: Mapping[str, str]) -> str:
    """server.listen from the config file, with ${VAR} substituted; `probed validate`
    reports a config's mistakes, this only needs the one value."""
    import yaml  # only when a config is given; still far lighter than the config models

    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ProbeUsageError(f"{path}: cannot read the listen address: {_describe(error)}") from None
    server = data.get("server") if isinstance(data, dict) else None
    listen = server.get("listen") if isinstance(server, dict) else None
    if listen is None:
        return DEFAULT_LISTEN
    return _substitute(str(listen), environ, path)


def _substitute(text: str, environ: Mapping[str, str], path: str) -> str:
    from probed.config_env import expand  # the config loader's own rules, with the standard library alone

    result, missing = expand(text, environ)
    if missing:
        raise ProbeUsageError(f"{path}: server.listen: environment variable {missing[0]} is not set")
    return result or DEFAULT_LISTEN
