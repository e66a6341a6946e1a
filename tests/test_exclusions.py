"""Operator exclusions against a real `probed serve`: a failing check taken out
of readiness turns it 200 and shows why everywhere, until it expires or is
deleted; the API needs its token, is off without one, answers bad requests
with a 4xx, and never writes the token anywhere. A reload (the file watch)
takes a rotated token and keeps the exclusions whose check is still in its group."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from tests.support.checks import NO_LEVELS_YAML
from tests.support.daemon import daemon, failed
from tests.support.net import free_port, http_get, wait_until
from tests.support.probed import Served, serving

TOKEN = "exclusions-token-7f3a9c"
CHECKS = (
    "checks:\n"
    "  db: {{type: disk, path: '{missing}', interval: 500ms, timeout: 400ms}}\n"
    f"  tmp: {{{{type: disk, path: '{{tmp}}', interval: 500ms, timeout: 400ms, {NO_LEVELS_YAML}}}}}\n"
)


class Operator:
    """An operator's view of `probed serve` (tests.support.probed.serving) with a
    failing check (db) and a passing one (tmp): every answer it got kept, to
    look for the token in them."""

    def __init__(self, directory: Path, server: str = "") -> None:
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = directory / "probed.yaml"
        self.server = server
        self.answers: list[str] = []
        self.served: Served | None = None

    def write_config(self, groups: str = "") -> None:
        server = f"server: {{listen: '127.0.0.1:{self.port}', {self.server}}}\n"
        checks = CHECKS.format(missing=self.directory / "missing", tmp=self.directory)
        written = self.config.with_suffix(".new")
        written.write_text(server + groups + checks)
        written.replace(self.config)  # as an editor or the kubelet: the watch sees one change

    def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        """An answer, its JSON decoded (text when it is none)."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        request = urllib.request.Request(f"{self.base}{path}", data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                code, text = int(response.status), response.read().decode()
        except urllib.error.HTTPError as error:
            code, text = int(error.code), error.read().decode()
        self.answers.append(text)
        try:
            return code, json.loads(text)
        except ValueError:
            return code, text

    def get(self, path: str, accept: str = "*/*") -> tuple[int, str]:
        code, text = http_get(f"{self.base}{path}", headers={"Accept": accept})
        self.answers.append(text)
        return code, text

    def ready(self) -> int:
        return self.get("/health/ready")[0]

    def stop(self) -> None:
        """SIGTERM; its whole log can be read then."""
        assert self.served is not None
        assert self.served.stop() == 0

    def events(self, name: str) -> list[dict[str, Any]]:
        assert self.served is not None
        return self.served.events(name)

    def everything(self) -> str:
        """Every answer it got, and what probed wrote."""
        assert self.served is not None
        return "\n".join([*self.answers, self.served.out, self.served.err])


@contextmanager
def operating(directory: Path, server: str = "", groups: str = "") -> Iterator[Operator]:
    operator = Operator(directory, server)
    operator.write_config(groups)
    with serving(operator.config) as served:
        operator.served = served
        served.until("/health/ready?exclude=db", lambda status, _: status == 200)  # tmp passes: db alone fails
        served.until("/health/ready?verbose", lambda _, body: "[-]db failed" in body)  # run, not pending: 503 too
        yield operator
    assert "Traceback" not in served.err, served.err


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    token_file = tmp_path / "exclusions-token"
    token_file.write_text(TOKEN + "\n")
    with operating(tmp_path, f"exclusions_token_file: '{token_file}'") as running:
        yield running
    assert TOKEN not in running.everything()  # in no answer, no log line


