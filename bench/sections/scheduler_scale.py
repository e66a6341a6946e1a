"""The scheduler and store with N checks in a fresh process (bench/scale.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    target = bench.target
    seconds = 10
    sizes = [10, 100, 1000] if QUICK else [10, 100, 1000, 5000]
    section = Section(
        "probed's scheduler and store in a fresh process (`bench/scale.py`) with N checks at a 10 s interval, "
        f"measured over {seconds} s after one interval of warm-up. CPU is this process's, all threads; the "
        "http checks' target is another process. Drift: how late each run started against its plan.",
        header=[
            "kind",
            "checks",
            "runs",
            "CPU % of a core",
            "CPU µs / run",
            "RSS MiB",
            "RSS KiB / check",
            "drift p50 ms",
            "drift p99 ms",
        ],
    )
    results: dict[tuple[str, int], dict[str, float]] = {}
    for kind in ("http", "disk"):
        for count in sizes:
            figures = run_json("bench/scale.py", kind, str(count), target, str(seconds))
            results[(kind, count)] = figures
            section.rows.append(
                [
                    kind,
                    fmt(count, 0),
                    fmt(figures["runs"], 0),
                    fmt(figures["cpu_percent"], 1),
                    fmt(figures["cpu_us_per_run"], 0),
                    fmt(figures["rss_mib"], 1),
                    fmt(figures["rss_per_check_kib"], 1),
                    fmt(figures["drift_p50_ms"], 2),
                    fmt(figures["drift_p99_ms"], 2),
                ]
            )
    http_1000 = results[("http", 1000)]
    section.notes.append(
        f"1,000 http checks at 10 s: {http_1000['cpu_percent']:.1f}% of one core (target: under 25%), "
        f"drift p99 {http_1000['drift_p99_ms']:.1f} ms (target: under 50 ms)."
    )
    biggest = max(sizes)
    per_check = results[("http", biggest)]["rss_per_check_kib"]
    section.notes.append(
        f"Memory per check levels off at about {per_check:.0f} KiB per http check at {biggest:,} checks "
        "(an aiohttp session and connector each) and less for disk checks; the rest is the process's "
        "fixed ~36 MiB."
    )
    return section
