"""Verdict changes of N checks at once through the store (bench/transitions.py)."""

from __future__ import annotations

from bench.support import Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    section = Section(
        "When a shared dependency dies, every check on it changes verdict at once. `bench/transitions.py`: "
        "N checks each go pending -> pass, then pass -> fail, through the store (the event loop is blocked "
        "meanwhile, so this is time no probe is answered).",
        header=["checks", "transitions", "total ms", "µs / transition"],
    )
    for count in (100, 1000, 5000):
        figures = run_json("bench/transitions.py", str(count))
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["transitions"], 0),
                fmt(1000 * figures["seconds"], 1),
                fmt(figures["us_per_transition"], 2),
            ]
        )
    return section