def test_an_excluded_failing_check_turns_ready_until_the_exclusion_expires(operator: Operator) -> None:
    assert operator.ready() == 503
    code, made = operator.call(
        "POST", "/health/ready/exclusions", {"check": "db", "duration": "5s", "reason": "failover drill", "by": "alice"}
    )
    assert code == 201, made
    assert {key: made[key] for key in ("group", "check", "reason", "by")} == {
        "group": "ready",
        "check": "db",
        "reason": "failover drill",
        "by": "alice",
    }
    assert made["expires"] > made["created"]
    assert operator.ready() == 200
    code, verbose = operator.get("/health/ready?verbose")
    assert code == 200
    (line,) = [line for line in verbose.splitlines() if line[3:].startswith("db ")]  # one line, not a [-] too
    assert line.startswith(f"[+]db excluded until {made['expires'][:19]}Z (by alice: failover drill): failed:"), line

    # Excluding hides nothing: the check shows as it is, and /health is not a group one excludes from.
    code, health = operator.get("/health")
    document = json.loads(health)
    assert code == 503 and document["checks"]["db"][0]["status"] == "fail"
    assert document["exclusions"] == [made]
    assert "excluded: db from ready until" in operator.get("/health?verbose")[1]
    assert 'id="exclusions"' in operator.get("/health", "text/html")[1]
    metrics = operator.get("/metrics")[1].splitlines()
    assert 'probed_check_up{check="db",type="disk"} 0.0' in metrics
    assert "probed_ready 1.0" in metrics
    assert any(
        line.startswith('probed_exclusion_expiry_timestamp_seconds{check="db",group="ready"} ') for line in metrics
    )
    assert operator.call("GET", "/health/ready/exclusions") == (200, {"group": "ready", "exclusions": [made]})
    assert operator.call("GET", "/health/startup/exclusions") == (200, {"group": "startup", "exclusions": []})

    wait_until(lambda: operator.ready() == 503, "the exclusion expiring by itself")
    assert operator.call("GET", "/health/ready/exclusions") == (200, {"group": "ready", "exclusions": []})
    assert "probed_exclusion_expiry_timestamp_seconds{" not in operator.get("/metrics")[1]
    assert "exclusions" not in json.loads(operator.get("/health")[1])
    operator.stop()
    (excluded,) = operator.events("check_excluded")  # who, what, why, until
    assert {key: excluded[key] for key in ("group", "check", "reason", "by", "client", "until")} == {
        "group": "ready",
        "check": "db",
        "reason": "failover drill",
        "by": "alice",
        "client": "127.0.0.1",
        "until": made["expires"][:19] + "Z",
    }
    assert [event["check"] for event in operator.events("exclusion_expired")] == ["db"]


def test_delete_restores_the_check_at_once_and_a_second_post_replaces(operator: Operator) -> None:
    body = {"check": "db", "duration": "1h", "reason": "vendor\noutage\x00"}
    code, made = operator.call("POST", "/health/ready/exclusions", body)
    assert code == 201 and made["reason"] == "vendor outage "  # one line wherever it shows
    code, again = operator.call("POST", "/health/ready/exclusions", {**body, "duration": 7200, "reason": "longer"})
    assert code == 200 and again["reason"] == "longer"  # one exclusion per check and group
    assert operator.ready() == 200
    assert operator.call("DELETE", "/health/ready/exclusions/db") == (200, again)
    assert operator.ready() == 503  # the very next answer
    assert operator.call("DELETE", "/health/ready/exclusions/db")[0] == 404
    operator.stop()
    assert [event["check"] for event in operator.events("exclusion_removed")] == ["db"]


