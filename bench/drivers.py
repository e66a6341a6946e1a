"""Import cost of each check type of the table (probed.checks.TYPES), in fresh processes:
python bench/drivers.py RUNS -> one JSON line
{type: {"module_ms": ..., "driver_ms": ... or null, "modules": [...]}, "shared_ms": ..., "asyncio_ms": ...}.

One fresh interpreter per type and run imports probed.checks (what every type shares),
then times, in CPU (time.process_time, so other work on the machine does not count):
- module: `import probed.checks.<type>`, what a configured check of the type costs
  `probed validate` and start-up;
- driver: then `import <driver modules>`, what creating the check to run adds on top
  (null for a type that speaks its protocol with probed's own modules).
Medians of RUNS runs, the types alternated so machine noise hits every row alike;
shared_ms is `import probed.checks` timed the same way in a bare interpreter, asyncio_ms
`import asyncio` after it (most type modules import asyncio; whichever comes first pays it).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from probed.checks import TYPES, load_type

TIMED = """
import importlib, json, sys, time
def cost(modules):
    start = time.process_time()
    for module in modules:
        importlib.import_module(module)
    return 1e3 * (time.process_time() - start)
before, module, driver = json.loads(sys.argv[1])
cost(before)
print(json.dumps([cost(module), cost(driver)]))
"""


def timed(before: list[str], module: list[str], driver: list[str]) -> list[float]:
    """CPU ms of importing `module`, then `driver`, in a fresh interpreter that imported `before`."""
    argument = json.dumps([before, module, driver])
    done = subprocess.run([sys.executable, "-c", TIMED, argument], capture_output=True, text=True, check=True)
    return [float(ms) for ms in json.loads(done.stdout)]


def main() -> None:
    runs = int(sys.argv[1])
    programs = {
        name: (["probed.checks"], [location.partition(":")[0]], list(load_type(name, need_driver=False).requires))
        for name, location in TYPES.items()
    }
    samples: dict[str, list[list[float]]] = {name: [] for name in programs}
    shared: list[list[float]] = []
    for _ in range(runs):
        shared.append(timed([], ["probed.checks"], ["asyncio"]))
        for name, program in programs.items():
            samples[name].append(timed(*program))
    result: dict[str, object] = {
        name: {
            "module_ms": round(statistics.median(run[0] for run in runs_), 1),
            "driver_ms": round(statistics.median(run[1] for run in runs_), 1) if programs[name][2] else None,
            "modules": programs[name][2],
        }
        for name, runs_ in samples.items()
    }
    result["shared_ms"] = round(statistics.median(run[0] for run in shared), 1)
    result["asyncio_ms"] = round(statistics.median(run[1] for run in shared), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
