"""The command check against running its plugin directly (bench/command.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    runs = 50 if QUICK else 300
    figures = run_json("bench/command.py", str(runs))
    section = Section(
        f"The same Nagios plugin (`check_tcp` against a local port), {runs} runs one after another: with "
        "`subprocess.run`, with asyncio's subprocess API alone, and as a probed command check (runner, own "
        "session, group kill, bounded output, performance data). CPU per run from `getrusage`: the calling "
        "process (all threads) and the plugin (reaped children); median of 3 batches.",
        header=["way", "caller CPU µs / run", "plugin CPU µs / run", "wall ms / run"],
    )
    for name, row in figures.items():
        section.rows.append([name, fmt(row["parent_us"], 0), fmt(row["children_us"], 0), fmt(row["wall_ms"], 2)])
    probed, floor = figures["probed command check"], figures["asyncio.create_subprocess_exec"]
    section.notes.append(
        f"probed adds {probed['parent_us'] - floor['parent_us']:,.0f} µs of CPU per run to asyncio's own "
        "subprocess handling; most of the gap to `subprocess.run` is asyncio's (on Python 3.11 a thread "
        "waits for each child), which keeps a hung plugin off the event loop."
    )
    return section
