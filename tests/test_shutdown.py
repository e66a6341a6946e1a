"""A real `probed serve`, as a user runs it: with every type configured
(tests/support/every_type.py) against servers that hang and close at once,
SIGTERM stops it with exit 0 and no traceback, and so does a call blocked in
a thread; and whatever a driver writes reaches the user in the chosen log
format (json here) or not at all: gRPC's C core, which writes a raw line
per failed TLS handshake, writes nothing unless the user asks for it. How
long the stop takes is measured in bench/shutdown.py, not here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from tests.support.every_type import AT_PORT, DATAGRAM, LOCAL
from tests.support.faults import answering_listener, hung_filesystem, silent_listener
from tests.support.net import free_port, udp_closed_port
from tests.support.probed import Served, serving
from tests.support.servers.health_grpc import GrpcServer

RUNNING = 2.0  # seconds of runs before the signal: hung runs are in flight then


def every_type(stack: ExitStack) -> dict[str, dict[str, Any]]:
    """A check of every type; each networked one twice, against a port that
    hangs and one that closes at once."""
    hangs, closes = stack.enter_context(silent_listener()), stack.enter_context(answering_listener(b""))
    checks = {f"{name}-hangs": options(hangs) for name, options in AT_PORT.items()}
    checks |= {f"{name}-closes": options(closes) for name, options in AT_PORT.items()}
    checks |= {name: options(udp_closed_port()) for name, options in DATAGRAM.items()}
    checks |= {name: options() for name, options in LOCAL.items()}
    return {name: {**check, "interval": "3s", "timeout": "2s"} for name, check in checks.items()}


def config(tmp_path: Path, checks: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / "probed.yaml"
    path.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{free_port()}"}, "checks": checks}))
    return path


def stopped(tmp_path: Path, checks: dict[str, dict[str, Any]], **env: str) -> Served:
    """`probed serve --log-format json` on the checks, SIGTERM after RUNNING
    seconds of runs; its exit code must be 0 (serving asserts it). The
    environment has no gRPC logging setting but those in `env`."""
    environ = {key: value for key, value in os.environ.items() if key not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    with serving(config(tmp_path, checks), "--log-format", "json", env=environ | env) as served:
        time.sleep(RUNNING)
    return served


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None


def test_with_every_type_configured_sigterm_exits_0_without_a_traceback(tmp_path: Path) -> None:
    with ExitStack() as stack:
        served = stopped(tmp_path, every_type(stack))
    assert "Traceback" not in served.out + served.err, served.out + served.err
    assert [line["event"] for line in json_lines(served.out)][-1] == "probed_stopped"
    assert served.err == ""


def test_a_call_blocked_in_a_thread_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """A disk check on a filesystem that never answers (a dead NFS mount):
    its statvfs blocks in the kernel until the mount goes, which is after
    probed must have exited. Python's exit would wait on that thread."""
    with hung_filesystem(tmp_path / "hung") as mount:
        served = stopped(tmp_path, {"nfs": {"type": "disk", "path": str(mount), "interval": "3s", "timeout": "1s"}})
    assert [line["event"] for line in json_lines(served.out)][-1] == "probed_stopped", served.out
    assert served.err == ""


def grpc_tls_to_a_plain_server(stack: ExitStack) -> dict[str, dict[str, Any]]:
    """A gRPC check with TLS against a server that speaks plain HTTP/2: every run's handshake fails."""
    server = GrpcServer()
    server.start()
    stack.callback(server.stop)
    target = {"type": "grpc", "target": f"127.0.0.1:{server.port}", "tls": True}
    return {"grpc": {**target, "interval": "300ms", "timeout": "250ms"}}


def test_a_failed_grpc_tls_handshake_writes_only_json_lines(tmp_path: Path) -> None:
    with ExitStack() as stack:
        served = stopped(tmp_path, grpc_tls_to_a_plain_server(stack))
    lines = [*json_lines(served.out), *json_lines(served.err)]
    assert any(line.get("reason") == "tls" for line in lines), served.out  # the handshakes did fail


def test_a_users_own_grpc_verbosity_is_kept(tmp_path: Path) -> None:
    """GRPC_VERBOSITY set by the user is theirs: gRPC's own lines appear, raw as gRPC writes them."""
    with ExitStack() as stack:
        served = stopped(tmp_path, grpc_tls_to_a_plain_server(stack), GRPC_VERBOSITY="INFO")
    assert "Handshake failed" in served.err
