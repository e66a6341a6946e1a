"""The heartbeat check: real requests to a `probed serve` subprocess."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from probed.config import ConfigError
from probed.model import Reason, Status
from tests.support.checks import config_from, run_check
from tests.support.net import free_port, poll
from tests.support.probed import Served, serving, write_config

OWN_TOKEN = "beat-own-7f3a9c"
SERVER_TOKEN = "beat-server-2b8e41"
NEW_SERVER_TOKEN = "beat-server-new-5d0c77"
TIMING = "interval: 300ms, timeout: 100ms"
CONFIG = f"""\
server:
  listen: 127.0.0.1:PORT
  heartbeat_token: {SERVER_TOKEN}
checks:
  backup: {{type: heartbeat, ttl: 1h, token: {OWN_TOKEN}, {TIMING}}}
  report: {{type: heartbeat, ttl: 1h, token: {OWN_TOKEN}, {TIMING}}}
  nightly: {{type: heartbeat, ttl: 1h, {TIMING}}}
  cron: {{type: heartbeat, ttl: 1s, token: {OWN_TOKEN}, {TIMING}}}
  quiet: {{type: heartbeat, ttl: 1h, token: {OWN_TOKEN}, {TIMING}}}
  root: {{type: disk, path: /, {TIMING}}}
