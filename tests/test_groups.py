"""Groups: their aggregates, the startup latch, ?exclude and ?verbose, depends_on."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from probed.checks.base import Check, CheckOptions
from probed.groups import REASON_LINES, GroupReason
from probed.model import CheckFailed, Outcome, Reason, Status
from probed.scheduler import Scheduler
from probed.store import Store
from tests.support.apps import app_in_thread, switch_app
from tests.support.checks import NO_LEVELS_YAML
from tests.support.daemon import daemon, failed, passed
from tests.support.net import closed_port, free_port, http_get, wait_until
from tests.support.probed import run_probed, serving

THREE = {
    "db": {"type": "disk", "path": "/"},
    "cache": {"type": "disk", "path": "/tmp"},
    "mail": {"type": "disk", "path": "/var", "critical": False},
}


async def test_each_group_answers_by_its_own_checks(aiohttp_client: AiohttpClient) -> None:
    d = daemon(THREE, groups={"ready": ["db"], "payments": ["cache", "mail"]})
    client = await aiohttp_client(d.app)
    for name in THREE:
        d.store.record(name, passed())
    d.store.record("cache", failed())
    assert (await client.get("/health/ready")).status == 200  # cache is not in ready
    payments = await client.get("/health/payments")
    assert payments.status == 503 and await payments.json(content_type=None) == {"status": "fail"}
    assert (await client.get("/health")).status == 503  # the overall status still counts every check
    assert (await client.get("/health/live")).status == 200  # live holds no dependency check
    missing = await client.get("/health/nosuch")
    assert missing.status == 404 and await missing.json() == {"error": "no such group or path"}
    d.store.record("mail", failed())
    d.store.record("cache", passed())
    payments = await client.get("/health/payments")
    assert payments.status == 200 and await payments.json(content_type=None) == {"status": "warn"}


async def test_startup_latches_once_every_check_has_passed(aiohttp_client: AiohttpClient) -> None:
    d = daemon(THREE)
    client = await aiohttp_client(d.app)
    d.store.record("db", passed())
    assert (await client.get("/health/startup")).status == 503  # cache has not passed yet
    d.store.record("cache", failed())
    assert (await client.get("/health/startup")).status == 503
    d.store.record("cache", passed())
    assert (await client.get("/health/startup")).status == 200
    d.store.record("db", failed())
    assert (await client.get("/health/startup")).status == 200  # latched: kubelet stopped asking
    assert (await client.get("/health/ready")).status == 503
    assert d.registry.get_sample_value("probed_group_status", {"group": "startup", "probed_group_status": "pass"}) == 1
    assert d.registry.get_sample_value("probed_group_status", {"group": "ready", "probed_group_status": "fail"}) == 1


async def test_exclude_answers_as_if_the_check_were_not_in_the_group(aiohttp_client: AiohttpClient) -> None:
    d = daemon(THREE)
    client = await aiohttp_client(d.app)
    for name in THREE:
        d.store.record(name, passed())
    d.store.record("cache", failed())
    assert (await client.get("/health/ready")).status == 503
    assert (await client.get("/health/ready?exclude=cache")).status == 200
    assert (await client.get("/health/ready?exclude=db")).status == 503
    assert (await client.get("/health/ready?exclude=db&exclude=cache")).status == 200
    assert (await client.get("/health/ready?exclude=mail")).status == 503  # not a member: no effect
    typo = await client.get("/health/ready?exclude=cahce")  # as Kubernetes: excludes nothing, fails nothing
    assert typo.status == 503
    said = await (await client.get("/health/ready?exclude=cahce&exclude=a%0d%0aSet-Cookie:%20x&verbose")).text()
    assert said.splitlines()[-2:] == [
        "warn: some checks cannot be excluded: no such check 'a\\r\\nSet-Cookie: x', 'cahce'",
        "ready check failed",
    ]


async def test_verbose_lists_each_check_in_the_kubernetes_style(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("let-me-see\n")
    d = daemon(
        THREE,
        groups={"ready": ["db", "cache", "mail"]},
        server={"details": "token", "token_file": str(tmp_path / "token")},
    )
    client = await aiohttp_client(d.app)
    for name in THREE:
        d.store.record(name, passed())
    d.store.record("cache", failed())
    d.store.record("mail", failed())
    anonymous = await client.get("/health/ready?verbose")
    assert anonymous.status == 503 and anonymous.headers["Content-Type"].startswith("text/plain")
    assert await anonymous.text() == (
        "[+]db ok\n[-]cache failed: unexpected\n[+]mail failed: unexpected (non-critical)\nready check failed\n"
    )
    authorized = await client.get("/health/ready?verbose&exclude=cache", headers={"Authorization": "Bearer let-me-see"})
    assert authorized.status == 200
    assert await authorized.text() == (
        "[+]db ok\n"
        "[+]cache excluded: failed: unexpected: /: 1% free, below the fail level of 5%\n"
        "[+]mail failed: unexpected: /: 1% free, below the fail level of 5% (non-critical)\n"
        "ready check passed (warn)\n"
    )
    head = await client.head("/health/ready?verbose")
    assert head.status == 503 and await head.read() == b""


async def test_a_child_is_held_while_its_parent_fails() -> None:
    d = daemon({"db": {"type": "disk", "path": "/"}, "orders": {"type": "disk", "path": "/", "depends_on": ["db"]}})
    store = d.store
    store.record("db", passed())
    store.record("orders", passed())
    store.record("db", failed())
    assert store.failing_parent("orders") == "db"
    store.hold("orders", "db")
    orders = store.checks["orders"]
    assert (orders.effective, orders.reason) == (Status.FAIL, Reason.DEPENDENCY)
    assert orders.output == "not run: it depends on db, which fails"
    assert d.registry.get_sample_value("probed_check_dependency_failing", {"check": "orders", "type": "disk"}) == 1
    store.record("db", passed())
    assert store.failing_parent("orders") is None
    store.record("orders", passed())  # the next run goes ahead, and speaks for itself
    assert (orders.effective, orders.reason) == (Status.PASS, None)
    assert d.registry.get_sample_value("probed_check_dependency_failing", {"check": "orders", "type": "disk"}) == 0


class Counted(Check[CheckOptions]):
    def __init__(self, name: str, options: CheckOptions, outcome: Status) -> None:
        super().__init__(name, options)
        self.outcome, self.runs = outcome, 0

    async def run(self) -> Outcome:
        self.runs += 1
        if self.outcome is Status.FAIL:
            raise CheckFailed("down", Reason.REFUSED)
        return Outcome()


async def test_the_scheduler_does_not_run_a_child_of_a_failing_parent() -> None:
    fast: dict[str, Any] = {"type": "test", "interval": 0.05, "timeout": 0.04}
    parent = Counted("db", CheckOptions(**fast), Status.FAIL)
    child = Counted("orders", CheckOptions(**fast, depends_on=("db",)), Status.PASS)
    store = Store([parent, child])
    scheduler = Scheduler(
        [parent, child], store, initial_offset=lambda check: 0.0 if check is parent else 0.02, phase=None
    )
    await scheduler.start()
    await asyncio.sleep(0.3)
    await scheduler.stop()
    assert parent.runs >= 3 and child.runs == 0
    assert store.checks["orders"].reason is Reason.DEPENDENCY


def test_probed_check_does_not_run_a_child_of_a_failing_parent(tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/"
    config = tmp_path / "probed.yaml"
    config.write_text(
        f"""
