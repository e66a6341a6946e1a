"""Import time of each type of the table, its module and its driver (bench/drivers.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    runs = 3 if QUICK else 9
    figures = run_json("bench/drivers.py", str(runs))
    shared, asyncio_ms = figures.pop("shared_ms"), figures.pop("asyncio_ms")
    section = Section(
        "CPU time (`time.process_time`) a fresh process spends importing each type of the type table "
        "(`bench/drivers.py`), after `import probed.checks`, which every type shares "
        f"({fmt(shared, 1)} ms, mostly pydantic): the type's module (`import probed.checks.<type>`), then its "
        f"driver, medians of {runs} runs alternated across types. A type's module is imported only when a "
        "check of that type is configured, its driver only when the check is created to run: `probed validate` "
        "never pays a driver, and the other types pay neither.",
        header=["type", "driver modules", "module ms", "driver ms"],
    )
    for name, row in sorted(figures.items(), key=lambda item: (item[1]["driver_ms"] or 0, item[1]["module_ms"])):
        driver = "none" if row["driver_ms"] is None else fmt(row["driver_ms"], 1)
        modules = ", ".join(row["modules"]) or "probed's own modules"
        section.rows.append([name, modules, fmt(row["module_ms"], 1), driver])
    section.notes.append(
        f"`import asyncio` costs {fmt(asyncio_ms, 1)} ms after `probed.checks`: most type modules import it, so it "
        "is in their module figure; a type whose module does not (heartbeat, or one whose driver brings it) pays "
        "it with its driver instead, and `probed serve` has it loaded before any type."
    )
    return section
