"""file: a file exists (or must not), is fresh enough and has a plausible size.

For a backup, a cron job's output, a marker file: one path, no globs.
"""

from __future__ import annotations

import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.checks.levels import Levels, show
from probed.checks.threads import OneAtATime
from probed.fields import ByteSize, Duration, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

# stat can hang forever on a dead network filesystem: it runs in a thread, one
# at a time per check, so a check holds at most one hung thread. Threads start
# only when needed; the pool is large enough that several checks on one dead
# mount still leave threads for the healthy ones.
_EXECUTOR = ThreadPoolExecutor(max_workers=32, thread_name_prefix="probed-file")


class FileOptions(CheckOptions):
    """age and size are levels in disguise: max_age is `levels: {age: {fail_above: ...}}`."""

    type: Literal["file"]
    path: Path = Field(description="the one file (or directory) to watch; no globs")
    must_exist: bool = Field(True, description="false: the check fails while the path exists (a lock, a flag)")
    warn_age: Duration | None = Field(None, description="warn when the modification time is older than this")
    max_age: Duration | None = Field(None, description="fail when the modification time is older than this")
    min_size: ByteSize | None = Field(None, description="fail when the file is smaller than this (500MB, 1KiB)")
    max_size: ByteSize | None = Field(None, description="fail when the file is larger than this")

    @model_validator(mode="after")
    def _consistent(self) -> FileOptions:
        if not self.must_exist:
            judged = [k for k in ("warn_age", "max_age", "min_size", "max_size") if getattr(self, k) is not None]
            if judged or self.levels:
                raise ValueError(f"{(judged or ['levels'])[0]}: cannot judge a file that must not exist")
        if self.warn_age is not None and self.max_age is not None and self.warn_age > self.max_age:
            raise ValueError("warn_age must not be above max_age")
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError("min_size must not be above max_size")
        return self

    def implied_levels(self) -> dict[str, Levels]:
        levels = {}
        if self.warn_age is not None or self.max_age is not None:
            levels["age"] = Levels(warn_above=self.warn_age, fail_above=self.max_age)
        if self.min_size is not None or self.max_size is not None:
            levels["size"] = Levels(fail_below=self.min_size, fail_above=self.max_size)
        return levels


class FileCheck(Check[FileOptions]):
    options_model = FileOptions
    acyclic = True
    component_type = "system"
    gauges = (
        Gauge("age", "probed_file_age_seconds", "Seconds since the file was last modified."),
        Gauge("size", "probed_file_size_bytes", "Size of the file in bytes."),
    )

    def __init__(self, name: str, options: FileOptions) -> None:
        super().__init__(name, options)
        self.target = str(options.path)
        self._thread = OneAtATime[os.stat_result | None](
            _EXECUTOR, f"{options.path}: the previous run is still blocked in the kernel"
        )

    async def run(self) -> Outcome:
        found = await self._thread.call(self._stat)
        if not self.options.must_exist:
            if found is not None:
                raise CheckFailed(f"{self.target}: exists, and must not", Reason.UNEXPECTED, observe(found))
            return Outcome(Status.PASS, f"{self.target}: absent, as it must be", {"exists": Observation(False)})
        if found is None:
            raise CheckFailed(
                f"{self.target}: no such file or directory", Reason.UNEXPECTED, {"exists": Observation(False)}
            )
        observed = observe(found)
        age, size = float(observed["age"].value), float(observed["size"].value)
        return Outcome(
            Status.PASS, f"{self.target}: modified {format_duration(age, 1)} ago, {show(size, 'bytes')}", observed
        )

    def _stat(self) -> os.stat_result | None:
        """The path's status, following symbolic links (a mounted Kubernetes
        secret is one); None when it does not exist."""
        try:
            return os.stat(self.options.path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise CheckFailed(f"{self.target}: {exc.strerror or exc}") from None


def observe(found: os.stat_result) -> Observed:
    # A negative age (a modification time in the future) is shown as it is:
    # it means clock skew between this host and the one that wrote the file.
    return {
        "age": Observation(round(time.time() - found.st_mtime, 3), "s"),
        "size": Observation(found.st_size, "bytes"),
        "modified": Observation(int(found.st_mtime), "timestamp"),
        "exists": Observation(True),
        "kind": Observation(_kind(found.st_mode)),
    }


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    return "file" if stat.S_ISREG(mode) else "other"
