"""Published verdicts: thresholds, staleness, pending, and the aggregates."""

from __future__ import annotations

from typing import Any

from probed.checks import create_check
from probed.model import Reason, Result, Status
from probed.store import Store
from tests.support.checks import config_from


def make_store(**checks: dict[str, Any]) -> Store:
    config = config_from({name: {"type": "disk", "path": "/", **opts} for name, opts in checks.items()})
    return Store([create_check(name, opts) for name, opts in config.checks.items()])


def result(status: Status, reason: Reason | None = None, output: str = "") -> Result:
    if status is Status.FAIL:
        reason = reason or Reason.REFUSED
    return Result(status=status, started_at=1_700_000_000.0, duration=0.01, output=output, reason=reason)


PASS, WARN, FAIL = result(Status.PASS), result(Status.WARN), result(Status.FAIL, output="connection refused")


def test_pending_until_the_first_run() -> None:
    store = make_store(db={})
    state = store.checks["db"]
    assert (state.effective, state.reason) == (None, Reason.PENDING)
    assert (store.ready, store.status) == (False, Status.FAIL)
    store.record("db", PASS)
    assert (store.ready, store.status) == (True, Status.PASS)


def test_failure_threshold_holds_pass_until_enough_failures() -> None:
    store = make_store(db={"failure_threshold": 3})
    store.record("db", PASS)
    store.record("db", FAIL)
    store.record("db", FAIL)
    state = store.checks["db"]
    assert (state.effective, store.ready) == (Status.PASS, True)
    assert state.output == "connection refused (2 of 3 failures before fail)"
    store.record("db", FAIL)
    assert (state.effective, store.ready) == (Status.FAIL, False)
    assert state.reason is Reason.REFUSED


def test_a_success_resets_the_failure_count() -> None:
    store = make_store(db={"failure_threshold": 2})
    for outcome in (PASS, FAIL, PASS, FAIL, PASS):
        store.record("db", outcome)
    assert store.checks["db"].effective is Status.PASS


def test_success_threshold_holds_fail_until_enough_successes() -> None:
    store = make_store(db={"success_threshold": 2})
    store.record("db", FAIL)
    store.record("db", PASS)
    state = store.checks["db"]
    assert (state.effective, state.output) == (Status.FAIL, "(1 of 2 successes before pass)")
    store.record("db", PASS)
    assert state.effective is Status.PASS


def test_first_result_is_published_as_is() -> None:
    store = make_store(db={"failure_threshold": 5})
    store.record("db", FAIL)
    assert store.checks["db"].effective is Status.FAIL


def test_warn_counts_as_success_and_publishes_warn() -> None:
    store = make_store(db={})
    store.record("db", WARN)
    assert store.checks["db"].effective is Status.WARN
    assert store.status is Status.WARN and store.ready


def test_staleness_publishes_fail_and_a_new_run_clears_it() -> None:
    store = make_store(db={"interval": "10s", "timeout": "3s"})
    store.record("db", PASS, finished=100.0)
    store.mark_stale(now=100.0 + 22.9)  # 2 x 10s + 3s is the limit
    assert store.checks["db"].effective is Status.PASS
    store.mark_stale(now=100.0 + 23.1)
    state = store.checks["db"]
    assert (state.effective, state.reason) == (Status.FAIL, Reason.STALE)
    assert state.output == "stale: no run completed for over 23s"
    assert not store.ready
    store.record("db", PASS, finished=130.0)
    assert (state.effective, store.ready) == (Status.PASS, True)


def test_staleness_says_when_the_next_check_may_go_stale() -> None:
    """The watchdog sleeps until then: the soonest last run plus its limit, or
    now plus the shortest limit (a check that has not run, or is stale, starts
    that clock with its next run)."""
    store = make_store(db={"interval": "10s", "timeout": "3s"}, cache={"interval": "20s", "timeout": "5s"})
    assert store.mark_stale(now=50.0) == 50.0 + 23  # nothing has run
    store.record("cache", PASS, finished=100.0)
    assert store.mark_stale(now=101.0) == 101.0 + 23  # db's limit from now, before cache's 100 + 45
    store.record("db", PASS, finished=100.0)
    assert store.mark_stale(now=101.0) == 100.0 + 23
    assert store.mark_stale(now=124.0) == 100.0 + 45  # db went stale (its next run starts its clock): cache's
    assert store.checks["db"].stale and not store.checks["cache"].stale


