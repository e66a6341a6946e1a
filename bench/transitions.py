"""How long the store takes when every check changes verdict at once (a shared
dependency dies): python bench/transitions.py N -> one JSON line."""

from __future__ import annotations

import json
import sys
import time

import yaml

from probed.checks import create_check
from probed.config import parse_config
from probed.model import Reason, Result, Status
from probed.store import Store


def main() -> None:
    count = int(sys.argv[1])
    checks_config = {f"c{i}": {"type": "disk", "path": "/"} for i in range(count)}
    config = parse_config(yaml.safe_dump({"checks": checks_config}), "bench")
    store = Store([create_check(name, options) for name, options in config.checks.items()])
    passed = Result(Status.PASS, time.time(), 0.001)
    failed = Result(Status.FAIL, time.time(), 0.001, "refused", Reason.REFUSED)
    start = time.perf_counter()
    for name in store.checks:  # pending -> pass
        store.record(name, passed)
    for name in store.checks:  # pass -> fail, all of them
        store.record(name, failed)
    elapsed = time.perf_counter() - start
    print(
        json.dumps(
            {
                "checks": count,
                "transitions": 2 * count,
                "seconds": round(elapsed, 4),
                "us_per_transition": round(1e6 * elapsed / (2 * count), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