BAD_REQUESTS = [
    ("/health/nope/exclusions", {"check": "db", "duration": "1m", "reason": "r"}, 404, "no such group"),
    ("/health/ready/exclusions", {"check": "nope", "duration": "1m", "reason": "r"}, 404, "no such check"),
    ("/health/live/exclusions", {"check": "db", "duration": "1m", "reason": "r"}, 404, "no such check"),
    ("/health/ready/exclusions", {"check": "db", "duration": "25h", "reason": "r"}, 422, "at most 24h"),
    ("/health/ready/exclusions", {"check": "db", "duration": 4.9, "reason": "r"}, 422, "at least 5s"),
    ("/health/ready/exclusions", {"check": "db", "duration": "soon", "reason": "r"}, 422, "invalid duration"),
    ("/health/ready/exclusions", {"check": "db", "reason": "r"}, 422, "duration: Field required"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m"}, 422, "reason: Field required"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m", "reason": ""}, 422, "reason: String should"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m", "reason": "  "}, 422, "reason: must not be blank"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m", "reason": "\t\n\u00a0"}, 422, "not be blank"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m", "reason": "x" * 201}, 422, "at most 200"),
    ("/health/ready/exclusions", {"check": "db", "duration": "1m", "reason": "r", "x": 1}, 422, "x: Extra"),
    ("/health/ready/exclusions", ["db"], 422, "body: Input should be an object"),
    ("/health/ready/exclusions", b'{"check": ', 400, "JSON object"),
    ("/health/ready/exclusions", b"x" * 5000, 413, "Request Entity Too Large"),
]


def test_a_bad_request_is_a_4xx_that_says_what_is_wrong(operator: Operator) -> None:
    for path, body, code, says in BAD_REQUESTS:
        answer = operator.call("POST", path, body)
        assert answer[0] == code and says in answer[1]["error"], (body, answer)
    assert operator.ready() == 503


def test_a_wrong_or_missing_token_is_401(operator: Operator) -> None:
    body = {"check": "db", "duration": "1m", "reason": "r"}
    tokens = (None, "", "wrong", TOKEN + "x", TOKEN[:-1])
    for token in tokens:
        for method, path, sent in (
            ("POST", "/health/ready/exclusions", body),
            ("GET", "/health/ready/exclusions", None),
            ("DELETE", "/health/ready/exclusions/db", None),
            ("POST", "/health/nope/exclusions", body),  # not even whether a group exists
        ):
            code, answer = operator.call(method, path, sent, token=token)
            assert (code, answer) == (401, {"error": "invalid bearer token"}), (method, path, token)
    assert operator.ready() == 503
    operator.stop()
    assert len(operator.events("exclusion_refused")) == 4 * len(tokens)


def test_without_a_token_configured_the_api_is_off(tmp_path: Path) -> None:
    with operating(tmp_path) as server:
        body = {"check": "db", "duration": "1m", "reason": "r"}
        for method, path, sent in (
            ("POST", "/health/ready/exclusions", body),
            ("GET", "/health/ready/exclusions", None),
            ("DELETE", "/health/ready/exclusions/db", None),
        ):
            for token in (None, "", "anything"):
                code, answer = server.call(method, path, sent, token=token)
                assert code == 403 and "server.exclusions_token is not set" in answer["error"], (method, token)
        assert server.ready() == 503


def test_a_reload_takes_a_rotated_token_and_keeps_exclusions_of_checks_still_in_their_group(tmp_path: Path) -> None:
    token_file = tmp_path / "exclusions-token"
    token_file.write_text(TOKEN)
    with operating(tmp_path, f"exclusions_token_file: '{token_file}'", "groups: {payments: [db, tmp]}\n") as server:
        for group in ("ready", "payments"):
            body = {"check": "db", "duration": "1h", "reason": "incident 42"}
            assert server.call("POST", f"/health/{group}/exclusions", body)[0] == 201
        assert server.get("/health/payments")[0] == 200

        rotated = "rotated-exclusions-token-5b1e"
        new = token_file.with_suffix(".new")
        new.write_text(rotated)
        os.replace(new, token_file)
        wait_until(lambda: server.call("GET", "/health/ready/exclusions")[0] == 401, "the rotated token in use")
        assert server.call("GET", "/health/ready/exclusions", token=rotated)[0] == 200
        assert server.ready() == 200  # kept: the reload changed no check

        server.write_config("groups: {payments: [tmp]}\n")  # db leaves payments, stays in ready
        wait_until(lambda: server.call("GET", "/health/payments/exclusions", token=rotated)[1]["exclusions"] == [],
                   "the exclusion of a check that left its group ended")  # fmt: skip
        (kept,) = server.call("GET", "/health/ready/exclusions", token=rotated)[1]["exclusions"]
        assert kept["check"] == "db" and kept["reason"] == "incident 42"
        assert server.ready() == 200
        server.stop()
        assert [(e["group"], e["check"]) for e in server.events("exclusion_ended")] == [("payments", "db")]
    assert rotated not in server.everything()