checks:
  api: {{type: http, url: '{refused}'}}
  orders: {{type: http, url: '{refused}orders', depends_on: [api]}}
  disk: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}
"""
    )
    done = run_probed("check", "--config", str(config), "-o", "json")
    assert done.returncode == 1
    checks = json.loads(done.stdout)["checks"]
    assert (checks["api"][0]["reason"], checks["orders"][0]["reason"]) == ("refused", "dependency")
    assert checks["orders"][0]["output"] == "not run: it depends on api, which fails"
    assert checks["disk"][0]["status"] == "pass"
    alone = run_probed("check", "orders", "--config", str(config), "-o", "json")  # the parent not selected: it runs
    assert json.loads(alone.stdout)["checks"]["orders"][0]["reason"] == "refused"


# -- one answer per group, against a real probed serve ------------------------------------

# (api's HTTP status, spool's size in bytes or None for missing) -> each group's expected answer.
# ready: both checks; live: spool; payments: api; startup: ready's, latched once it passes.
WALK = [
    ((500, None), {"ready": "fail", "live": "fail", "payments": "fail", "startup": "fail"}),
    ((429, 3), {"ready": "warn", "live": "warn", "payments": "warn", "startup": "pass"}),
    ((200, 64), {"ready": "pass", "live": "pass", "payments": "pass", "startup": "pass"}),
    ((500, 3), {"ready": "fail", "live": "warn", "payments": "fail", "startup": "pass"}),
    ((429, 64), {"ready": "warn", "live": "pass", "payments": "warn", "startup": "pass"}),
]
VERDICTS = {200: "pass", 429: "warn", 500: "fail", None: "fail", 3: "warn", 64: "pass"}
PAGE_GROUP = r'<li class="(\w+)"><a href="health/([\w.-]+)">'  # a group on the status page: (status, name)
VERBOSE_LAST = {"passed": "pass", "passed (warn)": "warn", "failed": "fail"}


def test_every_way_of_asking_a_group_gives_one_answer(tmp_path: Path) -> None:
    """pass, warn and fail walked through every group endpoint and every way of
    asking it, against probed serve and real dependencies: an HTTP server of the
    test's own (429 warns by warn_status) and a file judged by a size level."""
    app, api = switch_app()
    spool = tmp_path / "spool"
    with app_in_thread(app) as url:
        port = free_port()
        (tmp_path / "probed.yaml").write_text(
            f"""
server: {{listen: '127.0.0.1:{port}'}}
defaults: {{interval: 1s, timeout: 900ms}}  # a loaded machine must not time the api out
checks:
  api: {{type: http, url: '{url}/health', warn_status: [429]}}
  spool: {{type: file, path: '{spool}', levels: {{size: {{warn_below: 10}}}}}}
groups: {{ready: [api, spool], live: [spool], payments: [api]}}
"""
        )
        with serving(tmp_path / "probed.yaml") as served:
            base = served.base
            for (status, size), expected in WALK:
                api["status"] = status
                spool.unlink(missing_ok=True)
                if size is not None:
                    spool.write_bytes(b"x" * size)
                settle(base, {"api": VERDICTS[status], "spool": VERDICTS[size]}, expected)
                for group, answer in expected.items():
                    assert ways_of_asking(base, group) == dict.fromkeys(WAYS, answer), (group, status, size)
                assert json.loads(http_get(f"{base}/health")[1])["status"] == expected["ready"]  # every check


