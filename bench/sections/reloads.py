"""RSS over repeated same-config reloads (bench/reloads.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.support import QUICK, Bench, Section, fmt, run_json, write_config


def measure(bench: Bench) -> Section:
    """Against the dependency servers, started for this section."""
    with bench.services() as services:
        return reloads(bench.work, services)


def reloads(work: Path, services: dict[str, Any]) -> Section:
    count = 5 if QUICK else 20
    checks: dict[str, dict[str, Any]] = {}
    for name, options in services["configs"].items():
        options = {k: v for k, v in options.items() if not k.startswith("_")}
        for i in range(3):
            checks[f"{name.split()[0]}-{len(checks)}-{i}"] = {**options, "interval": "1s", "timeout": "900ms"}
    path = write_config(work, "reloads.yaml", {"checks": checks})
    figures = run_json("bench/reloads.py", path, str(count))
    section = Section(
        f"`bench/reloads.py`: `probed serve` with three checks of every type against real local servers, "
        f"at a 1 s interval; SIGHUP {count} times, 2 s apart, RSS read before and after each.",
        header=["RSS at start MiB", "after 2 reloads MiB", f"after {count} MiB", "slope, second half, MiB / reload"],
        rows=[
            [
                fmt(figures["rss_start_mib"], 1),
                fmt(figures["rss_after_2_mib"], 1),
                fmt(figures["rss_end_mib"], 1),
                fmt(figures["slope_second_half_mib_per_reload"], 3),
            ]
        ],
    )
    return section
