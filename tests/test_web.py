"""The HTTP API: status codes, bodies, HEAD, errors, details, metrics."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from probed.daemon import Daemon
from probed.metrics import CHUNK, render
from probed.model import Result, Status
from probed.report import FORMATS, Format
from probed.scheduler import SchedulerLoad
from probed.store import HISTORY_LENGTH
from probed.web import HealthCache, create_app
from tests.support.checks import config_from
from tests.support.daemon import DISKS, NEVER, daemon, failed, passed


async def test_pending_is_not_ready_but_live(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    ready = await client.get("/health/ready")
    assert ready.status == 503
    assert await ready.json(content_type=None) == {"status": "fail"}
    assert ready.headers["Content-Type"] == "application/health+json"
    assert ready.headers["Cache-Control"] == "no-store"
    live = await client.get("/health/live")
    assert live.status == 200 and await live.json(content_type=None) == {"status": "pass"}
    health = await client.get("/health")
    body = await health.json(content_type=None)
    assert health.status == 503
    assert body["checks"]["root"] == [
        {
            "status": "fail",
            "componentType": "system",
            "critical": True,
            "reason": "pending",
            "output": "pending: the first run has not completed",
        }
    ]


async def test_full_report_in_ietf_shape(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    d.store.record("scratch", failed())
    health = await client.get("/health")
    assert health.status == 200  # a failing non-critical check only warns
    body = await health.json(content_type=None)
    assert body["status"] == "warn"
    assert body["checks"]["root"] == [
        {
            "status": "pass",
            "componentType": "system",
            "critical": True,
            "time": "2023-11-14T22:13:20.000Z",
            "observedValue": 0.5,
            "observedUnit": "ratio",
            "duration": 0.002,
            "observed": {
                "free_ratio": {"value": 0.5, "unit": "ratio"},
                "free_bytes": {"value": 123456, "unit": "bytes"},
            },
        }
    ]
    [scratch] = body["checks"]["scratch"]
    assert scratch["status"] == "fail" and scratch["reason"] == "unexpected"
    assert scratch["output"] == "/: 1% free, below the fail level of 5%"
    assert (await client.get("/health/ready")).status == 200


async def test_one_check_endpoint(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    d.store.record("scratch", failed())
    root = await client.get("/health/checks/root")
    scratch = await client.get("/health/checks/scratch")
    assert root.status == 200 and (await root.json(content_type=None))["status"] == "pass"
    assert scratch.status == 503
    missing = await client.get("/health/checks/nope")
    assert missing.status == 404
    assert await missing.json() == {"error": "no such check"}


async def test_readiness_follows_critical_verdicts(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    assert (await client.get("/health/ready")).status == 200
    d.store.record("root", failed())
    ready = await client.get("/health/ready")
    assert ready.status == 503 and await ready.json(content_type=None) == {"status": "fail"}
    assert (await client.get("/health/live")).status == 200  # dependencies play no part in liveness
    d.store.record("root", passed())
    assert (await client.get("/health/ready")).status == 200


@pytest.mark.parametrize(
    "path",
    ["/health/live", "/health/ready", "/health", "/health/checks/root", "/health/checks/root/history", "/metrics"],
)
async def test_head_answers_like_get_without_a_body(aiohttp_client: AiohttpClient, path: str) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    get, head = await client.get(path), await client.head(path)
    assert head.status == get.status
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""


async def test_unknown_paths_and_methods_get_json_errors(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(daemon(DISKS).app)
    missing = await client.get("/healthz")
    assert missing.status == 404 and await missing.json() == {"error": "Not Found"}
    post = await client.post("/health/ready", data=b"x")
    assert post.status == 405 and await post.json() == {"error": "Method Not Allowed"}
    assert post.headers["Allow"] == "GET,HEAD"
    junk = await client.get("/health/checks/%ff%fe")
    assert junk.status == 404


async def test_details_only_for_token_holders(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("let-me-see\n")
    d = daemon(DISKS, server={"details": "token", "token_file": str(tmp_path / "token")})
    client = await aiohttp_client(d.app)
    d.store.record("root", failed())
    anonymous = await (await client.get("/health")).json(content_type=None)
    assert anonymous["checks"]["root"] == [
        {"status": "fail", "componentType": "system", "critical": True, "time": "2023-11-14T22:13:30.000Z"}
    ]
    authorized = await client.get("/health", headers={"Authorization": "Bearer let-me-see"})
    assert (await authorized.json(content_type=None))["checks"]["root"][0]["reason"] == "unexpected"
    wrong = await client.get("/health/checks/root", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401 and await wrong.json() == {"error": "invalid bearer token"}
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    assert "let-me-see" not in await wrong.text()


async def test_details_token_covers_the_observed_values_on_metrics(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    d = daemon(DISKS, server={"details": "token", "token": "let-me-see"})
    client = await aiohttp_client(d.app)
    d.store.record("root", passed(free_ratio=0.42))
    anonymous = await (await client.get("/metrics")).text()
    authorized = await (await client.get("/metrics", headers={"Authorization": "Bearer let-me-see"})).text()
    assert 'probed_check_up{check="root",type="disk"} 1.0' in anonymous  # statuses stay public
    assert "probed_disk_free_ratio" not in anonymous
    assert 'probed_disk_free_ratio{check="root",type="disk"} 0.42' in authorized
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401


@pytest.mark.parametrize("form", [f for f in FORMATS.values() if f.fresh_for is None], ids=lambda f: f.name)
async def test_health_body_is_rendered_once_per_change(form: Format) -> None:
    d = daemon(DISKS)
    cache = HealthCache()
    first = cache.body(d.store, form, details=True)
    assert cache.body(d.store, form, details=True) is first  # no change, no new rendering
    assert cache.body(d.store, form, details=False) is not first  # each details flag its own body
    one = cache.body(d.store, form, details=True, name="root")
    assert one is not first and cache.body(d.store, form, details=True, name="root") is one
    d.store.record("root", passed())
    second = cache.body(d.store, form, details=True)
    assert second is not first and cache.body(d.store, form, details=True) is second
    assert cache.body(d.store, form, details=True, name="root") is not one


async def test_page_is_rendered_at_most_once_a_second_however_often_state_changes() -> None:
    now = [100.0]
    d = daemon(DISKS)
    cache, page = HealthCache(clock=lambda: now[0]), FORMATS["html"]
    first = cache.body(d.store, page, details=True)
    d.store.record("root", passed())
    now[0] += 0.9
    assert cache.body(d.store, page, details=True) is first  # a change alone does not render the page again
    now[0] += 0.1
    second = cache.body(d.store, page, details=True)
    assert second is not first and b"pass" in second
    now[0] += 5
    assert cache.body(d.store, page, details=True) is not second  # nothing changed, but the ages it shows did
    reloaded = daemon(DISKS)  # a config reload brings a new store: rendered at once
    assert cache.body(reloaded.store, page, details=True) is not second


async def test_metrics_follow_verdicts(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    labels = {"check": "root", "type": "disk"}
    sample = d.registry.get_sample_value
    assert sample("probed_check_status", {**labels, "probed_check_status": "pending"}) == 1
    assert sample("probed_ready") == 0
    d.store.record("root", passed())
    d.store.record("scratch", passed())
    assert sample("probed_check_up", labels) == 1
    assert sample("probed_ready") == 1
    assert sample("probed_disk_free_ratio", labels) == 0.5
    assert sample("probed_disk_free_bytes", labels) == 123456
    assert sample("probed_check_runs_total", {**labels, "result": "pass"}) == 1
    d.store.record("root", failed())
    assert sample("probed_check_up", labels) == 0
    assert sample("probed_check_status", {**labels, "probed_check_status": "fail"}) == 1
    assert sample("probed_check_status", {**labels, "probed_check_status": "pass"}) == 0
    assert sample("probed_check_failures_total", {**labels, "reason": "unexpected"}) == 1
    assert sample("probed_check_consecutive_failures", labels) == 1
    assert sample("probed_check_duration_seconds_count", labels) == 2
    assert sample("probed_check_last_success_timestamp_seconds", labels) == 1_700_000_000.002
    assert sample("probed_ready") == 0
    assert sample("probed_config_last_load_success") == 1
    text = await (await client.get("/metrics")).text()
    assert 'probed_check_up{check="root",type="disk"} 0.0' in text
    assert "probed_ready 0.0" in text


async def test_metrics_speak_openmetrics_when_asked(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(daemon(DISKS).app)
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def metrics_body(aiohttp_client: AiohttpClient, accept: str = "") -> bytes:
    d = daemon({**DISKS, "web": {"type": "http", "url": "https://127.0.0.1:9/"}})
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    d.store.record("scratch", failed())
    return await (await client.get("/metrics", headers={"Accept": accept} if accept else {})).read()


async def test_metrics_pass_promtool(aiohttp_client: AiohttpClient) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/install-test-deps.sh (Debian package prometheus)"
    body = await metrics_body(aiohttp_client)
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == b""  # not even a lint warning


async def test_openmetrics_parses(aiohttp_client: AiohttpClient) -> None:
    # promtool reads only the classic text format; OpenMetrics gets its reference parser.
    body = await metrics_body(aiohttp_client, "application/openmetrics-text; version=1.0.0")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["probed_check_status"].type == "stateset"
    assert families["probed_check_runs"].type == "counter"
    assert families["probed_check_duration_seconds"].type == "histogram"


async def test_scheduler_runs_inside_the_app(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    d = daemon(
        {
            "tmp": {
                "type": "disk",
                "path": str(tmp_path),
                "interval": "300ms",
                "timeout": "200ms",
                "warn_free_percent": None,
                "fail_free_percent": None,
                "warn_free_inodes_percent": None,
                "fail_free_inodes_percent": None,
            }
        },
        offset=0.0,
    )
    client = await aiohttp_client(d.app)
    for _ in range(50):
        if (await client.get("/health/ready")).status == 200:
            break
        await asyncio.sleep(0.1)
    body = await (await client.get("/health/checks/tmp")).json(content_type=None)
    assert body["checks"]["tmp"][0]["status"] == "pass"
    await asyncio.sleep(0.7)
    assert d.store.checks["tmp"].runs[Status.PASS] >= 2


async def test_history_of_recent_runs(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    empty = await client.get("/health/checks/root/history")
    assert empty.status == 200 and await empty.json() == {"check": "root", "status": "fail", "runs": []}
    d.store.record("root", passed())
    d.store.record("root", failed())
    body = await (await client.get("/health/checks/root/history")).json()
    assert body == {
        "check": "root",
        "status": "fail",
        "runs": [  # oldest first
            {"status": "pass", "time": "2023-11-14T22:13:20.000Z", "duration": 0.002},
            {"status": "fail", "time": "2023-11-14T22:13:30.000Z", "duration": 0.5, "reason": "unexpected"},
        ],
    }
    missing = await client.get("/health/checks/nope/history")
    assert missing.status == 404 and await missing.json() == {"error": "no such check"}
    assert (await client.head("/health/checks/root/history")).status == 200


async def test_history_is_a_bounded_ring(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    for i in range(HISTORY_LENGTH + 5):
        d.store.record("root", Result(Status.PASS, 1_700_000_000.0 + i, 0.001))
    runs = (await (await client.get("/health/checks/root/history")).json())["runs"]
    assert len(runs) == HISTORY_LENGTH
    assert runs[0]["time"] == "2023-11-14T22:13:25.000Z"  # the five oldest runs are gone


async def test_history_respects_details(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("let-me-see\n")
    d = daemon(DISKS, server={"details": "token", "token_file": str(tmp_path / "token")})
    client = await aiohttp_client(d.app)
    d.store.record("root", failed())
    anonymous = await (await client.get("/health/checks/root/history")).json()
    assert anonymous["runs"] == [{"status": "fail", "time": "2023-11-14T22:13:30.000Z"}]
    authorized = await client.get("/health/checks/root/history", headers={"Authorization": "Bearer let-me-see"})
    assert (await authorized.json())["runs"][0]["reason"] == "unexpected"
    wrong = await client.get("/health/checks/root/history", headers={"Authorization": "Bearer guess"})
    assert wrong.status == 401 and await wrong.json() == {"error": "invalid bearer token"}


def parsed_samples(families: Iterable[Metric]) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    return {(s.name, tuple(sorted(s.labels.items())), s.value) for f in families for s in f.samples}


@pytest.mark.parametrize("openmetrics", [False, True])
async def test_metrics_text_says_what_the_reference_encoder_says(openmetrics: bool) -> None:
    """/metrics writes the text itself (for speed): it must carry exactly the
    samples prometheus_client's own encoder writes for the same declarations."""
    from prometheus_client import exposition, parser
    from prometheus_client import openmetrics as reference_om

    d = daemon({**DISKS, "web": {"type": "http", "url": "https://127.0.0.1:9/"}})
    d.store.record("root", passed())
    d.store.record("scratch", failed())
    d.daemon.config_load.timestamp = 1_700_000_000.0
    ours = render(d.daemon, openmetrics).decode()
    read: Callable[[str], Iterable[Metric]]
    if openmetrics:
        reference = reference_om.exposition.generate_latest(d.registry).decode()
        read = text_string_to_metric_families
    else:
        reference = exposition.generate_latest(d.registry).decode()
        read = parser.text_string_to_metric_families
    assert parsed_samples(read(ours)) == parsed_samples(read(reference))
    assert {(f.name, f.type) for f in read(ours)} == {(f.name, f.type) for f in read(reference)}


