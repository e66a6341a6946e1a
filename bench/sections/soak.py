"""probed serve with every type for minutes: RSS, fds, threads, probe time and
/health/ready against an idle probed's (bench/soak.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json

INTERVAL = 0.25  # about issue 20's soak (65 checks at 326 runs/s): 2 of every type, 4 runs a second each


def measure(bench: Bench) -> Section:
    seconds, copies = (60, 1) if QUICK else (300, 2)
    figures = run_json("bench/soak.py", str(seconds), str(copies), str(INTERVAL))
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
    loaded, idle = figures["ready"]["loaded"], figures["ready"]["idle"]
    section.notes.append(
        "`/health/ready` after the warm-up, a new connection per probe (as the kubelet asks), every 0.1 s: "
        f"p50 {fmt(loaded['p50'], 1)} ms, p99 {fmt(loaded['p99'], 1)} ms, max {fmt(loaded['max'], 1)} ms over "
        f"{loaded['probes']:,} probes (target: p99 under 20 ms); an idle probed (one disk check) asked in turn in "
        f"the same run: p50 {fmt(idle['p50'], 1)} ms, p99 {fmt(idle['p99'], 1)} ms, max {fmt(idle['max'], 1)} ms. "
        f"probed_event_loop_lag_seconds at the end (the longest of the last minute): {figures['loop_lag_ms']:.1f} ms."
    )
    return section
