"""Probes answered during back-to-back /metrics scrapes (bench/scrape.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    seconds = 5 if QUICK else 15
    section = Section(
        f"`bench/scrape.py`: `probed serve` with N disk checks; /health/live asked every 20 ms for {seconds} s "
        "on a kept-alive connection, first alone, then while another client scrapes /metrics back to back.",
        header=[
            "checks",
            "exposition KiB",
            "scrape ms",
            "probe p50 ms",
            "probe p99 ms",
            "during scrapes p50 ms",
            "during scrapes p99 ms",
            "during scrapes max ms",
        ],
    )
    for count in (1000, 5000):
        figures = run_json("bench/scrape.py", str(count), str(seconds))
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["exposition_kib"], 0),
                fmt(figures["scrape_ms"], 0),
                fmt(figures["probe_p50_ms"], 2),
                fmt(figures["probe_p99_ms"], 2),
                fmt(figures["scraping_p50_ms"], 2),
                fmt(figures["scraping_p99_ms"], 2),
                fmt(figures["scraping_max_ms"], 2),
            ]
        )
    section.notes.append(
        "The exposition is written on the event loop, 100 checks of one family per turn of the loop; "
        "the probe figures include the machine's noise (compare the two columns of one row)."
    )
    return section
