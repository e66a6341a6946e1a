"""CPU of watching files for reload, off and on (bench/watch.py)."""

from __future__ import annotations

from bench.support import QUICK, Bench, Section, fmt, run_json


def measure(bench: Bench) -> Section:
    files, seconds, rounds = 10, (10 if QUICK else 30), 3
    figures = run_json("bench/watch.py", str(files), str(seconds), str(rounds))
    return Section(
        f"`bench/watch.py`: `probed serve` with {files} heartbeat checks, each with a `token_file`, every 10 s "
        f"({figures['watched_files']} files watched with the config); its CPU time over {seconds} s, "
        f"`server.watch_files` off and on, interleaved, median of {rounds} rounds; and one poll (a `stat` of "
        "every file) timed in-process.",
        header=["watched files", "CPU off ms / min", "CPU on ms / min", "one poll µs"],
        rows=[
            [
                fmt(figures["watched_files"], 0),
                fmt(figures["cpu_ms_per_min_off"], 0),
                fmt(figures["cpu_ms_per_min_on"], 0),
                fmt(figures["poll_us"], 0),
            ]
        ],
        notes=[
            "The watch polls in a thread of its own, so the event loop is not woken for it; "
            "CPU time is the sum over the process's threads (schedstat, nanoseconds)."
        ],
    )
