"""A real `probed serve`, as a user runs it: with every type configured
(tests/every_type.py) against servers that hang and close at once, SIGTERM
stops it with exit 0 and no traceback; and whatever a driver writes reaches
the user in the chosen log format (json here) or not at all: gRPC's C core,
which writes a raw line per failed TLS handshake, writes nothing unless the
user asks for it. How long the stop takes is measured in bench/, not here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from tests.every_type import AT_PORT, DATAGRAM, LOCAL
from tests.harness import GrpcServer
from tests.servers import free_port, hung_filesystem, poll, silent_listener
from tests.servers_ldap_ssh_memcached import answering_listener
from tests.servers_websocket_udp_icmp import udp_closed_port

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


def serve(tmp_path: Path, checks: dict[str, dict[str, Any]], env: dict[str, str]) -> subprocess.Popen[str]:
    port = free_port()
    config = tmp_path / "probed.yaml"
    config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks}))
    process = subprocess.Popen(
        [sys.executable, "-m", "probed", "serve", "--config", str(config), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    poll(f"http://127.0.0.1:{port}/health/live", lambda status, _: status == 200 or process.poll() is not None)
    assert process.poll() is None, process.communicate()
    return process


def stopped(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """SIGTERM after RUNNING seconds of runs; the exit code and what it wrote."""
    time.sleep(RUNNING)
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None


def own_env(**set_: str) -> dict[str, str]:
    """This environment without a gRPC logging setting of its own, plus `set_`."""
    env = {key: value for key, value in os.environ.items() if key not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    return env | set_


def test_with_every_type_configured_sigterm_exits_0_without_a_traceback(tmp_path: Path) -> None:
    with ExitStack() as stack:
        process = serve(tmp_path, every_type(stack), own_env())
        code, out, err = stopped(process)
    assert "Traceback" not in out + err, out + err
    events = [line["event"] for line in json_lines(out)]
    assert events[-1] == "probed_stopped"
    assert list(json_lines(err)) == [], err
    assert code == 0


def test_a_call_blocked_in_a_thread_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """A disk check on a filesystem that never answers (a dead NFS mount):
    its statvfs blocks in the kernel until the mount goes, which is after
    probed must have exited. Python's exit would wait on that thread."""
    with hung_filesystem(tmp_path / "hung") as mount:
        checks = {"nfs": {"type": "disk", "path": str(mount), "interval": "3s", "timeout": "1s"}}
        process = serve(tmp_path, checks, own_env())
        code, out, err = stopped(process)
    assert [line["event"] for line in json_lines(out)][-1] == "probed_stopped", out
    assert (code, err) == (0, "")


def grpc_tls_to_a_plain_server(stack: ExitStack) -> dict[str, dict[str, Any]]:
    """A gRPC check with TLS against a server that speaks plain HTTP/2: every run's handshake fails."""
    server = GrpcServer()
    server.start()
    stack.callback(server.stop)
    target = {"type": "grpc", "target": f"127.0.0.1:{server.port}", "tls": True}
    return {"grpc": {**target, "interval": "300ms", "timeout": "250ms"}}


def test_a_failed_grpc_tls_handshake_writes_only_json_lines(tmp_path: Path) -> None:
    with ExitStack() as stack:
        code, out, err = stopped(serve(tmp_path, grpc_tls_to_a_plain_server(stack), own_env()))
    lines = [*json_lines(out), *json_lines(err)]
    assert any(line.get("reason") == "tls" for line in lines), out  # the handshakes did fail
    assert code == 0


def test_a_users_own_grpc_verbosity_is_kept(tmp_path: Path) -> None:
    """GRPC_VERBOSITY set by the user is theirs: gRPC's own lines appear, raw as gRPC writes them."""
    with ExitStack() as stack:
        _, _, err = stopped(serve(tmp_path, grpc_tls_to_a_plain_server(stack), own_env(GRPC_VERBOSITY="INFO")))
    assert "Handshake failed" in err
