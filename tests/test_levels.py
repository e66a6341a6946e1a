"""One levels mechanism for every type, judged by the runner on observed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from probed.config import ConfigError
from probed.model import Reason, Status
from tests.support.checks import NO_LEVELS, config_from, run_check


async def test_levels_judge_any_observed_number(tmp_path: Path) -> None:
    disk = {"type": "disk", "path": str(tmp_path), **NO_LEVELS}
    warned = await run_check({**disk, "levels": {"free_percent": {"warn_below": 100}}})
    failed = await run_check({**disk, "levels": {"total_bytes": {"fail_above": 1}}})
    passed = await run_check({**disk, "levels": {"free_ratio": {"fail_below": 0}}})
    assert (
        warned.status is Status.WARN and "free_percent is" in warned.output and "below the warn level" in warned.output
    )
    assert failed.status is Status.FAIL and failed.reason is Reason.UNEXPECTED
    assert "total_bytes" in failed.observed  # a failure still says what it saw
    assert passed.status is Status.PASS


async def test_a_levels_entry_wins_over_its_type_specific_spelling(tmp_path: Path) -> None:
    disk = {"type": "disk", "path": str(tmp_path), **NO_LEVELS, "warn_free_percent": 100}
    spelled = await run_check(disk)
    overridden = await run_check({**disk, "levels": {"free_percent": {"warn_below": 0}}})
    assert spelled.status is Status.WARN
    assert overridden.status is Status.PASS, overridden.output


async def test_a_level_on_a_value_not_observed_warns_and_says_so(tmp_path: Path) -> None:
    result = await run_check(
        {"type": "disk", "path": str(tmp_path), **NO_LEVELS, "levels": {"free_parsecs": {"fail_above": 1}}}
    )
    assert result.status is Status.WARN
    assert result.output.endswith("free_parsecs not observed this run, its levels were not judged")


async def test_levels_on_a_failed_run_change_nothing(tmp_path: Path) -> None:
    result = await run_check(
        {"type": "disk", "path": str(tmp_path / "missing"), "levels": {"free_percent": {"warn_below": 100}}}
    )
    assert result.status is Status.FAIL and "no such file or directory" in result.output


def test_levels_that_cannot_work_are_config_errors() -> None:
    with pytest.raises(ConfigError) as error:
        config_from(
            {
                "a": {"type": "disk", "path": "/", "levels": {"free_percent": {}}},
                "b": {"type": "disk", "path": "/", "levels": {"free_percent": {"warn_above": 5, "fail_above": 1}}},
                "c": {"type": "disk", "path": "/", "levels": {"free_percent": {"warn_abov": 5}}},
            }
        )
    problems = str(error.value)
    assert "checks.a.levels: free_percent has no warn_/fail_ level" in problems
    assert "warn_above must not be above fail_above" in problems
    assert "checks.c.levels.free_percent.warn_abov: unknown key" in problems
