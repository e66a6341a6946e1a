"""Logs under fire: every line in the chosen format, a repeating error rate-limited."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from pathlib import Path

import structlog

from probed.logs import RepeatLimiter, configure_logging
from tests.support.net import free_port, wait_until
from tests.support.probed import serving, write_config

FD_LIMIT = 64  # enough to start and serve, far too few for 200 clients


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
        wait_until(lambda: "out of system resource" in served.out, "accept() to fail")
        time.sleep(2)  # asyncio retries accept() every second: let the failure repeat
        for client in clients:
            client.close()
    events = [json.loads(line) for line in (served.out + served.err).splitlines()]  # every line is JSON, asyncio's too
    assert any(e.get("logger") == "asyncio" for e in events)
    # Unlimited, this was hundreds of lines in these few seconds (6 million in 95 s in production).
    assert len(events) < 20, [e["event"][:80] for e in events]
