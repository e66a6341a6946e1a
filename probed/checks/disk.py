"""disk: free space and free inodes of a path, optionally a write test."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels, show
from probed.checks.threads import OneAtATime
from probed.fields import ByteSize, Percent
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

# statvfs and writes can hang forever on a dead network filesystem; they run in
# threads so that only this check waits, never the event loop. A check holds
# at most one thread (OneAtATime); threads start only when needed, and the
# pool is large enough that checks on one dead mount leave threads for the
# healthy ones (with 4, four hung checks took every thread).
_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probed-disk")


class DiskOptions(CheckOptions):
    type: Literal["disk"]
    optional_levels = frozenset({"inodes_free_percent"})
    path: Path = Field(description="a directory or file on the filesystem to watch")
    warn_free_percent: Percent | None = Field(10, description="warn below this much free space, in percent")
    fail_free_percent: Percent | None = Field(5, description="fail below this much free space, in percent")
    warn_free_bytes: ByteSize | None = Field(None, description="warn below this much free space (10GiB, 500MB)")
    fail_free_bytes: ByteSize | None = Field(None, description="fail below this much free space")
    warn_free_inodes_percent: Percent | None = Field(10, description="warn below this share of free inodes")
    fail_free_inodes_percent: Percent | None = Field(5, description="fail below this share of free inodes")
    write_test: bool = Field(False, description="create, write and remove a small file in path")

    @model_validator(mode="after")
    def _warn_above_fail(self) -> DiskOptions:
        for warn, fail in [
            ("warn_free_percent", "fail_free_percent"),
            ("warn_free_bytes", "fail_free_bytes"),
            ("warn_free_inodes_percent", "fail_free_inodes_percent"),
        ]:
            warn_level, fail_level = getattr(self, warn), getattr(self, fail)
            if warn_level is not None and fail_level is not None and warn_level < fail_level:
                raise ValueError(f"{warn} ({warn_level:g}) must not be below {fail} ({fail_level:g})")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        """warn_free_percent: 10 is `levels: {free_percent: {warn_below: 10}}`, and so on."""
        spelled = {
            "free_percent": (self.warn_free_percent, self.fail_free_percent),
            "free_bytes": (self.warn_free_bytes, self.fail_free_bytes),
            "inodes_free_percent": (self.warn_free_inodes_percent, self.fail_free_inodes_percent),
        }
        return {
            name: Levels(warn_below=warn, fail_below=fail)
            for name, (warn, fail) in spelled.items()
            if warn is not None or fail is not None
        }


class DiskCheck(Check[DiskOptions]):
    options_model = DiskOptions
    acyclic = True
    component_type = "system"
    gauges = (
        Gauge(
            "free_bytes", "probed_disk_free_bytes", "Free bytes on the filesystem, as an unprivileged user sees them."
        ),
        Gauge("free_ratio", "probed_disk_free_ratio", "Free space on the filesystem as a ratio of its size (0 to 1)."),
        Gauge("inodes_free_ratio", "probed_disk_inodes_free_ratio", "Free inodes as a ratio of all inodes (0 to 1)."),
    )

    def __init__(self, name: str, options: DiskOptions) -> None:
        super().__init__(name, options)
        self.target = str(options.path)
        self._thread = OneAtATime[Observed](
            _EXECUTOR, f"{options.path}: the previous run is still blocked in the kernel"
        )

    async def run(self) -> Outcome:
        observed = await self._thread.call(self._measure)
        free = (
            f"{float(observed['free_percent'].value):.1f}% free ({show(float(observed['free_bytes'].value), 'bytes')})"
        )
        return Outcome(Status.PASS, f"{self.target}: {free}", observed)

    def _measure(self) -> Observed:
        path = self.options.path
        try:
            stats = os.statvfs(path)
        except FileNotFoundError:
            raise CheckFailed(f"{path}: no such file or directory") from None
        except OSError as exc:
            raise CheckFailed(f"{path}: {exc.strerror}") from None
        observed = free_space(stats)
        if self.options.write_test:
            write_probe_file(path)
        return observed


def free_space(stats: os.statvfs_result) -> Observed:
    """Free space as an unprivileged process sees it (f_bavail, not f_bfree)."""
    total = stats.f_blocks * stats.f_frsize
    free = stats.f_bavail * stats.f_frsize
    observed: Observed = {
        "free_ratio": Observation(round(free / total, 6) if total else 0.0, "ratio"),
        "free_percent": Observation(round(100 * free / total, 4) if total else 0.0, "%"),
        "free_bytes": Observation(free, "bytes"),
        "total_bytes": Observation(total, "bytes"),
    }
    # Some filesystems (btrfs, overlay on some kernels) report no inode counts.
    if stats.f_files:
        observed["inodes_free_ratio"] = Observation(round(stats.f_favail / stats.f_files, 6), "ratio")
        observed["inodes_free_percent"] = Observation(round(100 * stats.f_favail / stats.f_files, 4), "%")
        observed["inodes_free"] = Observation(stats.f_favail, "inodes")
    return observed


def write_probe_file(path: Path) -> None:
    directory = path if path.is_dir() else path.parent
    probe = directory / f".probed-write-test-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as handle:
            handle.write(b"probed write test\n")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise CheckFailed(f"{directory}: not writable: {exc.strerror}", Reason.UNEXPECTED) from None
    finally:
        probe.unlink(missing_ok=True)
