"""Memory and loop stalls of N s3 checks (bench/s3load.py)."""

from __future__ import annotations

from typing import Any

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    """Against the dependency servers, started for this section."""
    with bench.services() as services:
        return s3_memory(services)


def s3_memory(services: dict[str, Any]) -> Section:
    seconds = 5 if QUICK else 15
    endpoint = services["configs"]["s3"]["endpoint_url"]
    section = Section(
        "`bench/s3load.py`: probed's daemon in a fresh process with N s3 checks against moto's server (another "
        f"process) at a 2 s interval; after every check has run twice, {seconds} s of a 5 ms timer on the event "
        "loop (how late it fires is how long a probe would wait) and the garbage collector's longest pause.",
        header=["s3 checks", "RSS MiB", "loop stall p99 ms", "longest loop stall ms", "longest GC pause ms"],
    )
    for count in (1, 20, 100):
        figures = run_json("bench/s3load.py", str(count), endpoint, str(seconds))
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["rss_mib"], 1),
                fmt(figures["stall_p99_ms"], 1),
                fmt(figures["stall_max_ms"], 1),
                fmt(figures["gc_longest_ms"], 1),
            ]
        )
    return section
