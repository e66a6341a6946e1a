"""disk check against real directories."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.checks import NO_LEVELS, check_from, run_check
from tests.support.faults import hung_filesystem


async def test_reports_what_statvfs_sees(tmp_path: Path) -> None:
    result = await run_check({"type": "disk", "path": str(tmp_path), **NO_LEVELS})
    stats = os.statvfs(tmp_path)
    assert result.status is Status.PASS, result.output
    free = int(result.observed["free_bytes"].value)
    assert abs(free - stats.f_bavail * stats.f_frsize) < 64 * 1024 * 1024  # other writers may move it a little
    assert result.observed["total_bytes"].value == stats.f_blocks * stats.f_frsize
    assert 0 < float(result.observed["free_ratio"].value) <= 1
    assert next(iter(result.observed)) == "free_ratio"  # the primary observed value


async def test_warn_level_in_percent(tmp_path: Path) -> None:
    # No real filesystem is 100% free, so a warn level of 100% always trips.
    result = await run_check({"type": "disk", "path": str(tmp_path), **NO_LEVELS, "warn_free_percent": 100})
    assert result.status is Status.WARN
    assert "below the warn level of 100%" in result.output


async def test_fail_level_in_bytes(tmp_path: Path) -> None:
    result = await run_check({"type": "disk", "path": str(tmp_path), **NO_LEVELS, "fail_free_bytes": "1000PB"})
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert "below the fail level of" in result.output
    assert "free_bytes" in result.observed  # a failure still says what it saw


async def test_fail_beats_warn(tmp_path: Path) -> None:
    result = await run_check(
        {"type": "disk", "path": str(tmp_path), **NO_LEVELS, "warn_free_percent": 100, "fail_free_percent": 100}
    )
    assert result.status is Status.FAIL


async def test_levels_that_are_not_reached_pass(tmp_path: Path) -> None:
    result = await run_check(
        {
            "type": "disk",
            "path": str(tmp_path),
            "warn_free_percent": 0,
            "fail_free_percent": 0,
            "warn_free_bytes": 1,
            "fail_free_bytes": 0,
            "warn_free_inodes_percent": 0,
            "fail_free_inodes_percent": 0,
        }
    )
    assert result.status is Status.PASS, result.output


async def test_inode_levels(tmp_path: Path) -> None:
    if os.statvfs(tmp_path).f_files == 0:
        pytest.skip("this filesystem reports no inodes; nothing to judge")
    result = await run_check({"type": "disk", "path": str(tmp_path), **NO_LEVELS, "warn_free_inodes_percent": 100})
    assert result.status is Status.WARN
    assert "inodes_free_percent is" in result.output


async def test_missing_path_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = await run_check({"type": "disk", "path": str(missing)})
    assert result.status is Status.FAIL
    assert result.reason is Reason.ERROR
    assert result.output == f"{missing}: no such file or directory"


async def test_write_test_passes_and_leaves_nothing(tmp_path: Path) -> None:
    result = await run_check({"type": "disk", "path": str(tmp_path), **NO_LEVELS, "write_test": True})
    assert result.status is Status.PASS, result.output
    assert list(tmp_path.iterdir()) == []


async def test_write_test_fails_where_no_file_can_be_created() -> None:
    # /proc accepts statvfs but no new files, whatever our privileges.
    result = await run_check({"type": "disk", "path": "/proc", **NO_LEVELS, "write_test": True})
    assert result.status is Status.FAIL
    assert result.reason is Reason.UNEXPECTED
    assert result.output.startswith("/proc: not writable:")


async def test_checks_on_a_hung_filesystem_leave_threads_for_the_healthy_ones(tmp_path: Path) -> None:
    """Six disk checks on one dead mount each hold one hung thread; a disk
    check on a healthy filesystem still runs beside them."""
    with hung_filesystem(tmp_path / "nfs") as mount:
        hung = [
            check_from({"type": "disk", "path": str(mount), "timeout": "100ms", "interval": "1s"}, name=f"nfs{i}")
            for i in range(6)
        ]
        healthy = check_from({"type": "disk", "path": str(tmp_path), **NO_LEVELS}, name="ok")
        threads = threading.active_count()
        results = [await run_once(check) for _ in range(3) for check in hung]
        beside = await run_once(healthy)
        assert {r.reason for r in results} == {Reason.TIMEOUT}
        assert beside.status is Status.PASS, beside.output
        assert threading.active_count() <= threads + len(hung) + 1