WAYS = ("no query", "a query", "?verbose", "the page at /health", "probed_group_status")


def ways_of_asking(base: str, group: str) -> dict[str, str]:
    """What each way of asking says of the group's status; each HTTP code checked against it."""
    said = {}
    for way, query in (("no query", ""), ("a query", "?exclude=nosuch")):
        code, body = http_get(f"{base}/health/{group}{query}")
        said[way] = json.loads(body)["status"]
        assert code == (503 if said[way] == "fail" else 200), (way, code, body)
    code, text = http_get(f"{base}/health/{group}?verbose")
    said["?verbose"] = VERBOSE_LAST[text.splitlines()[-1].removeprefix(f"{group} check ")]
    assert code == (503 if said["?verbose"] == "fail" else 200), text
    said["the page at /health"] = page_groups(base)[group]
    said["probed_group_status"] = gauge_groups(base)[group]
    return said


def page_groups(base: str) -> dict[str, str]:
    page = http_get(f"{base}/health", headers={"Accept": "text/html"})[1]
    return dict((name, status) for status, name in re.findall(PAGE_GROUP, page))


def gauge_groups(base: str) -> dict[str, str]:
    metrics = http_get(f"{base}/metrics")[1]
    return dict(re.findall(r'probed_group_status\{group="([\w.-]+)",probed_group_status="(\w+)"\} 1\.0', metrics))


def settle(base: str, checks: dict[str, str], groups: dict[str, str]) -> None:
    """Until both checks publish the step's verdicts, and the page (rendered at most
    once a second) has caught up with them."""
    wait_until(lambda: {name: published(base, name) for name in checks} == checks, f"the checks publishing {checks}")
    wait_until(lambda: page_groups(base) == groups, f"the page showing {groups}")


def published(base: str, check: str) -> str:
    return str(json.loads(http_get(f"{base}/health/checks/{check}")[1])["status"])


def test_probed_check_shows_each_group_as_its_endpoint_would(tmp_path: Path) -> None:
    app, api = switch_app()
    api["status"] = 429
    with app_in_thread(app) as url:
        config = tmp_path / "probed.yaml"
        config.write_text(
            f"checks:\n  api: {{type: http, url: '{url}/health', warn_status: [429]}}\ngroups: {{payments: [api]}}\n"
        )
        done = run_probed("check", "--config", str(config), "-o", "html")
    assert done.returncode == 0, done.stderr
    shown = dict((name, status) for status, name in re.findall(PAGE_GROUP, done.stdout))
    assert shown == {"ready": "warn", "startup": "pass", "live": "pass", "payments": "warn"}


async def test_live_says_when_the_scheduler_stopped(aiohttp_client: AiohttpClient) -> None:
    d = daemon(THREE)
    client = await aiohttp_client(d.app)
    assert (await client.get("/health/live")).status == 200
    await d.daemon.scheduler.stop()
    live = await client.get("/health/live")
    line = REASON_LINES[GroupReason.SCHEDULER]
    assert live.status == 503 and await live.json(content_type=None) == {"status": "fail", "output": line}
    assert (await (await client.get("/health/live?verbose")).text()).startswith(f"[-]{line}\n")
