"""probed and blackbox_exporter side by side, type by type: bench/blackbox.py."""

from __future__ import annotations

from bench import blackbox
from bench.support import Bench, Section


def measure(bench: Bench) -> Section:
    return Section(**blackbox.measure(bench.work))
