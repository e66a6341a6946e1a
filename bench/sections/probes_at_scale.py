"""Probes at 2,000 checks against a hanging target, across reloads and scrapes
(bench/probe_load.py), beside an idle probed; with BENCH_BASELINE_REV, that
revision's probed in alternate rounds, for a before/after in one run."""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.support import QUICK, ROOT, Bench, Section, checkout, fmt, run_json


def measure(bench: Bench) -> Section:
    """bench/probe_load.py; with BENCH_BASELINE_REV, that revision's probed in alternate rounds."""
    rounds = 1 if QUICK else 2
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    sources = {"this": str(ROOT)}
    if baseline_rev:
        sources = {baseline_rev: str(checkout(baseline_rev, bench.work)), **sources}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for _ in range(rounds):
        for name, source in sources.items():  # alternated: both meet the same machine
            runs[name].append(run_json("bench/probe_load.py", "2000", source))
    section = Section(
        "`bench/probe_load.py`: two `probed serve` at once, one with 2,000 http checks (10 s interval, 2 s "
        "timeout, max_concurrency 2000), one idle (one such check), all against an accept-and-hang target; "
        "/health/live and /health/ready asked every 30 ms on fresh connections (2 s timeout: no answer "
        "counts as 2,000 ms) through start (14 s from the first answer), steady (6 s), a SIGHUP with the "
        "config unchanged (8 s), a SIGHUP after every check's timeout changed (10 s: each is built again "
        f"and runs at once) and back-to-back /metrics scrapes (10 s). {rounds} round(s) per code, "
        "alternated; p50 and p99 are medians over rounds, max and counts over all.",
        header=["code", "probed", "phase", "probes", "p50 ms", "p99 ms", "max ms", "over 250 ms", "no answer"],
    )
    for name, figures in runs.items():
        for server in ("loaded", "idle"):
            for phase in figures[0][server]:
                rows = [run[server][phase] for run in figures]
                section.rows.append(
                    [
                        name,
                        server,
                        phase,
                        fmt(sum(row["probes"] for row in rows), 0),
                        fmt(statistics.median(row["p50_ms"] for row in rows), 1),
                        fmt(statistics.median(row["p99_ms"] for row in rows), 1),
                        fmt(max(row["max_ms"] for row in rows), 1),
                        fmt(sum(row["over_250ms"] for row in rows), 0),
                        fmt(sum(row["no_answer"] for row in rows), 0),
                    ]
                )
        scrape = statistics.median(run["scrape_ms"]["loaded"] for run in figures)
        changed = statistics.median(run["reloads"]["loaded"]["reload changed"]["took_effect_s"] for run in figures)
        section.notes.append(
            f"{name}: a scrape of the loaded probed took {fmt(scrape, 0)} ms (median); the changed reload took "
            f"effect {fmt(changed, 2)} s after the signal."
        )
    return section