"""


@dataclass
class Heartbeats:
    """A `probed serve` of heartbeat checks, and what it answered."""

    served: Served
    config: Path
    answers: list[str] = field(default_factory=list)  # every body and header seen, for the leak test

    @property
    def base(self) -> str:
        return self.served.base

    def post(self, name: str, body: bytes = b"", token: str | None = OWN_TOKEN, **headers: str) -> tuple[int, Any]:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", f"/heartbeat/{name}", body, headers)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                status, raw, got = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), error.headers
        self.answers += [raw.decode(), str(got)]
        return status, json.loads(raw) if raw else None

    def check(self, name: str, until: Any) -> dict[str, Any]:
        """Poll /health/checks/{name} until `until(report)`."""
        _, body = poll(f"{self.base}/health/checks/{name}", lambda _, text: until(json.loads(text)["checks"][name][0]))
        self.answers.append(body)
        report: dict[str, Any] = json.loads(body)["checks"][name][0]
        return report


@pytest.fixture(scope="module")
def heartbeats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Heartbeats]:
    config = Path(write_config(tmp_path_factory.mktemp("heartbeat"), CONFIG.replace("PORT", str(free_port()))))
    with serving(config) as served:
        yield Heartbeats(served, config)


def test_before_the_first_heartbeat_the_ttl_counts_from_start(heartbeats: Heartbeats) -> None:
    report = heartbeats.check("quiet", lambda r: r["status"] != "fail")
    assert report["status"] == "pass" and "age" not in report["observed"]  # a pass shows no output


def test_a_heartbeat_on_time_passes(heartbeats: Heartbeats) -> None:
    assert heartbeats.post("backup") == (200, {"check": "backup", "status": "pass"})
    report = heartbeats.check("backup", lambda r: "age" in r.get("observed", {}))
    assert report["status"] == "pass"
    assert report["observed"]["age"]["unit"] == "s" and report["observed"]["age"]["value"] < 3600
    _, metrics = poll(
        f"{heartbeats.base}/metrics", lambda _, text: 'probed_heartbeat_age_seconds{check="backup"' in text
    )
    heartbeats.answers.append(metrics)


def test_a_late_heartbeat_fails_and_the_next_one_recovers(heartbeats: Heartbeats) -> None:
    # ttl 1s: without a heartbeat since start, the check fails.
    # A pending check reads fail too: wait for the verdict of a run.
    late = heartbeats.check("cron", lambda r: r["status"] == "fail" and r["reason"] != "pending")
    assert late["reason"] == "unexpected"
    assert "no heartbeat in the" in late["output"] and "since the check started (ttl 1s)" in late["output"]

    assert heartbeats.post("cron", b'{"status": "pass", "output": "42 rows"}')[0] == 200
    on_time = heartbeats.check("cron", lambda r: r["status"] == "pass")
    assert on_time["observed"]["age"]["value"] < 1

    late_again = heartbeats.check("cron", lambda r: r["status"] == "fail")
    assert late_again["reason"] == "unexpected"
    assert "over the ttl of 1s; the last one said pass: 42 rows" in late_again["output"]


def test_a_failure_report_fails_with_its_output(heartbeats: Heartbeats) -> None:
    body = json.dumps({"status": "fail", "output": f"disk full (token {OWN_TOKEN})"}).encode()
    assert heartbeats.post("report", body, **{"Content-Type": "application/json"}) == (
        200,
        {"check": "report", "status": "fail"},
    )
    report = heartbeats.check("report", lambda r: r["status"] == "fail")
    assert report["reason"] == "error"
    assert "the job reported failure" in report["output"] and report["output"].endswith("disk full (token ***)")

    assert heartbeats.post("report", b'{"status": "warn", "output": "slow"}')[0] == 200
    assert heartbeats.check("report", lambda r: r["status"] == "warn")["output"].endswith(": slow")
    assert heartbeats.post("report")[0] == 200  # an empty body is a pass
    assert heartbeats.check("report", lambda r: r["status"] == "pass")


def test_the_server_wide_token_serves_checks_without_their_own(heartbeats: Heartbeats) -> None:
    assert heartbeats.post("nightly", token=SERVER_TOKEN)[0] == 200
    assert heartbeats.post("nightly", token=OWN_TOKEN)[0] == 401
    # A check's own token replaces the server-wide one.
    assert heartbeats.post("backup", token=SERVER_TOKEN)[0] == 401


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {OWN_TOKEN}x", f"bearer {OWN_TOKEN}", OWN_TOKEN, f"Basic {OWN_TOKEN}", "Bearer "],
)
def test_a_wrong_or_missing_token_is_401(heartbeats: Heartbeats, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    status, body = heartbeats.post("backup", b"", None, **headers)
    assert (status, body) == (401, {"error": "invalid bearer token"})


def test_unknown_names_and_other_checks_are_404(heartbeats: Heartbeats) -> None:
    assert heartbeats.post("nosuch") == (404, {"error": "no heartbeat check of that name"})
    assert heartbeats.post("root", token=SERVER_TOKEN) == (404, {"error": "no heartbeat check of that name"})


def test_a_body_too_large_is_413(heartbeats: Heartbeats) -> None:
    status, body = heartbeats.post("backup", b'{"output": "' + b"x" * 70_000 + b'"}')
    assert status == 413 and "error" in body
    status, _ = heartbeats.post("backup", b"x" * 2_000_000)
    assert status == 413


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "the body must be empty or a JSON object"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b'{"status": "ok"}', 'status must be "pass", "warn" or "fail"'),
        (b'{"output": 3}', "output must be a string"),
        (b'{"status": "pass", "token": "x"}', "unknown key 'token' (expected status, output)"),
        (b"\xff\xfe", "the body must be empty or a JSON object"),
    ],
)
def test_a_bad_body_is_400(heartbeats: Heartbeats, body: bytes, problem: str) -> None:
    status, answer = heartbeats.post("backup", body)
    assert status == 400 and problem in answer["error"]


def test_other_methods_are_405(heartbeats: Heartbeats) -> None:
    for method in ("GET", "PUT", "DELETE"):
        request = urllib.request.Request(f"{heartbeats.base}/heartbeat/backup", method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 405 and caught.value.headers["Allow"] == "POST"
        assert json.loads(caught.value.read())["error"]


def test_heartbeats_survive_a_config_reload(heartbeats: Heartbeats) -> None:
    assert heartbeats.post("backup", b'{"output": "before reload"}')[0] == 200
    # The first verdict after the post may come from a run before it (no age yet).
    fresh = heartbeats.check("backup", lambda r: "age" in r["observed"] and r["observed"]["age"]["value"] < 1)
    before = fresh["observed"]["age"]["value"]
    heartbeats.config.write_text(
        heartbeats.config.read_text() + f"  added: {{type: heartbeat, ttl: 1h, token: {OWN_TOKEN}, {TIMING}}}\n"
    )
    heartbeats.served.signal(signal.SIGHUP)
    poll(f"{heartbeats.base}/health/checks/added", lambda status, _: status == 200)
    kept = heartbeats.check("backup", lambda r: r["observed"]["age"]["value"] > before)
    assert kept["status"] == "pass"  # the same heartbeat, older: not forgotten, not renewed
    assert heartbeats.post("added")[0] == 200


def test_a_new_server_token_takes_effect_on_reload(heartbeats: Heartbeats) -> None:
    heartbeats.config.write_text(heartbeats.config.read_text().replace(SERVER_TOKEN, NEW_SERVER_TOKEN))
    heartbeats.served.signal(signal.SIGHUP)
    for _ in range(200):  # the reload takes effect between two requests
        if heartbeats.post("nightly", token=NEW_SERVER_TOKEN)[0] == 200:
            break
        time.sleep(0.05)
    assert heartbeats.post("nightly", token=NEW_SERVER_TOKEN)[0] == 200
    assert heartbeats.post("nightly", token=SERVER_TOKEN)[0] == 401


def test_no_token_in_any_answer_or_log_line(heartbeats: Heartbeats) -> None:
    _, health = heartbeats.request("GET", "/health")
    _, metrics = poll(f"{heartbeats.base}/metrics", lambda *_: True)
    seen = "\n".join([*heartbeats.answers, json.dumps(health), metrics, heartbeats.served.out, heartbeats.served.err])
    assert "heartbeat_received" in seen and "heartbeat_refused" in seen  # the log was written
    for token in (OWN_TOKEN, SERVER_TOKEN, NEW_SERVER_TOKEN):
        assert token not in seen


async def test_a_new_check_gives_the_job_one_ttl_of_grace() -> None:
    """What a start of probed (or `probed check`, which receives no heartbeats) sees."""
    result = await run_check({"type": "heartbeat", "ttl": "1h", "token": OWN_TOKEN})
    assert result.status is Status.PASS and result.observed == {}
    assert result.output in (
        "/heartbeat/t: no heartbeat yet, 1h of the first ttl left",
        "/heartbeat/t: no heartbeat yet, 59m59s of the first ttl left",
    )


# -- configuration ----------------------------------------------------------------------------


async def test_without_any_token_the_check_fails_at_once() -> None:
    result = await run_check({"type": "heartbeat", "ttl": "1h", "token": "${UNSET_TOKEN:-}"})
    assert (result.status, result.reason) == (Status.FAIL, Reason.ERROR)
    assert result.output == "/heartbeat/t: no token to accept heartbeats with (set token or server.heartbeat_token)"
    config = config_from({"job": {"type": "heartbeat", "ttl": "1h"}}, server={"heartbeat_token": "server-wide"})
    assert config.checks["job"].token.get_secret_value() == "server-wide"  # type: ignore[attr-defined]


def test_ttl_is_required_and_tokens_come_from_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from({"job": {"type": "heartbeat", "token": "t"}})
    assert "checks.job.ttl: required key is missing" in str(caught.value)
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    config = config_from({"job": {"type": "heartbeat", "ttl": "1h", "token_file": str(token_file)}})
    assert config.checks["job"].token.get_secret_value() == "from-a-file"  # type: ignore[attr-defined]
