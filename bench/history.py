"""Memory the run history holds: python bench/history.py CHECKS LENGTH -> one JSON line.

Builds CHECKS check states as the store keeps them, records 2 x LENGTH runs into
each (results dropped after recording, as the scheduler drops them) with a
history of LENGTH runs, then measures with tracemalloc what the histories hold:
the Python memory in use with them, minus the same without them.
"""

from __future__ import annotations

import gc
import json
import random
import sys
import time
import tracemalloc
from collections import deque

from probed.model import Reason, Result, Status
from probed.store import CheckState


def new_state(index: int, length: int) -> CheckState:
    state = CheckState(
        name=f"check-{index}",
        type="http",
        component_type="component",
        critical=True,
        interval=10.0,
        timeout=3.0,
        failure_threshold=1,
        success_threshold=1,
    )
    state.history = deque(maxlen=length)
    return state


def result(rng: random.Random, started: float) -> Result:
    if rng.random() < 0.2:
        return Result(Status.FAIL, started, rng.uniform(0.001, 3.0), "connection refused", Reason.REFUSED)
    return Result(Status.PASS, started, rng.uniform(0.001, 0.05), "200 OK")


def measure(checks: int, length: int) -> dict[str, float]:
    rng = random.Random(1)
    tracemalloc.start()
    states = [new_state(i, length) for i in range(checks)]
    now = time.time()
    for state in states:
        for run in range(2 * length):
            state.record(result(rng, now + 10 * run), finished=float(run))
    gc.collect()
    with_history = tracemalloc.get_traced_memory()[0]
    for state in states:
        state.history = None  # type: ignore[assignment]
    gc.collect()
    held = with_history - tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "checks": checks,
        "length": length,
        "mib": round(held / 2**20, 2),
        "kib_per_check": round(held / checks / 1024, 2),
        "bytes_per_run": round(held / checks / length, 1),
    }


def main() -> None:
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))


if __name__ == "__main__":
    main()
