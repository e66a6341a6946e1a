"""probed serve with every type for minutes: RSS, fds, threads, probe time and
/health/ready against an idle probed's (bench/soak.py); with BENCH_BASELINE_REV,
that revision's probed in alternate rounds, for a before/after in one run."""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.support import QUICK, ROOT, Bench, Section, checkout, fmt, run_json

INTERVAL = 0.25  # about issue 20's soak (65 checks at 326 runs/s): 2 of every type, 4 runs a second each


def measure(bench: Bench) -> Section:
    seconds, copies = (60, 1) if QUICK else (300, 2)
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    if baseline_rev:
        seconds = 60 if QUICK else 120  # each round; two rounds of each code
    sources = {"this": str(ROOT)}
    if baseline_rev:
        sources = {baseline_rev: str(checkout(baseline_rev, bench.work)), **sources}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
    for _ in range(1 if QUICK or not baseline_rev else 2):
        for name, source in sources.items():  # alternated: both meet the same machine
            runs[name].append(run_json("bench/soak.py", str(seconds), str(copies), str(INTERVAL), source))
    figures = runs["this"][0]
    section = Section(
        f"`probed serve` with {figures['checks']} checks ({copies} of every type in the cost table, against the "
        f"same real servers) at a {INTERVAL * 1000:.0f} ms interval (timeout {INTERVAL * 900:.0f} ms) for {seconds} s: "
        f"{figures['runs']:,} runs "
        f"({figures['runs'] / seconds:,.0f} a second). Sampled every 2 s; trends are least-squares slopes after "
        "the first quarter (warm-up), per hour. Flat means no leak.",
        header=["sampled", "start", "end", "max", "median", "slope per hour"],
    )
    for key, label in (
        ("rss_mib", "RSS MiB"),
        ("fds", "open fds"),
        ("threads", "threads"),
        ("probe_ms", "/health/live ms"),
    ):
        row = figures[key]
        section.rows.append(
            [label, fmt(row["start"], 1), fmt(row["end"], 1), fmt(row["max"], 1), fmt(row["median"], 1),
             fmt(row["slope_per_hour"], 1)]
        )  # fmt: skip
    if baseline_rev:
        section.notes.append(f"The table is this tree's first round; {baseline_rev} ran in alternating rounds.")
    for name, figured in runs.items():
        section.notes.append(f"{name}: {_ready_note(figured)}")
    return section


def _ready_note(runs: list[dict[str, Any]]) -> str:
    """/health/ready of the loaded and the idle probed, medians over the rounds (max: over all)."""

    def median(server: str, key: str) -> float:
        return float(statistics.median(run["ready"][server][key] for run in runs))

    probes = sum(run["ready"]["loaded"]["probes"] for run in runs)
    top = max(run["ready"]["loaded"]["max"] for run in runs)
    idle_top = max(run["ready"]["idle"]["max"] for run in runs)
    lag = statistics.median(run["loop_lag_ms"] for run in runs)
    rate = statistics.median(run["runs"] / run["seconds"] for run in runs)
    return (
        "`/health/ready` after the warm-up, a new connection per probe (as the kubelet asks), every 0.1 s: "
        f"p50 {fmt(median('loaded', 'p50'), 1)} ms, p99 {fmt(median('loaded', 'p99'), 1)} ms, max {fmt(top, 1)} ms "
        f"over {probes:,} probes (target: p99 under 20 ms); an idle probed (one disk check) asked in turn in the "
        f"same run: p50 {fmt(median('idle', 'p50'), 1)} ms, p99 {fmt(median('idle', 'p99'), 1)} ms, max "
        f"{fmt(idle_top, 1)} ms. {rate:,.0f} runs a second; probed_event_loop_lag_seconds at the end (the longest "
        f"of the last minute): {lag:.1f} ms."
    )
