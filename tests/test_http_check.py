"""http check against real local servers and real faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from probed.config import ConfigError
from probed.daemon import Daemon
from probed.metrics import render
from probed.model import Reason, Result, Status
from probed.runner import run_once
from probed.web import create_app
from tests.support.apps import TOKEN, serve_app, target_app
from tests.support.certificates import self_signed_certificate
from tests.support.checks import check_from, config_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port


async def test_passes_on_200(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/ok"})
    assert result.status is Status.PASS, result.output
    assert result.observed["status_code"].value == 200
    assert result.output == f"GET {target}/ok answered 200"


async def test_fails_on_500_with_reason_unexpected(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/error"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert result.output == f"GET {target}/error answered 500, expected 2xx"
    assert result.observed["status_code"].value == 500


async def test_expect_status_accepts_listed_codes(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/error", "expect_status": [500, "2xx"]})
    assert result.status is Status.PASS


async def test_body_substring_and_regex(target: str) -> None:
    good = await run_check({"type": "http", "url": f"{target}/ok", "expect_body_contains": "good"})
    bad = await run_check({"type": "http", "url": f"{target}/ok", "expect_body_contains": "healthy"})
    regex_good = await run_check({"type": "http", "url": f"{target}/ok", "expect_body_regex": "^all go+d$"})
    regex_bad = await run_check({"type": "http", "url": f"{target}/ok", "expect_body_regex": "^ok$"})
    assert good.status is Status.PASS and regex_good.status is Status.PASS
    assert bad.status is Status.FAIL and bad.reason is Reason.UNEXPECTED
    assert "body lacks 'healthy'" in bad.output
    assert regex_bad.status is Status.FAIL and "does not match /^ok$/" in regex_bad.output


async def test_json_field_equals(target: str) -> None:
    expect = {"status": "ok", "checks.0.up": True}
    good = await run_check({"type": "http", "url": f"{target}/json", "expect_json": expect})
    wrong = await run_check({"type": "http", "url": f"{target}/json?status=degraded", "expect_json": expect})
    missing = await run_check({"type": "http", "url": f"{target}/json", "expect_json": {"checks.3.up": True}})
    not_json = await run_check({"type": "http", "url": f"{target}/ok", "expect_json": expect})
    assert good.status is Status.PASS, good.output
    assert wrong.reason is Reason.UNEXPECTED and 'JSON field status is "degraded", expected "ok"' in wrong.output
    assert missing.status is Status.FAIL and "JSON field checks.3.up is missing" in missing.output
    assert not_json.status is Status.FAIL and "body is not JSON" in not_json.output


async def test_slow_answer_times_out_within_the_timeout(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/slow?seconds=5", "timeout": "300ms"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.TIMEOUT
    assert result.output == "timed out after 300ms"


async def test_port_that_accepts_and_never_answers_times_out() -> None:
    with silent_listener() as port:
        result = await run_check({"type": "http", "url": f"http://127.0.0.1:{port}/", "timeout": "300ms"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.TIMEOUT


async def test_refused_port() -> None:
    port = closed_port()
    result = await run_check({"type": "http", "url": f"http://127.0.0.1:{port}/health"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.REFUSED
    assert result.output == f"http://127.0.0.1:{port}/health: connection refused"


async def test_unresolvable_name() -> None:
    result = await run_check({"type": "http", "url": "http://no-such-host.invalid/health"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.DNS
    assert result.output.startswith("http://no-such-host.invalid/health: name not resolved")


async def test_redirects_followed_or_not(target: str) -> None:
    followed = await run_check({"type": "http", "url": f"{target}/redirect"})
    not_followed = await run_check({"type": "http", "url": f"{target}/redirect", "follow_redirects": False})
    expected_302 = await run_check(
        {"type": "http", "url": f"{target}/redirect", "follow_redirects": False, "expect_status": [302]}
    )
    endless = await run_check({"type": "http", "url": f"{target}/loop", "max_redirects": 3})
    assert followed.status is Status.PASS and followed.observed["status_code"].value == 200
    assert not_followed.status is Status.FAIL and "answered 302" in not_followed.output
    assert expected_302.status is Status.PASS
    assert endless.status is Status.FAIL and endless.reason is Reason.UNEXPECTED


async def test_method_headers_and_body_are_sent(target: str) -> None:
    result = await run_check(
        {
            "type": "http",
            "url": f"{target}/echo",
            "method": "POST",
            "headers": {"X-Probe": "yes"},
            "body": "ping",
            "expect_json": {"method": "POST", "headers.X-Probe": "yes", "body": "ping"},
        }
    )
    assert result.status is Status.PASS, result.output


async def test_bearer_token_from_file_is_sent(tmp_path: Path) -> None:
    app = target_app()
    app[TOKEN] = "Bearer tok-from-file"
    (tmp_path / "token").write_text("tok-from-file\n")
    async with serve_app(app) as url:
        good = await run_check({"type": "http", "url": f"{url}/auth", "bearer_token_file": str(tmp_path / "token")})
        bad = await run_check({"type": "http", "url": f"{url}/auth", "bearer_token": "wrong"})
    assert good.status is Status.PASS, good.output
    assert bad.status is Status.FAIL and "answered 401" in bad.output
    assert bad.reason is Reason.AUTH


async def test_latency_levels(target: str) -> None:
    warn = await run_check({"type": "http", "url": f"{target}/slow?seconds=0.2", "warn_latency": "50ms"})
    fail = await run_check({"type": "http", "url": f"{target}/slow?seconds=0.2", "fail_latency": "50ms"})
    assert warn.status is Status.WARN and "over warn_latency 50ms" in warn.output
    assert fail.status is Status.FAIL and fail.reason is Reason.UNEXPECTED
    assert "over fail_latency 50ms" in fail.output


async def test_head_request(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/ok", "method": "HEAD"})
    assert result.status is Status.PASS


async def test_self_signed_certificate_rejected_when_verifying(tmp_path: Path) -> None:
    cert = self_signed_certificate(tmp_path)
    async with serve_app(target_app(), cert.server_context()) as url:
        result = await run_check({"type": "http", "url": f"{url}/ok"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.TLS
    assert "certificate rejected" in result.output


async def test_self_signed_certificate_accepted_without_verification(tmp_path: Path) -> None:
    cert = self_signed_certificate(tmp_path, days=90)
    async with serve_app(target_app(), cert.server_context()) as url:
        result = await run_check({"type": "http", "url": f"{url}/ok", "tls_verify": False})
    assert result.status is Status.PASS, result.output
    days_left = float(result.observed["cert_days_left"].value)
    assert 89 < days_left <= 90
    assert abs(float(result.observed["cert_not_after"].value) - (time.time() + 90 * 86400)) < 3600


async def test_custom_ca_file_verifies(tmp_path: Path) -> None:
    cert = self_signed_certificate(tmp_path)
    async with serve_app(target_app(), cert.server_context()) as url:
        result = await run_check({"type": "http", "url": f"{url}/ok", "ca_file": str(cert.cert_file)})
    assert result.status is Status.PASS, result.output
    assert "cert_not_after" in result.observed


async def test_certificate_near_expiry_warns_then_fails(tmp_path: Path) -> None:
    cert = self_signed_certificate(tmp_path, days=5)
    async with serve_app(target_app(), cert.server_context()) as url:
        options = {"type": "http", "url": f"{url}/ok", "ca_file": str(cert.cert_file)}
        warned = await run_check(options)
        failed = await run_check({**options, "fail_cert_expiry_days": 7})
        quiet = await run_check({**options, "warn_cert_expiry_days": 2})
    assert warned.status is Status.WARN
    assert "cert_days_left is 5 days, below the warn level of 14 days" in warned.output
    assert failed.status is Status.FAIL and failed.reason is Reason.TLS
    assert quiet.status is Status.PASS


async def test_password_in_url_is_used_and_masked(target: str) -> None:
    app = target_app()
    app[TOKEN] = "Basic dXNlcjpwQHNzOi8lMjB3b3Jk"  # user:p@ss:/%20word
    async with serve_app(app) as url:
        host = url.removeprefix("http://")
        result = await run_check({"type": "http", "url": f"http://user:p%40ss%3A%2F%2520word@{host}/auth"})
        failed = await run_check({"type": "http", "url": f"http://user:p%40ss%3A%2F%2520word@{host}/error"})
    assert result.status is Status.PASS, result.output
    assert "p%40ss" not in failed.output and "p@ss" not in failed.output
    assert f"http://user:***@{host}/error answered 500" in failed.output


async def test_warn_status_says_degraded_not_down(target: str) -> None:
    degraded = await run_check({"type": "http", "url": f"{target}/error", "warn_status": ["5xx"]})
    ok = await run_check({"type": "http", "url": f"{target}/ok", "warn_status": ["5xx"]})
    missing = await run_check({"type": "http", "url": f"{target}/nope", "warn_status": ["5xx"]})
    refused = await run_check({"type": "http", "url": f"http://127.0.0.1:{closed_port()}/", "warn_status": ["5xx"]})
    assert degraded.status is Status.WARN and degraded.output.endswith("answered 500, degraded (warn_status)")
    assert ok.status is Status.PASS
    assert missing.status is Status.FAIL and missing.reason is Reason.UNEXPECTED  # 404 is not in warn_status
    assert refused.status is Status.FAIL and refused.reason is Reason.REFUSED  # no answer at all is down


# -- what a service says about itself: JSON numbers and headers ------------------------------

CLUSTER = {
    "status": "green",
    "number_of_pending_tasks": 7,
    "timed_out": False,
    "nodes": [{"name": "a", "heap_used_ratio": 0.75}, {"name": "b", "heap_used_ratio": 0.5}],
    "indices": {"logs": {"shards": {"unassigned": 0}}},
}


def self_reporting_app() -> web.Application:
    """A service reporting on itself, as Elasticsearch's cluster health does,
    with headers, one of them a cookie that must never be shown."""

    async def health(request: web.Request) -> web.Response:
        headers = {"X-Cluster": "prod-eu", "Set-Cookie": "session=do-not-show-me", "Cache-Control": "no-store"}
        return web.json_response(CLUSTER, headers=headers)

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="all good")

    async def odd(request: web.Request) -> web.Response:  # what Python's json reads, but no float can hold
        return web.Response(text='{"nan": NaN, "inf": Infinity, "huge": 1' + "0" * 400 + "}")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/text", text)
    app.router.add_get("/odd", odd)
    return app


@pytest.fixture
async def service() -> AsyncIterator[str]:
    async with serve_app(self_reporting_app()) as url:
        yield url


async def test_json_numbers_become_observed_values(service: str) -> None:
    observe = {"pending": "number_of_pending_tasks", "heap": "nodes.1.heap_used_ratio"}
    result = await run_check({"type": "http", "url": f"{service}/health", "observe": observe})
    assert result.status is Status.PASS, result.output
    assert result.observed["pending"].value == 7
    assert result.observed["heap"].value == 0.5
    assert next(iter(result.observed)) == "status_code"  # still the primary value
    deep = await run_check(
        {"type": "http", "url": f"{service}/health", "observe": {"unassigned": "indices.logs.shards.unassigned"}}
    )
    assert deep.observed["unassigned"].value == 0


async def test_json_numbers_are_judged_by_levels(service: str) -> None:
    options = {"type": "http", "url": f"{service}/health", "observe": {"pending": "number_of_pending_tasks"}}
    warned = await run_check({**options, "levels": {"pending": {"warn_above": 5}}})
    failed = await run_check({**options, "levels": {"pending": {"warn_above": 2, "fail_above": 5}}})
    quiet = await run_check({**options, "levels": {"pending": {"warn_above": 100}}})
    assert warned.status is Status.WARN and "pending is 7, above the warn level of 5" in warned.output
    assert failed.status is Status.FAIL and failed.reason is Reason.UNEXPECTED
    assert "pending is 7, above the fail level of 5" in failed.output
    assert failed.observed["pending"].value == 7
    assert quiet.status is Status.PASS


async def test_missing_json_path_is_unexpected_and_named(service: str) -> None:
    for path in ("nodes.2.heap_used_ratio", "number_of_nodes", "status.code"):
        result = await run_check({"type": "http", "url": f"{service}/health", "observe": {"x": path}})
        assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
        assert result.output == f"GET {service}/health answered 200, JSON field {path} is missing"


async def test_json_value_that_is_no_number_is_unexpected(service: str) -> None:
    cases = {"status": '"green"', "timed_out": "false", "nodes.0": '{"name": "a", "heap_used_ratio": 0.75}'}
    for path, shown in cases.items():
        result = await run_check({"type": "http", "url": f"{service}/health", "observe": {"x": path}})
        assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
        assert result.output.endswith(f"JSON field {path} is {shown}, not a number")


async def test_json_number_that_is_not_finite_is_unexpected(service: str) -> None:
    """NaN would make /health's JSON invalid, and an int past a float's range breaks /metrics."""
    for path in ("nan", "inf", "huge"):
        result = await run_check({"type": "http", "url": f"{service}/odd", "observe": {"x": path}})
        assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
        assert result.output.endswith("not a finite number") and "x" not in result.observed


async def test_observe_on_a_body_that_is_not_json(service: str) -> None:
    result = await run_check({"type": "http", "url": f"{service}/text", "observe": {"pending": "pending"}})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert result.output == f"GET {service}/text answered 200, body is not JSON"


async def test_observe_and_expect_json_together(service: str) -> None:
    options = {"type": "http", "url": f"{service}/health", "observe": {"pending": "number_of_pending_tasks"}}
    good = await run_check({**options, "expect_json": {"status": "green", "timed_out": False}})
    wrong = await run_check({**options, "expect_json": {"status": "red"}})
    assert good.status is Status.PASS, good.output
    assert wrong.status is Status.FAIL and 'JSON field status is "green", expected "red"' in wrong.output
    assert wrong.observed["pending"].value == 7  # the numbers are still seen when a field differs


async def test_json_values_on_health_and_metrics(service: str, aiohttp_client: AiohttpClient) -> None:
    checks = {"es": {"type": "http", "url": f"{service}/health", "observe": {"pending": "number_of_pending_tasks"}}}
    daemon = Daemon(config_from(checks), initial_offset=lambda check: 3600.0)
    [check] = daemon.checks
    daemon.store.record("es", await run_once(check))
    await check.close()
    client = await aiohttp_client(create_app(daemon))
    body = await (await client.get("/health")).json(content_type=None)
    assert body["checks"]["es"][0]["observed"]["pending"] == {"value": 7, "unit": ""}
    metrics = render(daemon).decode()
    assert 'probed_http_json_value{check="es",name="pending",type="http"} 7.0' in metrics
    assert 'probed_http_status_code{check="es",type="http"} 200.0' in metrics
    assert 'probed_http_phase_seconds{check="es",phase="first_byte",type="http"} ' in metrics
    assert 'phase="tls"' not in metrics  # http://: no handshake, no series


async def test_expected_headers(service: str) -> None:
    url = f"{service}/health"
    good = await run_check(
        {"type": "http", "url": url, "expect_headers": {"x-cluster": "^prod-", "Content-Type": "json"}}
    )
    missing = await run_check({"type": "http", "url": url, "expect_headers": {"X-Request-Id": "."}})
    wrong = await run_check({"type": "http", "url": url, "expect_headers": {"X-Cluster": "^staging-"}})
    assert good.status is Status.PASS, good.output
    assert missing.status is Status.FAIL and missing.reason is Reason.UNEXPECTED
    assert missing.output == f"GET {url} answered 200, header X-Request-Id is missing"
    assert wrong.status is Status.FAIL and wrong.reason is Reason.UNEXPECTED
    assert wrong.output == f"GET {url} answered 200, header X-Cluster does not match /^staging-/"
    assert "prod-eu" not in wrong.output


async def test_a_credential_header_that_does_not_match_shows_neither_value_nor_pattern(service: str) -> None:
    url = f"{service}/health"
    result = await run_check({"type": "http", "url": url, "expect_headers": {"Set-Cookie": "^session=other"}})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert result.output == f"GET {url} answered 200, header Set-Cookie does not match the expected pattern"
    assert "do-not-show-me" not in result.output and "other" not in result.output


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"observe": {"status_code": "a"}}, "'status_code' is a value the check observes itself"),
        ({"observe": {"total_time": "a"}}, "'total_time' is a value the check observes itself"),
        ({"observe": {"queue depth": "a"}}, "'queue depth' is not a name"),
        ({"observe": {"pending": "a..b"}}, "pending: 'a..b' is not a dotted path"),
        ({"observe": {"pending": ""}}, "pending: '' is not a dotted path"),
        ({"expect_headers": {"X-A": "(unclosed"}}, "checks.t.expect_headers.X-A: invalid regular expression"),
        ({"expect_headers": {"X-A": "a", "x-a": "b"}}, "X-A and x-a are the same header"),
        (
            {"method": "HEAD", "observe": {"pending": "a"}},
            "checks.t: method HEAD gets no body, so observe cannot be judged (use GET)",
        ),
        (
            {"method": "HEAD", "expect_json": {"status": "ok"}, "expect_body_contains": "ok"},
            "method HEAD gets no body, so expect_body_contains, expect_json cannot be judged",
        ),
    ],
)
def test_bad_observe_and_header_options_are_config_errors(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from({"t": {"type": "http", "url": "http://127.0.0.1/", **options}})
    assert problem in str(caught.value)


# -- where the time went: phases from aiohttp's trace hooks ----------------------------------

PHASE_NAMES = ("dns_time", "connect_time", "tls_time", "first_byte_time", "total_time")


def by_name(url: str) -> str:
    """The same URL with the host as a name, so that the run looks it up."""
    return url.replace("127.0.0.1", "localhost")


def phases(result: Result) -> dict[str, float]:
    return {name: float(result.observed[name].value) for name in PHASE_NAMES if name in result.observed}


def assert_within_total(spent: dict[str, float]) -> None:
    # Phases are intervals one after another inside the run: never more than the total.
    parts = [value for name, value in spent.items() if name != "total_time"]
    assert all(value >= 0 for value in parts)
    assert sum(parts) <= spent["total_time"]


def hops_app() -> web.Application:
    """/hop/N redirects N times; every answer waits `seconds` before its headers."""

    async def hop(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "0")))
        left = int(request.match_info["left"])
        if left == 0:
            return web.Response(text="arrived")
        raise web.HTTPFound(f"/hop/{left - 1}?{request.query_string}")

    app = web.Application()
    app.router.add_get("/hop/{left}", hop)
    return app


async def test_phases_of_a_plain_http_run_by_name(target: str) -> None:
    result = await run_check({"type": "http", "url": by_name(f"{target}/ok")})
    assert result.status is Status.PASS, result.output
    spent = phases(result)
    assert set(spent) == {"dns_time", "connect_time", "first_byte_time", "total_time"}  # no TLS on http://
    assert_within_total(spent)
    assert all(result.observed[name].unit == "s" for name in spent)


async def test_an_address_needs_no_lookup(target: str) -> None:
    result = await run_check({"type": "http", "url": f"{target}/ok", "levels": {"dns_time": {"fail_above": 0}}})
    assert result.status is Status.PASS, result.output  # a level on a phase the run had not is not judged
    assert set(phases(result)) == {"connect_time", "first_byte_time", "total_time"}


async def test_every_run_looks_up_and_connects_afresh(target: str) -> None:
    check = check_from({"type": "http", "url": by_name(f"{target}/ok")})
    try:
        runs = [await run_once(check) for _ in range(3)]
    finally:
        await check.close()
    # A cached address or a pooled connection would show no lookup or no connect phase.
    assert all({"dns_time", "connect_time"} <= set(phases(run)) for run in runs)


async def test_a_slow_answer_shows_in_the_first_byte_phase() -> None:
    async with serve_app(hops_app()) as url:
        result = await run_check({"type": "http", "url": by_name(f"{url}/hop/0?seconds=0.3")})
    spent = phases(result)
    assert result.status is Status.PASS, result.output
    assert spent["first_byte_time"] >= 0.3  # the server waited 0.3 s before its headers
    assert_within_total(spent)


async def test_phases_are_summed_over_redirects() -> None:
    async with serve_app(hops_app()) as url:
        result = await run_check({"type": "http", "url": by_name(f"{url}/hop/2?seconds=0.15")})
    assert result.status is Status.PASS, result.output
    spent = phases(result)
    assert spent["first_byte_time"] >= 3 * 0.15  # three answers, each 0.15 s late
    assert_within_total(spent)


async def test_levels_judge_a_phase() -> None:
    async with serve_app(hops_app()) as url:
        options = {"type": "http", "url": f"{url}/hop/0?seconds=0.3"}
        warned = await run_check({**options, "levels": {"first_byte_time": {"warn_above": 0.2}}})
        failed = await run_check({**options, "levels": {"first_byte_time": {"fail_above": 0.2}}})
    assert warned.status is Status.WARN and "first_byte_time is" in warned.output
    assert "above the warn level of 200ms" in warned.output
    assert failed.status is Status.FAIL and failed.reason is Reason.UNEXPECTED


async def test_https_has_a_tls_phase(tmp_path: Path) -> None:
    cert = self_signed_certificate(tmp_path)
    async with serve_app(target_app(), cert.server_context()) as url:
        verified = await run_check({"type": "http", "url": by_name(f"{url}/ok"), "ca_file": str(cert.cert_file)})
        unverified = await run_check({"type": "http", "url": f"{url}/redirect", "tls_verify": False})
    assert verified.status is Status.PASS, verified.output
    assert set(phases(verified)) == set(PHASE_NAMES)
    assert phases(verified)["tls_time"] > 0
    assert_within_total(phases(verified))
    assert unverified.status is Status.PASS, unverified.output
    assert {"connect_time", "tls_time", "first_byte_time"} <= set(phases(unverified))
    assert "dns_time" not in unverified.observed
