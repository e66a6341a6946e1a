"""probed and blackbox_exporter at a pod's pace, 10 checks every 10 s: bench/pace.py."""

from __future__ import annotations

from bench import pace
from bench.support import Bench, Section


def measure(bench: Bench) -> Section:
    return Section(**pace.measure(bench.work))