async def test_failures_by_reason_list_only_reasons_seen() -> None:
    d = daemon(DISKS)
    d.store.record("scratch", failed())
    text = render(d.daemon).decode()
    assert 'probed_check_failures_total{check="scratch",reason="unexpected",type="disk"} 1.0' in text
    assert 'reason="timeout"' not in text  # zero series would be most of the exposition at scale


class CountsScrapes(Daemon):
    """A daemon that says when a scrape has begun rendering (the scheduler's
    figures are the first thing an exposition reads)."""

    rendering: asyncio.Event

    def scheduler_load(self) -> SchedulerLoad:
        self.rendering.set()
        return super().scheduler_load()


async def test_probes_answer_between_slices_of_a_scrape(aiohttp_client: AiohttpClient) -> None:
    # 20 slices of CHUNK checks per family: the exposition takes hundreds of
    # turns of the loop, and a probe needs a few.
    disks = {f"disk-{i}": {"type": "disk", "path": "/"} for i in range(20 * CHUNK)}
    busy = CountsScrapes(config_from(disks), initial_offset=lambda check: NEVER)
    busy.rendering = asyncio.Event()
    client = await aiohttp_client(create_app(busy))
    scrape = asyncio.ensure_future(client.get("/metrics"))
    await busy.rendering.wait()
    live = await client.get("/health/live")
    ready = await client.get("/health/ready")
    assert not scrape.done()  # answered while the scrape renders on the same loop
    assert (live.status, ready.status) == (200, 503)  # pending: not ready
    metrics = await scrape
    assert metrics.status == 200 and 'probed_check_up{check="disk-1999",type="disk"} 0.0' in await metrics.text()
