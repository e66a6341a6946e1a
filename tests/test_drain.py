"""Drain on shutdown (server.shutdown_delay): every group but live answers 503
at once, with its reason, in every format and the metrics, while probed goes
on answering; then it stops as without a delay. A real HAProxy in front marks
the backend down before probed exits; a second signal exits at once."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from probed.config import load_config
from probed.daemon import Daemon
from probed.groups import REASON_LINES, GroupReason
from tests.support.apps import app_in_thread, switch_app
from tests.support.checks import NO_LEVELS_YAML
from tests.support.daemon import daemon, passed
from tests.support.net import free_port, http_get, wait_until
from tests.support.probed import Served, serving, write_config
from tests.support.servers import binary

SHUTTING_DOWN = REASON_LINES[GroupReason.DRAINING]
TWO = {"db": {"type": "disk", "path": "/"}, "cache": {"type": "disk", "path": "/tmp"}}


async def test_every_group_but_live_fails_with_its_reason_in_every_format(aiohttp_client: AiohttpClient) -> None:
    d = daemon(TWO, groups={"payments": ["cache"]})
    client = await aiohttp_client(d.app)
    for name in TWO:
        d.store.record(name, passed())
    assert (await client.get("/health/startup")).status == 200  # latched: passed for good, until the drain
    assert b"probed_draining 0.0" in await (await client.get("/metrics")).read()

    d.daemon.drain()
    for group in ("ready", "startup", "payments"):
        answer = await client.get(f"/health/{group}")
        assert answer.status == 503, group
        assert await answer.json(content_type=None) == {"status": "fail", "output": SHUTTING_DOWN}
        verbose = await client.get(f"/health/{group}?verbose")
        lines = (await verbose.text()).splitlines()
        assert verbose.status == 503 and lines[0] == f"[-]{SHUTTING_DOWN}" and lines[-1] == f"{group} check failed"
        assert "[+]cache ok" in lines  # the checks go on and say what they say
    excluded = await client.get("/health/ready?exclude=db&exclude=cache")
    assert excluded.status == 503  # excluding checks does not undo the drain
    live = await client.get("/health/live")
    assert live.status == 200 and await live.json(content_type=None) == {"status": "pass"}
    assert (await client.get("/health/live?verbose")).status == 200

    health = await client.get("/health")
    document = await health.json(content_type=None)
    assert health.status == 503 and document["status"] == "fail" and document["output"] == SHUTTING_DOWN
    assert document["checks"]["db"][0]["status"] == "pass"
    text = await client.get("/health", headers={"Accept": "text/plain"})
    assert text.status == 503 and (await text.text()).splitlines()[-1] == f"overall: fail ({SHUTTING_DOWN})"
    page = await (await client.get("/health", headers={"Accept": "text/html"})).text()
    assert f'id="note"><strong>{SHUTTING_DOWN}</strong>' in page
    assert "ready: fail</a>" in page and "live: pass</a>" in page

    metrics = (await (await client.get("/metrics")).read()).decode()
    for line in (
        "probed_draining 1.0",
        "probed_ready 0.0",
        "probed_live 1.0",
        'probed_group_status{group="payments",probed_group_status="fail"} 1.0',
        'probed_group_status{group="live",probed_group_status="pass"} 1.0',
        'probed_status{probed_status="fail"} 1.0',
    ):
        assert line in metrics.splitlines(), line


async def test_a_reload_while_draining_drains_on(tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    config.write_text("checks:\n  db: {type: disk, path: /}\n")
    d = Daemon(load_config(str(config)), str(config))
    d.drain()
    config.write_text("checks:\n  db: {type: disk, path: /}\n  tmp: {type: disk, path: /tmp}\n")
    assert await d.reload()
    assert "tmp" in d.store.checks
    assert d.store.group_status("ready").reason is GroupReason.DRAINING
    assert d.store.group_status("live").reason is not GroupReason.DRAINING
    await d.stop()


def test_shutdown_delay_is_a_duration_and_may_be_zero(tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    for written, seconds in (("0", 0.0), ("5s", 5.0), ("1500ms", 1.5)):
        config.write_text(f"server: {{shutdown_delay: {written}}}\nchecks: {{db: {{type: disk, path: /}}}}\n")
        assert load_config(str(config)).server.shutdown_delay == seconds
    done = subprocess.run(
        [sys.executable, "-m", "probed", "validate", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    config.write_text("server: {shutdown_delay: -1s}\nchecks: {db: {type: disk, path: /}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "probed", "validate", "--config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "shutdown_delay" in done.stderr, done.stderr


def drain_config(tmp_path: Path, delay: str) -> str:
    """`probed serve` with one check and a shutdown delay."""
    return write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{free_port()}', shutdown_delay: {delay}}}\n"
        f"checks:\n  tmp: {{type: disk, path: '{tmp_path}', interval: 500ms, timeout: 400ms, {NO_LEVELS_YAML}}}\n",
    )


def draining(served: Served) -> bool:
    """Still answering, and failing readiness with the drain's reason while live passes."""
    code, body = served.get("/health/ready")
    return code == 503 and SHUTTING_DOWN in body and served.get("/health/live")[0] == 200