def test_pending_checks_never_go_stale() -> None:
    store = make_store(db={})
    store.mark_stale(now=1e9)
    assert store.checks["db"].reason is Reason.PENDING


def test_aggregate_worst_critical_wins() -> None:
    store = make_store(a={}, b={}, c={})
    store.record("a", PASS)
    store.record("b", WARN)
    store.record("c", PASS)
    assert (store.status, store.ready) == (Status.WARN, True)
    store.record("c", FAIL)
    assert (store.status, store.ready) == (Status.FAIL, False)


def test_non_critical_failure_only_warns() -> None:
    store = make_store(db={}, mail={"critical": False})
    store.record("db", PASS)
    assert (store.status, store.ready) == (Status.PASS, True)  # a pending non-critical check does not hold readiness
    store.record("mail", FAIL)
    assert (store.status, store.ready) == (Status.WARN, True)
    store.record("db", FAIL)
    assert store.status is Status.FAIL


def test_counters_and_histogram() -> None:
    store = make_store(db={"failure_threshold": 10})
    for outcome in (PASS, FAIL, FAIL, WARN):
        store.record("db", outcome)
    state = store.checks["db"]
    assert state.runs == {Status.PASS: 1, Status.FAIL: 2, Status.WARN: 1}
    assert state.failures == {Reason.REFUSED: 2}
    assert sum(state.bucket_counts) == 4
    assert state.consecutive_failures == 0 and state.consecutive_successes == 1


def test_transitions_are_reported_once() -> None:
    seen: list[tuple[str, Status | None, Status | None]] = []
    config = config_from({"db": {"type": "disk", "path": "/"}})
    store = Store(
        [create_check("db", config.checks["db"])],
        on_transition=lambda state, before: seen.append((state.name, before, state.effective)),
    )
    for outcome in (PASS, PASS, FAIL, FAIL, PASS):
        store.record("db", outcome)
    assert seen == [("db", None, Status.PASS), ("db", Status.PASS, Status.FAIL), ("db", Status.FAIL, Status.PASS)]


def brute_force_status(store: Store) -> Status:
    """The aggregation rule spelled out, recomputed from scratch."""
    worst = Status.PASS
    for state in store.checks.values():
        verdict = state.effective
        if state.critical:
            verdict = verdict or Status.FAIL
        elif verdict is Status.FAIL:
            verdict = Status.WARN
        if verdict is not None and verdict.severity > worst.severity:
            worst = verdict
    return worst


def test_incremental_aggregate_matches_the_rule_through_random_histories() -> None:
    import random

    rng = random.Random(7)
    store = make_store(
        a={}, b={"critical": False}, c={"failure_threshold": 2}, d={"critical": False, "success_threshold": 3}, e={}
    )
    now = 1000.0
    for step in range(2000):
        name = rng.choice(list(store.checks))
        if rng.random() < 0.1:
            now += rng.choice([1.0, 30.0])
            store.mark_stale(now=now)
        else:
            store.record(name, rng.choice([PASS, WARN, FAIL]), finished=now)
        assert store.status is brute_force_status(store), step
        assert store.ready is (store.status is not Status.FAIL)


def test_history_keeps_every_run_as_it_ended_not_the_published_verdict() -> None:
    store = make_store(db={"failure_threshold": 3})
    for run in (PASS, FAIL, WARN):
        store.record("db", run)
    state = store.checks["db"]
    assert state.effective is Status.WARN
    assert [(run.status, run.reason) for run in state.history] == [
        (Status.PASS, None),
        (Status.FAIL, Reason.REFUSED),  # the threshold held the verdict at pass; the history shows the failure
        (Status.WARN, None),
    ]
