"""SIGTERM to exit with every type configured (bench/shutdown.py, issue 16)."""

from __future__ import annotations

from bench.support import Bench, Section


def measure(bench: Bench) -> Section:
    from bench.shutdown import HEADER, ROUNDS, RUNNING, rows

    return Section(
        f"`bench/shutdown.py`: `probed serve` stopped by SIGTERM after {RUNNING:g} s of runs, with one disk check "
        "and with every type configured, each networked type against a port that hangs and one that closes at "
        f"once (runs in flight at the signal); medians of {ROUNDS} rounds, alternated. Target: exit 0 within a "
        "second. `python bench/shutdown.py main HEAD` compares two revisions in one session.",
        header=HEADER,
        rows=rows(),
    )
