"""`probed check`'s order of starts (probed/once.py), seen from the runs'
own start times and durations against real servers: checks run one after
another, a check that hangs does not hold the rest until its timeout, a busy
one holds the next at most half that one's timeout, depends_on still orders
and holds. Behaviour only: bench/company.py measures the durations."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import yaml

from probed import once
from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.config import parse_config
from probed.model import Reason, Result, Status
from probed.once import run_checks_once
from tests.support.faults import silent_listener
from tests.support.net import closed_port
from tests.support.servers.redis import RedisServer


def checks_of(options: dict[str, dict[str, Any]]) -> list[AnyCheck]:
    config = parse_config(yaml.safe_dump({"checks": options}, sort_keys=False), "test.yaml")  # in this order
    return [create_check(name, opts) for name, opts in config.checks.items()]


async def results(options: dict[str, dict[str, Any]]) -> dict[str, Result]:
    store = await run_checks_once(checks_of(options))
    runs = {name: state.last for name, state in store.checks.items()}
    assert all(run is not None for run in runs.values()), runs
    return {name: run for name, run in runs.items() if run is not None}


def ended(run: Result) -> float:
    return run.started_at + run.duration


async def test_healthy_checks_run_one_after_another_in_the_configs_order(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of the idle rule's reach (a loaded machine can leave a run unscheduled for 50 ms):
    # the only way to a start here is that the previous check has ended.
    monkeypatch.setattr(once, "IDLE_GAP", 60.0)
    redis = {"type": "redis", "url": redis_server.url(), "timeout": "9s"}
    tcp = {"type": "tcp", "host": "127.0.0.1", "port": redis_server.port, "timeout": "9s"}
    runs = await results({"first": redis, "second": tcp, "third": redis, "fourth": tcp})
    assert {run.status for run in runs.values()} == {Status.PASS}
    order = list(runs.values())
    assert sorted(order, key=lambda run: run.started_at) == order
    for earlier, later in itertools.pairwise(order):
        assert later.started_at >= ended(earlier)  # no overlap: each timed as if alone


async def test_checks_that_hang_do_not_hold_the_next_until_their_timeout(redis_server: RedisServer) -> None:
    with silent_listener() as hung:
        runs = await results(
            {
                "hung_redis": {"type": "redis", "url": f"redis://127.0.0.1:{hung}/0", "timeout": "3s"},
                "hung_http": {"type": "http", "url": f"http://127.0.0.1:{hung}/", "timeout": "3s"},
                "cache": {"type": "redis", "url": redis_server.url(), "timeout": "3s"},
            }
        )
    assert runs["hung_redis"].reason is Reason.TIMEOUT and runs["hung_http"].reason is Reason.TIMEOUT
    assert runs["cache"].status is Status.PASS
    # Each started while the ones before it waited on the silent server.
    assert runs["hung_redis"].started_at <= runs["hung_http"].started_at < ended(runs["hung_redis"])
    assert runs["hung_http"].started_at <= runs["cache"].started_at < ended(runs["hung_http"])


async def test_a_check_waits_at_most_half_its_timeout_for_its_turn(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(once, "IDLE_GAP", 60.0)  # the hanging check never counts as waiting on I/O
    with silent_listener() as hung:
        runs = await results(
            {
                "hung": {"type": "redis", "url": f"redis://127.0.0.1:{hung}/0", "timeout": "4s"},
                "cache": {"type": "redis", "url": redis_server.url(), "timeout": "1s"},
            }
        )
    assert runs["hung"].reason is Reason.TIMEOUT
    assert runs["cache"].status is Status.PASS
    assert runs["cache"].started_at < ended(runs["hung"])  # its hold (0.5 s) ended first


async def test_a_child_runs_after_its_parent(redis_server: RedisServer) -> None:
    redis = {"type": "redis", "url": redis_server.url()}
    runs = await results({"orders": {**redis, "depends_on": ["db"]}, "db": redis})  # the child listed first
    assert runs["orders"].status is Status.PASS
    assert runs["orders"].started_at >= ended(runs["db"])


async def test_a_held_check_is_not_run(redis_server: RedisServer) -> None:
    refused = {"type": "redis", "url": f"redis://127.0.0.1:{closed_port()}/0"}
    store = await run_checks_once(
        checks_of({"broken": refused, "mail": {"type": "redis", "url": redis_server.url(), "depends_on": ["broken"]}})
    )
    mail = store.checks["mail"]
    assert mail.last is None and mail.held_by == "broken"
    assert mail.effective is Status.FAIL
