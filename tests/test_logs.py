"""Logs under fire: every line in the chosen format, a repeating error rate-limited."""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import pytest
import structlog

from probed.logs import LogFormat, RepeatLimiter, configure_logging
from probed.secrets import mask_in_logs
from tests.support.net import free_port, wait_until
from tests.support.plugins import leaking_finalizer_type
from tests.support.probed import serving, write_config

# Enough to start and serve (12 open at rest), too few for either hand's share of the
# connection cap (at least 8 each), whichever takes the clients: accept must fail.
FD_LIMIT = 18


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeating_line_is_let_through_once_per_window_with_a_count() -> None:
    clock = FakeClock()
    limiter = RepeatLimiter(window=10, clock=clock)
    assert limiter.admit("accept failed") == 0
    assert [limiter.admit("accept failed") for _ in range(1000)] == [None] * 1000
    assert limiter.admit("another error") == 0  # a different line is not held back
    clock.now = 10.0
    assert limiter.admit("accept failed") == 1000  # the next one says how many were dropped
    assert limiter.admit("accept failed") is None


def test_standard_library_lines_are_json_too() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logging.getLogger("asyncio").exception("socket.accept() out of system resource")
    structlog.get_logger("probed").info("probed_started", checks=1)
    [stdlib, own] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert stdlib["logger"] == "asyncio" and stdlib["level"] == "error"
    assert "Too many open files" in stdlib["exception"]
    assert own["event"] == "probed_started"


def test_an_uncaught_exception_in_a_thread_is_one_json_line() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    def broken() -> None:
        raise RuntimeError("worker broke")

    worker = threading.Thread(target=broken, name="worker")
    worker.start()
    worker.join()
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"] == "uncaught exception in thread worker"
    assert "RuntimeError: worker broke" in entry["exception"]


def test_an_exception_ignored_in_a_finalizer_is_one_json_line() -> None:
    """What Python would print raw as "Exception ignored in ..." (a driver's
    __del__ that raises, often at exit) is a line in the format."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)

    class Leaky:
        def __del__(self) -> None:
            raise RuntimeError("closed twice")

    Leaky()  # collected at once: CPython reports the error to sys.unraisablehook
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["event"].startswith("Exception ignored in: <function")
    assert entry["logger"] == "probed.unraisable" and entry["level"] == "error"
    assert "RuntimeError: closed twice" in entry["exception"]


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_secret_quoted_by_other_codes_line_is_masked(log_format: LogFormat) -> None:
    """A finalizer's object repr and error, a thread's traceback: text probed did
    not write, masked with the config's secrets (a quote in one is escaped in JSON)."""
    stream = io.StringIO()
    configure_logging(log_format, "info", stream)
    password, token = 'pw-"quoted"-5e1f', "token-logs-8a2c"
    mask_in_logs({password, token})

    class Connection:
        def __repr__(self) -> str:
            return f"<Connection postgresql://probe:{password}@db/app>"

        def __del__(self) -> None:
            raise RuntimeError(f"closing with Bearer {token} failed")

    Connection()  # "Exception ignored in: <function Connection.__del__ ...>", the error quoting the token
    # C code reports the object itself (a file, a generator, a driver's handle): its repr is in the line.
    error = RuntimeError("close failed")
    sys.unraisablehook(UnraisableArgs(RuntimeError, error, None, None, Connection()))  # type: ignore[arg-type]
    worker = threading.Thread(target=_raise, args=(f"Bearer {token}",), name="worker")
    worker.start()
    worker.join()
    structlog.get_logger("probed").error("scheduler_task_died", error=repr(RuntimeError(token)))
    text = stream.getvalue()
    assert "closing with Bearer *** failed" in text and "Connection postgresql://probe:***@db/app" in text
    assert password not in text and json.dumps(password)[1:-1] not in text and token not in text


def _raise(message: str) -> None:
    raise RuntimeError(message)


class UnraisableArgs(NamedTuple):
    """What sys.unraisablehook is given (sys.UnraisableHookArgs cannot be made from Python)."""

    exc_type: type[BaseException]
    exc_value: BaseException | None
    exc_traceback: TracebackType | None
    err_msg: str | None
    object: object


