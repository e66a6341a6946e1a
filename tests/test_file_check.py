"""file check against real files with set modification times, and a hung filesystem."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from probed.config import ConfigError
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.checks import check_from, run_check
from tests.support.faults import hung_filesystem
from tests.support.net import open_fds

HOUR = 3600


def aged(path: Path, seconds: float, size: int = 10) -> Path:
    """A file of `size` bytes last modified `seconds` ago."""
    path.write_bytes(b"x" * size)
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


async def test_fresh_file_passes_and_says_what_it_saw(tmp_path: Path) -> None:
    backup = aged(tmp_path / "backup.tar", 2 * HOUR, size=2048)
    result = await run_check({"type": "file", "path": str(backup), "max_age": "24h"})
    assert result.status is Status.PASS, result.output
    assert result.output == f"{backup}: modified 2h ago, 2.0 KiB"
    assert next(iter(result.observed)) == "age"  # the primary value
    assert 2 * HOUR <= float(result.observed["age"].value) < 2 * HOUR + 60
    assert result.observed["size"].value == 2048
    assert result.observed["kind"].value == "file"


async def test_stale_file_fails(tmp_path: Path) -> None:
    backup = aged(tmp_path / "backup.tar", 30 * HOUR)
    result = await run_check({"type": "file", "path": str(backup), "max_age": "24h"})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert "age is 1d6h, above the fail level of 1d" in result.output
    assert "age" in result.observed  # a failure still says how old it is


async def test_warn_age_before_max_age(tmp_path: Path) -> None:
    backup = aged(tmp_path / "backup.tar", 5 * HOUR)
    result = await run_check({"type": "file", "path": str(backup), "warn_age": "4h", "max_age": "24h"})
    assert result.status is Status.WARN, result.output
    assert "above the warn level" in result.output


async def test_size_levels(tmp_path: Path) -> None:
    dump = aged(tmp_path / "dump.sql", 60, size=100)
    small = await run_check({"type": "file", "path": str(dump), "min_size": "1KiB"})
    large = await run_check({"type": "file", "path": str(dump), "max_size": 50})
    fits = await run_check({"type": "file", "path": str(dump), "min_size": 100, "max_size": "1KB"})
    warned = await run_check({"type": "file", "path": str(dump), "levels": {"size": {"warn_below": 1000}}})
    assert small.status is Status.FAIL and "size is 100 B, below the fail level of 1.0 KiB" in small.output
    assert large.status is Status.FAIL and "above the fail level" in large.output
    assert fits.status is Status.PASS, fits.output
    assert warned.status is Status.WARN, warned.output


async def test_missing_file_fails(tmp_path: Path) -> None:
    missing = tmp_path / "never-written"
    result = await run_check({"type": "file", "path": str(missing), "max_age": "1h"})
    assert result.status is Status.FAIL and result.reason is Reason.UNEXPECTED
    assert result.output == f"{missing}: no such file or directory"
    assert result.observed["exists"].value is False


async def test_must_not_exist(tmp_path: Path) -> None:
    flag = tmp_path / "maintenance"
    absent = await run_check({"type": "file", "path": str(flag), "must_exist": False})
    flag.touch()
    present = await run_check({"type": "file", "path": str(flag), "must_exist": False})
    assert absent.status is Status.PASS and absent.output == f"{flag}: absent, as it must be"
    assert present.status is Status.FAIL and present.reason is Reason.UNEXPECTED
    assert present.output == f"{flag}: exists, and must not"


async def test_follows_symbolic_links_like_a_kubernetes_secret(tmp_path: Path) -> None:
    data = aged(tmp_path / "..data-1", 10 * HOUR)
    link = tmp_path / "tls.crt"
    link.symlink_to(data)
    linked = await run_check({"type": "file", "path": str(link), "max_age": "1h"})
    data.unlink()
    dangling = await run_check({"type": "file", "path": str(link)})
    assert linked.status is Status.FAIL and "above the fail level" in linked.output  # the target's age
    assert dangling.status is Status.FAIL and "no such file" in dangling.output


async def test_a_directory_is_judged_by_its_own_mtime(tmp_path: Path) -> None:
    result = await run_check({"type": "file", "path": str(tmp_path)})
    assert result.status is Status.PASS, result.output
    assert result.observed["kind"].value == "directory"


async def test_a_path_through_a_file_is_absent(tmp_path: Path) -> None:
    # A path through a regular file: the kernel says "not a directory", which
    # for a health check is as absent as a missing file.
    result = await run_check({"type": "file", "path": str(aged(tmp_path / "f", 1) / "child")})
    assert result.status is Status.FAIL and "no such file" in result.output


def test_options_that_contradict_each_other_are_config_errors(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"must_exist": False, "max_age": "1h"}, "max_age: cannot judge a file that must not exist"),
        ({"warn_age": "2h", "max_age": "1h"}, "warn_age must not be above max_age"),
        ({"min_size": "2KB", "max_size": "1KB"}, "min_size must not be above max_size"),
        ({"max_age": "soon"}, "invalid duration"),
    ]
    for options, error in cases:
        with pytest.raises(ConfigError) as raised:
            check_from({"type": "file", "path": str(tmp_path), **options})
        assert error in str(raised.value)


async def test_a_hung_filesystem_costs_one_thread_per_check_and_no_descriptors(tmp_path: Path) -> None:
    """Several checks on one dead mount, run after run: each run times out,
    each check holds one hung thread, a healthy check beside them still runs,
    and no descriptor is left behind."""
    with hung_filesystem(tmp_path / "nfs") as mount:
        hung = [
            check_from({"type": "file", "path": str(mount / f"backup-{i}"), "timeout": "100ms", "interval": "1s"})
            for i in range(6)
        ]
        healthy = check_from({"type": "file", "path": str(tmp_path), "timeout": "1s", "interval": "2s"}, name="ok")
        fds, threads = open_fds(), threading.active_count()
        results = [await run_once(check) for _ in range(5) for check in hung]
        beside = await run_once(healthy)  # same pool, other check: unaffected
        assert {r.reason for r in results} == {Reason.TIMEOUT}
        assert "still blocked in the kernel" in results[-1].output
        assert beside.status is Status.PASS, beside.output
        assert open_fds() <= fds
        assert threading.active_count() <= threads + len(hung) + 1  # one hung per check, one for the healthy
