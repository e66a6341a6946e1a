"""CPU and wall time of one run of each type against real servers (bench/cost.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    """Against the dependency servers, started for this section."""
    with bench.services() as services:
        return cost_per_run(bench.work, services)


def cost_per_run(work: Path, services: dict[str, Any]) -> Section:
    runs = 50 if QUICK else 200
    section = Section(
        f"CPU time of probed's process per check run (all threads, `time.process_time`), {runs} runs one after "
        "another against real local servers (each its own process), median of 3 batches.",
        header=["check", "CPU µs / run", "wall ms / run"],
    )
    configs = services["configs"]
    results = {}
    for name, options in configs.items():
        results[name] = run_json("bench/cost.py", json.dumps(options), str(runs))
        section.rows.append([name, fmt(results[name]["cpu_us"], 0), fmt(results[name]["wall_ms"], 2)])
    mysql_fresh, mysql_kept = results["mysql (fresh connection)"], results["mysql (kept connection)"]
    section.notes.append(
        f"A kept mysql connection costs {mysql_kept['cpu_us'] / mysql_fresh['cpu_us']:.2f}x the CPU of a fresh one; "
        "an amqp run always opens and closes its connection (AMQP's handshake is three round trips)."
    )
    fresh, kept = results["postgres (fresh connection)"], results["postgres (kept connection)"]
    section.notes.append(
        f"A kept postgres connection costs {kept['cpu_us'] / fresh['cpu_us']:.2f}x the CPU of a fresh "
        f"one per run on probed's side; on the server, {fresh['sessions']} runs opened "
        f"{fresh['sessions']} sessions fresh and {kept['sessions']} kept (pg_stat_database.sessions)."
    )
    pods, interval = 500, 10
    section.notes.append(
        f"Server load at a fleet of {pods} pods, one postgres check each at {interval} s: "
        f"{pods * 60 // interval:,} new connections per minute with fresh connections, "
        f"none in steady state with `keep_connection: true`."
    )
    return section
