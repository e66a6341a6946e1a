"""dircount: how many entries a directory holds (a spool, a dead-letter folder).

A whole third-party check type: options, a run, a gauge. Levels come free:
`levels: {entries: {warn_above: 100}}`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field

from probed.checks.base import Check, CheckOptions, Gauge
from probed.model import CheckFailed, Observation, Outcome, Status


class DirCountOptions(CheckOptions):
    type: Literal["dircount"]
    path: Path = Field(description="the directory whose entries are counted")


class DirCountCheck(Check[DirCountOptions]):
    options_model = DirCountOptions
    component_type = "system"
    gauges = (Gauge("entries", "probed_dircount_entries", "Entries in the directory."),)

    async def run(self) -> Outcome:
        try:
            entries = len(os.listdir(self.options.path))
        except OSError as exc:
            raise CheckFailed(f"{self.options.path}: {exc.strerror}") from None
        return Outcome(Status.PASS, f"{self.options.path}: {entries} entries", {"entries": Observation(entries)})
