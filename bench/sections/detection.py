"""Time from a dependency's failure or recovery until /health/ready says so."""

from __future__ import annotations

import random
import statistics
import time

from bench.support import PYTHON, QUICK, Bench, Section, process, until_answer, write_config
from tests.support.net import free_port
from tests.support.probed import serving


def measure(bench: Bench) -> Section:
    work = bench.work
    repeats = 3 if QUICK else 5
    section = Section(
        "Time from a dependency's /health turning 500 until probed's `/health/ready` answers 503, and from "
        f"its recovery until 200 again (polled every 10 ms), median of {repeats} flips, each at a random "
        "point of the schedule. One http check, timeout 500 ms.",
        header=[
            "interval",
            "failure / success threshold",
            "down -> 503 (median s)",
            "up -> 200 (median s)",
            "worst case by design",
        ],
    )
    for interval, threshold in ((1.0, 1), (1.0, 3), (2.0, 1)):
        port, target_port = free_port(), free_port()
        config = write_config(
            work,
            f"detect-{port}.yaml",
            {
                "server": {"listen": f"127.0.0.1:{port}"},
                "checks": {
                    "api": {
                        "type": "http",
                        "url": f"http://127.0.0.1:{target_port}/health",
                        "interval": interval,
                        "timeout": 0.5,
                        "failure_threshold": threshold,
                        "success_threshold": threshold,
                    }
                },
            },
        )
        flag = work / f"flag-{target_port}"
        with (
            process([PYTHON, "bench/switch.py", str(target_port), str(flag)], f"http://127.0.0.1:{target_port}/"),
            serving(config, until="ready", clean_exit=False),
        ):
            ready = f"http://127.0.0.1:{port}/health/ready"
            downs, ups = [], []
            rng = random.Random(interval * 10 + threshold)
            for _ in range(repeats):
                time.sleep(rng.uniform(0, interval))  # flip at a random point of the schedule
                flag.write_text("500")
                downs.append(until_answer(ready, lambda status, _: status == 503, 30))
                time.sleep(rng.uniform(0, interval))
                flag.write_text("200")
                ups.append(until_answer(ready, lambda status, _: status == 200, 30))
        section.rows.append(
            [
                f"{interval:g} s",
                str(threshold),
                f"{statistics.median(downs):.2f}",
                f"{statistics.median(ups):.2f}",
                f"{interval * threshold:g} s (+ run time)",
            ]
        )
    section.notes.append(
        "A change is seen at the next run: on average half an interval, at worst one interval, "
        "then one more interval per further threshold step; readiness answers from the cache at once."
    )
    return section