def _post_held(port: int, path: str, body: dict[str, Any]) -> socket.socket:
    """A POST whose headers and all but the last byte of its body are sent: the
    handler has begun and waits for the rest (send it with `_finish`)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + data[:-1])
    return sock


def _finish(sock: socket.socket, last: bytes) -> tuple[int, dict[str, Any]]:
    """Send the body's last byte; the status and JSON body of the answer."""
    with sock:
        sock.sendall(last)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_post_whose_body_arrives_after_a_reload_acts_on_the_groups_the_reload_made(tmp_path: Path) -> None:
    """The group is looked up when the exclusion is made, not when the request
    began: a reload while the body was on its way has removed one group and
    taken db out of another, so neither exclusion may be made."""
    token_file = tmp_path / "exclusions-token"
    token_file.write_text(TOKEN)
    groups = "groups: {payments: [db, tmp], backups: [db]}\n"
    with operating(tmp_path, f"exclusions_token_file: '{token_file}'", groups) as server:
        assert server.served is not None
        body = {"check": "db", "duration": "1h", "reason": "incident 42"}
        last = json.dumps(body).encode()[-1:]
        moved = _post_held(server.port, "/health/payments/exclusions", body)
        removed = _post_held(server.port, "/health/backups/exclusions", body)
        time.sleep(0.5)  # both handlers are waiting for their body's end
        reloads = len(server.events("config_reloaded"))
        server.write_config("groups: {payments: [tmp]}\n")  # backups goes, db leaves payments
        wait_until(lambda: len(server.events("config_reloaded")) > reloads, "the reload")

        assert _finish(moved, last) == (404, {"error": "no such check in this group"})
        assert _finish(removed, last) == (404, {"error": "no such group"})
        assert "exclusions" not in json.loads(server.get("/health")[1])  # none made, none left behind
        assert "probed_exclusion_expiry_timestamp_seconds{" not in server.get("/metrics")[1]
        server.stop()
        assert server.events("check_excluded") == []


async def test_with_details_behind_a_token_the_reason_and_who_are_details(aiohttp_client: AiohttpClient) -> None:
    server = {"details": "token", "token": "details-token", "exclusions_token": TOKEN}
    d = daemon({"db": {"type": "disk", "path": "/"}}, server=server)
    client = await aiohttp_client(d.app)
    d.store.record("db", failed())
    body = {"check": "db", "duration": "1h", "reason": "INC-4711", "by": "alice"}
    made = await client.post("/health/ready/exclusions", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert made.status == 201 and (await made.json())["reason"] == "INC-4711"

    for headers, shown in (({}, False), ({"Authorization": "Bearer details-token"}, True)):
        (entry,) = (await (await client.get("/health", headers=headers)).json(content_type=None))["exclusions"]
        assert ("reason" in entry, "by" in entry) == (shown, shown), headers
        verbose = await (await client.get("/health/ready?verbose", headers=headers)).text()
        assert ("INC-4711" in verbose, "alice" in verbose) == (shown, shown), verbose
        assert "[+]db excluded until " in verbose
        for accept in ("text/plain", "text/html"):
            text = await (await client.get("/health", headers={**headers, "Accept": accept})).text()
            assert "excluded" in text and ("INC-4711" in text) is shown, accept
