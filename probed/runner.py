"""Run one check once: bound it by its timeout, time it, turn its outcome into a Result.

This is the one place where a check's return value or exception becomes a
verdict, so every type fails the same way and no type can disturb the caller.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from probed.checks.base import AnyCheck
from probed.checks.errors import exception_text
from probed.checks.levels import apply_levels
from probed.fields import format_duration
from probed.model import CheckFailed, Observed, Outcome, Reason, Result, Status
from probed.secrets import redact

PUBLISHED_ONLY = (Reason.STALE, Reason.PENDING)  # verdicts probed publishes, never a run's
MAX_OUTPUT = 500  # characters: outputs are for people, not for dumping responses


async def run_once(check: AnyCheck) -> Result:
    opts = check.options
    started_at = time.time()
    start = time.perf_counter()
    outcome: object
    try:
        if isinstance(check.unprepared, CheckFailed):  # what prepare raised, said at every run
            outcome = check.unprepared
        elif check.unprepared is not None:
            outcome = _describe(check, check.unprepared)
        else:
            outcome = await _bounded(check, opts.timeout)
    except TimeoutError:
        outcome = CheckFailed(f"timed out after {format_duration(opts.timeout)}", Reason.TIMEOUT)
    except CheckFailed as exc:
        outcome = exc
    except Exception as exc:  # a library's error, or a bug: still just this check's failure
        outcome = _describe(check, exc)
        _forget_tracebacks(exc)
    duration = time.perf_counter() - start
    if isinstance(outcome, BaseException):
        _forget_tracebacks(outcome)
    outcome = _within_contract(outcome)
    if isinstance(outcome, Outcome):
        outcome = _judge_levels(check, outcome, duration)
    return _to_result(check, outcome, started_at, duration)


async def _bounded(check: AnyCheck, timeout: float) -> Any:
    """Await check.run() for at most `timeout` seconds, even if it ignores cancellation.

    The run is a task of its own, so a check that swallows cancellation cannot
    hold the caller; the run itself settles `settled` in its last step, and
    the deadline settles it if the run has not: one loop step from the run's
    end to its verdict (asyncio.wait took two, and sets and a coroutine more:
    about 35 µs a run of the work around it, bench/run_path.py)."""
    loop = asyncio.get_running_loop()
    settled: asyncio.Future[Any] = loop.create_future()
    task = loop.create_task(_settle_with(check, settled))
    deadline = loop.call_later(timeout, _settle, settled, _TIMED_OUT)
    try:
        outcome = await settled
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        deadline.cancel()
    if outcome is _TIMED_OUT:
        task.cancel()
        # A check that swallows cancellation keeps running in the background;
        # we stop waiting for it, and retrieve its result so nothing is logged.
        task.add_done_callback(_discard_result)
        raise TimeoutError
    return outcome


_TIMED_OUT = object()


async def _settle_with(check: AnyCheck, settled: asyncio.Future[Any]) -> None:
    """Run the check and hand what it returned or raised to `settled`, unless the deadline came first."""
    try:
        outcome = await check.run()
    except Exception as exc:
        if not settled.done():
            settled.set_exception(exc)
        return
    _settle(settled, outcome)


def _settle(settled: asyncio.Future[Any], outcome: object) -> None:
    if not settled.done():
        settled.set_result(outcome)


def _within_contract(outcome: object) -> Outcome | CheckFailed:
    """What a check returned or raised, held to the contract: a pass or warn
    Outcome, or a CheckFailed with a reason a run can have. Anything else is
    a bug in the check, reported as its failure with reason error."""
    if isinstance(outcome, CheckFailed):
        if outcome.reason in PUBLISHED_ONLY or not isinstance(outcome.reason, Reason):
            return CheckFailed(
                f"{outcome.message} (the check failed with reason {outcome.reason!s}, which only probed may publish)",
                Reason.ERROR,
                outcome.observed,
            )
        return outcome
    if not isinstance(outcome, Outcome):
        return CheckFailed(f"check returned {type(outcome).__name__}, not an Outcome")
    if outcome.status not in (Status.PASS, Status.WARN):
        said = f"{outcome.output}; " if outcome.output else ""
        return CheckFailed(
            f"{said}the check returned {outcome.status!s} without a reason (a failure must raise CheckFailed)",
            Reason.ERROR,
            _valid_observed(outcome.observed),
        )
    return outcome


def _discard_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _judge_levels(check: AnyCheck, outcome: Outcome, duration: float) -> Outcome | CheckFailed:
    """Levels on observed values, then on the run's duration."""
    if check.levels:
        try:
            outcome = apply_levels(check.target, check.levels, outcome, check.options.optional_levels)
        except CheckFailed as failed:
            return failed
    return _apply_latency_levels(check, outcome, duration)


def _apply_latency_levels(check: AnyCheck, outcome: Outcome, duration: float) -> Outcome | CheckFailed:
    opts = check.options
    took = f"took {format_duration(round(duration, 3))}" if opts.warn_latency or opts.fail_latency else ""
    if opts.fail_latency is not None and duration > opts.fail_latency:
        level = format_duration(opts.fail_latency)
        return CheckFailed(f"{took}, over fail_latency {level}", Reason.UNEXPECTED, outcome.observed)
    if opts.warn_latency is not None and duration > opts.warn_latency and outcome.status is Status.PASS:
        level = format_duration(opts.warn_latency)
        output = f"{outcome.output}; {took}, over warn_latency {level}" if outcome.output else took
        return Outcome(Status.WARN, output, outcome.observed)
    return outcome


def _to_result(check: AnyCheck, outcome: Outcome | CheckFailed, started_at: float, duration: float) -> Result:
    if isinstance(outcome, CheckFailed):
        status, output, reason, observed = Status.FAIL, outcome.message, outcome.reason, outcome.observed
    else:
        status, output, reason, observed = outcome.status, outcome.output, None, outcome.observed
    return Result(
        status=status,
        started_at=started_at,
        duration=duration,
        output=redact(str(output), check.masked)[:MAX_OUTPUT],
        reason=reason,
        observed=_valid_observed(observed),
    )


def _forget_tracebacks(exc: BaseException) -> None:
    """Drop the tracebacks of a failure and of what caused it, once it is a
    verdict: each holds the frames it passed through, whose variables hold
    the exception again, a reference cycle per failed run that only the
    garbage collector's pauses would free (tests/test_every_type.py)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__]


def _valid_observed(observed: Observed) -> Observed:
    return observed if isinstance(observed, dict) else {}


def _describe(check: AnyCheck, exc: Exception) -> CheckFailed:
    try:
        return check.describe_error(exc)
    except Exception:  # a broken mapping must not hide the original failure
        return CheckFailed(exception_text(exc))
