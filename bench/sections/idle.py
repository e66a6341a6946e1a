"""Probes answered while idle connections flood the server (bench/idle.py)."""

from __future__ import annotations

from bench.support import Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    clients, nofile = 600, 256
    section = Section(
        f"`bench/idle.py`: `probed serve` under `RLIMIT_NOFILE` {nofile}; {clients} clients each send half a "
        "request and wait; /health/live is asked 200 times before and during the flood (2 s timeout each).",
        header=["phase", "probes failed", "p50 ms", "p99 ms"],
    )
    figures = run_json("bench/idle.py", str(clients), str(nofile))
    for phase in ("quiet", "flooded"):
        row = figures[phase]
        section.rows.append([phase, fmt(row["failed"], 0), fmt(row["p50_ms"], 2), fmt(row["p99_ms"], 2)])
    section.notes.append(
        f"{figures['connected']} of the {clients} clients got a connection; probed closed {figures['closed']} "
        "of them, oldest idle first, to stay under its connection limit (a quarter of the file descriptors)."
    )
    return section
