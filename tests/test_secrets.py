"""No password, token or secret header in any answer, log line, metric or message."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote_plus

from probed.checks import create_check
from probed.report import FORMATS, SERVED
from probed.secrets import redact
from tests.support.apps import app_in_thread, target_app
from tests.support.checks import config_from, run_check
from tests.support.net import closed_port, http_get, poll
from tests.support.probed import run_probed, serve_config, serving

URL_PASSWORD = "Pa55@w0rd:/%"
URL_PASSWORD_ENCODED = "Pa55%40w0rd%3A%2F%25"
HEADER_TOKEN = "tok-HEADER-123"
FILE_TOKEN = "file-secret-456"
ENV_TOKEN = "env-secret-789"
QUERY_TOKEN = "query-secret-000"
BASIC_PASSWORD = "basic-pass-321"

SECRETS = [
    URL_PASSWORD,
    URL_PASSWORD_ENCODED,
    "Pa55",  # no fragment of the URL password either
    HEADER_TOKEN,
    FILE_TOKEN,
    ENV_TOKEN,
    QUERY_TOKEN,
    BASIC_PASSWORD,
    base64.b64encode(f"probe:{URL_PASSWORD}".encode()).decode(),
    base64.b64encode(f"probe:{BASIC_PASSWORD}".encode()).decode(),
]


def secret_config(tmp_path: Path, target: str) -> str:
    (tmp_path / "token").write_text(FILE_TOKEN + "\n")
    host = target.removeprefix("http://")
    refused = f"127.0.0.1:{closed_port()}"
    return serve_config(
        tmp_path,
        f"""\
  url-password:
    type: http
    url: http://probe:{URL_PASSWORD_ENCODED}@{host}/error
  url-password-refused:
    type: http
    url: http://probe:{URL_PASSWORD_ENCODED}@{refused}/health
  header-token:
    type: http
    url: {target}/error
    headers:
      X-Api-Token: {HEADER_TOKEN}
  file-token:
    type: http
    url: {target}/slow?seconds=5
    timeout: 200ms
    bearer_token_file: {tmp_path / "token"}
  env-token-and-query:
    type: http
    url: http://{refused}/health?api_key={QUERY_TOKEN}&page=1
    bearer_token: ${{API_TOKEN}}
  basic-auth:
    type: http
    url: {target}/auth
    basic_auth:
      username: probe
      password: {BASIC_PASSWORD}
  # Targets that echo the Basic auth header probed derived (base64 of user:password).
  url-password-echoed:
    type: http
    url: http://probe:{URL_PASSWORD_ENCODED}@{host}/echo
    expect_json: {{headers.Authorization: none}}
  basic-auth-echoed:
    type: http
    url: {target}/echo
    basic_auth: {{username: probe, password: {BASIC_PASSWORD}}}
    expect_json: {{headers.Authorization: none}}