def test_a_finalizer_quoting_a_dsn_in_serve_logs_it_masked(tmp_path: Path) -> None:
    site = leaking_finalizer_type(tmp_path)
    password = "finalizer-secret-71d3"
    config = write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{free_port()}'}}\n"
        f"checks:\n  db: {{type: leaky, dsn: 'postgresql://probe:{password}@db.example/app', interval: 1s}}\n",
    )
    with serving(config, "--log-format", "json", env={"PYTHONPATH": str(site)}) as served:
        wait_until(lambda: any(e.get("logger") == "probed.unraisable" for e in served.events()), "the finalizer's line")
    line = next(e for e in served.events() if e.get("logger") == "probed.unraisable")
    assert "RuntimeError: closing postgresql://probe:***@db.example/app failed" in line["exception"]
    assert password not in served.out + served.err


def _raw_request(port: int, head: bytes) -> bytes:
    """What the server answers to these request bytes, to its closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_request_that_cannot_be_parsed_is_a_4xx_and_one_line_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, f"server: {{listen: '127.0.0.1:{port}'}}\nchecks:\n  tmp: {{type: disk, path: /}}\n"
    )
    secret = "oversized-bearer-6c0d"
    requests = {
        "huge header": b"GET /health/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + secret.encode() * 1000,
        "a bad header name": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX nnnnnnnn: v",
        "too many headers": b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
        + b"\r\n".join(b"X-%d: v" % i for i in range(200)),
    }
    with serving(config, "--log-format", "json") as served:
        for name, head in requests.items():
            answer = _raw_request(port, head + b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.") and answer.split()[1] == b"400", (name, answer[:200])
        assert served.get("/health/live")[0] == 200  # and probed answers on
        wait_until(lambda: len(served.events("request_rejected")) == 3, "a line per rejected request")
    rejected = served.events("request_rejected")
    assert [(e["level"], e["client"], e["status"]) for e in rejected] == [("warning", "127.0.0.1", 400)] * 3
    # One line each; the same error again within 10 s would be held back (and counted), as any repeated line.
    assert [e["error"] for e in rejected] == [
        "a request line or header longer than 8190 bytes",
        "Invalid header token",
        "Too many headers received",
    ]
    assert not any("exception" in e for e in rejected)
    assert "Traceback" not in served.out + served.err and secret not in served.out and "nnnn" not in served.out


def test_info_lines_are_never_held_back_but_repeated_errors_are() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = structlog.get_logger("probed")
    for _ in range(3):
        log.info("config_reloaded", checks=1)
        log.error("accept_failed", error="Too many open files")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["config_reloaded", "accept_failed", "config_reloaded", "config_reloaded"]


def test_file_descriptors_running_out_do_not_flood_the_log(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, f"server: {{listen: '127.0.0.1:{port}'}}\nchecks:\n  tmp: {{type: disk, path: '{tmp_path}'}}\n"
    )
    clients: list[socket.socket] = []
    with serving(config, "--log-format", "json", nofile=FD_LIMIT) as served:
        for _ in range(200):
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            clients.append(client)
        # Either hand that takes connections may meet it first: the loop (asyncio's line) or the probes' thread.
        wait_until(
            lambda: "out of system resource" in served.out or "probe_lane_accept_failed" in served.out,
            "accept() to fail",
        )
        time.sleep(2)  # asyncio retries accept() every second, the probes' thread every 0.1 s: let it repeat
        for client in clients:
            client.close()
    events = [json.loads(line) for line in (served.out + served.err).splitlines()]  # every line is JSON, asyncio's too
    assert any(e.get("logger") == "asyncio" or e["event"] == "probe_lane_accept_failed" for e in events)
    assert sum(e["event"] == "probe_lane_accept_failed" for e in events) <= 1  # once a minute
    # Unlimited, this was hundreds of lines in these few seconds (6 million in 95 s in production).
    assert len(events) < 20, [e["event"][:80] for e in events]
