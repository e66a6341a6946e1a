"""probed serve with every type for minutes: RSS, fds, threads and probe time (bench/soak.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    seconds, copies = (60, 1) if QUICK else (300, 3)
    figures = run_json("bench/soak.py", str(seconds), str(copies))
    section = Section(
        f"`probed serve` with {figures['checks']} checks ({copies} of every type in the cost table, against the "
        f"same real servers) at a 1 s interval for {seconds} s: {figures['runs']:,} runs. Sampled every 2 s; "
        "trends are least-squares slopes after the first quarter (warm-up), per hour. Flat means no leak.",
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
    return section