""",
    )


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in {where}"


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    with app_in_thread(target_app()) as target:
        config = secret_config(tmp_path, target)
        env = {"API_TOKEN": ENV_TOKEN}

        for output in FORMATS:
            done = run_probed("check", "--config", config, "--output", output, env=env)
            assert done.returncode == 1
            assert "answered 500" in done.stdout and "***" in done.stdout  # the failures are really reported
            assert_no_secret(f"probed check -o {output}", done.stdout + done.stderr)

        with serving(config, "--log-level", "debug", env=env, until="ran") as served:
            base = served.base
            _, body = poll(f"{base}/health", lambda status, _: status == 503)
            report = json.loads(body)
            assert report["checks"]["url-password"][0]["output"].startswith("GET http://probe:***@")
            echoed = report["checks"]["basic-auth-echoed"][0]["output"]
            assert 'JSON field headers.Authorization is "Basic ***"' in echoed
            answers = {path: http_get(base + path)[1] for path in ["/health", "/metrics", "/health/ready"]}
            answers |= {name: http_get(f"{base}/health/checks/{name}")[1] for name in report["checks"]}
            answers |= {
                f"{name} history": http_get(f"{base}/health/checks/{name}/history")[1] for name in report["checks"]
            }
            for form in SERVED:  # every format of the table, the status page included
                accept = {"Accept": form.media_types[0]}
                answers[f"/health as {form.name}"] = http_get(f"{base}/health", headers=accept)[1]
                answers |= {
                    f"{name} as {form.name}": http_get(f"{base}/health/checks/{name}", headers=accept)[1]
                    for name in report["checks"]
                }
            assert "<!DOCTYPE html>" in answers["/health as html"] and "***" in answers["/health as html"]
            for path, body in answers.items():
                assert_no_secret(path, body)
        assert "check_status_changed" in served.out
        assert_no_secret("serve logs", served.out + served.err)


def test_no_secret_in_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"""
checks:
  web:
    type: http
    url: http://probe:{URL_PASSWORD_ENCODED}@127.0.0.1:1/
    method: FETCH
    headers:
      Authorization: ["Bearer {HEADER_TOKEN}"]
    bearer_token: [{ENV_TOKEN}]
    basic_auth: {{username: probe, password: [{BASIC_PASSWORD}]}}
"""
    )
    done = run_probed("validate", "--config", str(path))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 4
    assert_no_secret("validate errors", done.stdout + done.stderr)


async def test_a_dsn_without_password_keeps_its_address_in_messages() -> None:
    port = closed_port()
    result = await run_check({"type": "postgres", "dsn": f"postgres://app@127.0.0.1:{port}/orders"})
    assert result.output == f"postgres://app@127.0.0.1:{port}/orders: connection refused"


async def test_a_dsn_password_is_masked_not_the_address() -> None:
    port = closed_port()
    result = await run_check(
        {"type": "postgres", "dsn": f"postgres://app:{URL_PASSWORD_ENCODED}@127.0.0.1:{port}/orders"}
    )
    assert result.output == f"postgres://app:***@127.0.0.1:{port}/orders: connection refused"


async def test_a_one_letter_secret_does_not_mask_that_letter_everywhere(target: str) -> None:
    result = await run_check(
        {"type": "http", "url": f"{target}/error", "basic_auth": {"username": "probe", "password": "e"}}
    )
    assert result.output == f"GET {target}/error answered 500, expected 2xx"


def test_the_credentials_of_a_configured_authorization_header_are_masked_alone_too() -> None:
    options = {"type": "http", "url": "http://h/", "headers": {"Authorization": f"Bearer {HEADER_TOKEN}"}}
    check = create_check("c", config_from({"c": options}).checks["c"])
    assert redact(f"token {HEADER_TOKEN} rejected", check.masked) == "token *** rejected"


def test_every_derived_form_of_a_secret_is_masked() -> None:
    options = {"type": "http", "url": f"http://probe:{URL_PASSWORD_ENCODED}@h/", "interval": 10}
    check = create_check("c", config_from({"c": options}).checks["c"])
    text = " ".join(
        [
            URL_PASSWORD,
            URL_PASSWORD_ENCODED,
            quote_plus(URL_PASSWORD),
            base64.b64encode(f"probe:{URL_PASSWORD}".encode()).decode(),
        ]
    )
    assert redact(text, check.masked) == " ".join(["***"] * 4)


def test_a_secret_from_a_file_pasted_into_another_field_is_masked_in_errors(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(FILE_TOKEN + "\n")
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"server: {{details: token, token_file: {tmp_path / 'token'}, listen: '{FILE_TOKEN}'}}\n"
        f"checks:\n  d: {{type: disk, path: /, interval: {FILE_TOKEN}}}\n"
    )
    done = run_probed("validate", "--config", str(path))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 2 and done.stderr.count("***") == 2, done.stderr
    assert FILE_TOKEN not in done.stderr
