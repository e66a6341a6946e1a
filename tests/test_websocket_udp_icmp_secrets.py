"""No header token, Basic password or sent login of the websocket check, and no login sent in a
udp check's datagram, in any output of probed check or probed serve, against a real WebSocket
server that says credentials back (with wrong and right secrets) and a real UDP echo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from probed.report import FORMATS
from tests.support.net import free_port
from tests.support.probed import run_probed, serving
from tests.support.servers import PASSWORD
from tests.support.servers.udp_echo import UdpEchoServer
from tests.support.servers.websocket import WS_TOKEN, WebsocketServer

WRONG = "Wr0ng-s3cret-value"
LOGIN = "login probe s3cret-login-line"  # a message sent that holds a login
SECRETS = [PASSWORD, WS_TOKEN, WRONG, LOGIN]


@pytest.fixture(scope="module")
def websocket() -> Iterator[WebsocketServer]:
    server = WebsocketServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def echo() -> Iterator[UdpEchoServer]:
    server = UdpEchoServer()
    server.start()
    yield server
    server.stop()


def checks(websocket: WebsocketServer, echo: UdpEchoServer) -> dict[str, dict[str, Any]]:
    private = {"type": "websocket", "url": f"ws://127.0.0.1:{websocket.port}/private"}
    return {
        "ws-token": {**private, "headers": {"X-Api-Key": WS_TOKEN}, "expect_contains": "hello"},
        "ws-token-echoed": {**private, "headers": {"X-Api-Key": WS_TOKEN}, "expect_contains": "bye"},
        "ws-basic": {**private, "username": "probe", "password": PASSWORD, "expect_contains": "hello"},
        "ws-basic-echoed": {**private, "username": "probe", "password": PASSWORD, "expect_contains": "bye"},
        "ws-wrong": {**private, "headers": {"X-Api-Key": WRONG}},
        "ws-wrong-basic": {**private, "username": "probe", "password": WRONG},
        "ws-url-password": {**private, "url": f"ws://probe:{WRONG}@127.0.0.1:{websocket.port}/private"},
        "ws-login-echoed": {
            "type": "websocket",
            "url": f"ws://127.0.0.1:{websocket.port}/echo",
            "send": LOGIN,
            "expect_contains": "welcome",
        },
        "udp-login": {"type": "udp", "host": "127.0.0.1", "port": echo.port, "send": LOGIN, "expect_contains": "ok"},
    }


EXPECTED = {
    "ws-token": "pass",
    "ws-token-echoed": "fail",
    "ws-basic": "pass",
    "ws-basic-echoed": "fail",
    "ws-wrong": "fail",
    "ws-wrong-basic": "fail",
    "ws-url-password": "fail",
    "ws-login-echoed": "fail",
    "udp-login": "fail",
}


def config(tmp_path: Path, websocket: WebsocketServer, echo: UdpEchoServer, port: int) -> str:
    path = tmp_path / "probed.yaml"
    document = {"server": {"listen": f"127.0.0.1:{port}"}, "defaults": {"interval": "2s", "timeout": "1s"}}
    path.write_text(yaml.safe_dump({**document, "checks": checks(websocket, echo)}))
    return str(path)


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


def test_no_secret_in_check_outputs(tmp_path: Path, websocket: WebsocketServer, echo: UdpEchoServer) -> None:
    path = config(tmp_path, websocket, echo, free_port())
    for output in FORMATS:
        done = run_probed("check", "--config", path, "--output", output)
        assert done.returncode == 1, done.stderr
        assert_no_secret(f"probed check -o {output}", done.stdout + done.stderr)
    report = json.loads(run_probed("check", "--config", path, "--output", "json").stdout)
    assert {name: runs[0]["status"] for name, runs in report["checks"].items()} == EXPECTED, report
    assert "hello, ***" in report["checks"]["ws-token-echoed"][0]["output"]  # the server said it back: masked
    assert report["checks"]["udp-login"][0]["output"].endswith("replied '***', which lacks 'ok'")


def test_no_secret_in_serve_answers_metrics_or_logs(
    tmp_path: Path, websocket: WebsocketServer, echo: UdpEchoServer
) -> None:
    path = config(tmp_path, websocket, echo, free_port())
    with serving(path, "--log-level", "debug", until="ran") as served:
        assert served.get("/health")[0] == 503  # the failures are really there
        answers = served.answers()
        assert "probed_websocket_ping_seconds" in answers["/metrics"]
        assert 'probed_udp_reply_seconds{check="udp-login"' in answers["/metrics"]
        for where, text in answers.items():
            assert_no_secret(where, text)
    assert_no_secret("serve logs", served.out + served.err)
