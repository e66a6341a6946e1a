"""Import time of each check type's driver, in fresh processes:
python bench/drivers.py RUNS -> one JSON line {type: {"ms": ..., "modules": [...]}, "baseline_ms": ...}.

Each figure is the median wall time of `python -c "import <driver modules>"`
minus the median of `python -c pass`, both measured alternately in this run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from probed.checks import TYPES, load_type


def wall_ms(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return 1e3 * (time.perf_counter() - start)


def main() -> None:
    runs = int(sys.argv[1])
    drivers = {name: load_type(name, need_driver=False).requires for name in TYPES}
    drivers = {name: modules for name, modules in drivers.items() if modules}
    samples: dict[str, list[float]] = {name: [] for name in drivers}
    baseline: list[float] = []
    for _ in range(runs):  # alternate, so machine noise hits every row alike
        baseline.append(wall_ms("pass"))
        for name, modules in drivers.items():
            samples[name].append(wall_ms("import " + ", ".join(modules)))
    base = statistics.median(baseline)
    result: dict[str, object] = {
        name: {"ms": round(statistics.median(times) - base, 1), "modules": list(drivers[name])}
        for name, times in samples.items()
    }
    result["baseline_ms"] = round(base, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
