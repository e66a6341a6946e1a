"""Memory of the run history at 5,000 checks (bench/history.py)."""

from __future__ import annotations

from bench.support import Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    checks = 5000
    from probed.store import HISTORY_LENGTH

    section = Section(
        f"What the in-memory history of recent runs holds at {checks:,} checks (`bench/history.py`): Python "
        "memory in use with every check's ring full, minus the same without the rings (tracemalloc). Each "
        "run is kept as status, reason, start time and duration; outputs and observed values are not kept.",
        header=["runs kept per check", "MiB at 5,000 checks", "KiB / check", "bytes / run"],
    )
    for length in sorted({HISTORY_LENGTH, 60, 120}):
        figures = run_json("bench/history.py", str(checks), str(length))
        label = f"**{length}** (probed's)" if length == HISTORY_LENGTH else str(length)
        section.rows.append(
            [label, fmt(figures["mib"], 1), fmt(figures["kib_per_check"], 1), fmt(figures["bytes_per_run"], 0)]
        )
    section.notes.append(
        f"probed keeps {HISTORY_LENGTH} runs: 5 minutes at the default 10 s interval, a strip that fits a "
        "phone's width on the status page, for less memory than the rest of a check's state (compare RSS "
        "KiB / check under Scheduler scale); twice the length costs twice the memory for a strip too wide to show."
    )
    return section