def events_once_ended(served: Served) -> list[dict[str, object]]:
    """Its log lines (all of them JSON), nothing on stderr."""
    assert served.err == "", served.err
    return [json.loads(line) for line in served.out.splitlines()]


def test_sigterm_drains_for_the_delay_then_stops_as_without_one(tmp_path: Path) -> None:
    with serving(drain_config(tmp_path, "2s"), until="ready") as served:
        signalled = time.monotonic()
        served.signal(signal.SIGTERM)
        wait_until(lambda: draining(served), "readiness failing while probed still answers", seconds=10)
        assert served.process.wait(timeout=30) == 0
        assert time.monotonic() - signalled >= 2.0  # a lower bound: it must not stop before the delay
    names = [str(event["event"]) for event in events_once_ended(served)]
    assert names[-4:] == ["signal_received", "probed_draining", "probed_stopping", "probed_stopped"]
    assert http_get(f"{served.base}/health/live")[0] == 0  # nothing listens any more


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_while_draining_exits_at_once(tmp_path: Path, second: signal.Signals) -> None:
    # 1h: the test ends long before it would have passed; exit 1 is the point
    with serving(drain_config(tmp_path, "1h"), until="ready", clean_exit=False) as served:
        served.signal(signal.SIGTERM)
        wait_until(lambda: draining(served), "readiness failing while probed still answers", seconds=10)
        served.signal(second)
        assert served.process.wait(timeout=30) == 1
    events = events_once_ended(served)
    assert [str(event["event"]) for event in events][-2:] == ["probed_draining", "probed_exiting_at_once"]
    assert events[-1]["signal"] == second.name


HAPROXY_CONFIG = """\
global
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s

frontend www
    bind 127.0.0.1:{frontend}
    default_backend app

backend app
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 200ms fall 2 rise 1
    server app1 {app} check addr 127.0.0.1 port {probed}
"""


def server_status(stats_socket: Path) -> str:
    """The status of backend app's server app1, from HAProxy's `show stat` (UP, DOWN, ...)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats_socket))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].removeprefix("# ").split(",")
    for line in lines[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname") == "app" and row.get("svname") == "app1":
            return row["status"]
    raise AssertionError(f"no app/app1 in show stat: {data[:500]!r}")


def test_haproxy_takes_the_backend_out_while_probed_still_answers(tmp_path: Path) -> None:
    app, _ = switch_app()
    short = Path(tempfile.mkdtemp(prefix="haproxy-"))  # a socket's path has a limit of about 100 bytes
    stats = short / "stats.sock"
    haproxy: subprocess.Popen[bytes] | None = None
    try:
        with (
            serving(drain_config(tmp_path, "1h"), until="ready", clean_exit=False) as served,
            app_in_thread(app) as app_url,
        ):
            frontend = free_port()
            config = tmp_path / "haproxy.cfg"
            config.write_text(
                HAPROXY_CONFIG.format(
                    socket=stats, frontend=frontend, app=app_url.removeprefix("http://"), probed=served.port
                )
            )
            haproxy = subprocess.Popen(
                [binary("haproxy", "haproxy"), "-db", "-f", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            site = f"http://127.0.0.1:{frontend}/"
            wait_until(lambda: stats.exists() and server_status(stats) == "UP", "HAProxy marking app1 up")
            assert http_get(site) == (200, "app says hi")

            served.signal(signal.SIGTERM)
            wait_until(lambda: server_status(stats) == "DOWN", "HAProxy marking app1 down")
            assert served.process.poll() is None  # before probed exits
            assert draining(served)  # while it still answers
            assert http_get(site)[0] == 503  # HAProxy sends nothing to the backend any more

            served.signal(signal.SIGTERM)  # the operator is done waiting
            assert served.process.wait(timeout=30) == 1
    finally:
        if haproxy is not None:
            haproxy.send_signal(signal.SIGTERM)
            haproxy.wait(timeout=10)
        shutil.rmtree(short)
