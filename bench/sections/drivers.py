"""Import time of each type's driver (bench/drivers.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    runs = 3 if QUICK else 9
    figures = run_json("bench/drivers.py", str(runs))
    baseline = figures.pop("baseline_ms")
    section = Section(
        f"Wall time a fresh process spends importing each type's driver (`python -c 'import ...'`), minus "
        f"`python -c pass` ({fmt(baseline, 1)} ms), medians of {runs} alternated runs. A driver is imported "
        "only when a check of its type is created to run: `probed validate` and the other types never pay it.",
        header=["type", "driver modules", "import ms"],
    )
    for name, row in sorted(figures.items(), key=lambda item: item[1]["ms"]):
        section.rows.append([name, ", ".join(row["modules"]), fmt(row["ms"], 1)])
    return section
