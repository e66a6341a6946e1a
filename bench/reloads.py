"""RSS of `probed serve` over same-config reloads.

    python bench/reloads.py CONFIG RELOADS [PROBED_SOURCE_DIR]   -> one JSON line

Starts `probed serve --config CONFIG`, lets every check run a few times,
then sends SIGHUP RELOADS times, two seconds apart, reading the process's RSS
before the first and after each. A reload that left something behind shows
as a steady slope; warm-up (the first reloads' allocations) as a step.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.probed import serving  # noqa: E402

SETTLE = 2.0  # seconds after a reload before RSS is read: the changed checks have run


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope(values: list[float]) -> float:
    """Least-squares slope per step."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den if den else 0.0


def main() -> None:
    config, reloads = sys.argv[1], int(sys.argv[2])
    source = sys.argv[3] if len(sys.argv) > 3 else str(ROOT)
    with serving(config, until="started", source=Path(source), clean_exit=False) as served:
        time.sleep(3 * SETTLE)
        series = [rss_mib(served.process.pid)]
        for _ in range(reloads):
            served.signal(signal.SIGHUP)
            time.sleep(SETTLE)
            series.append(rss_mib(served.process.pid))
    later = series[len(series) // 2 :]
    print(
        json.dumps(
            {
                "reloads": reloads,
                "rss_start_mib": round(series[0], 1),
                "rss_after_2_mib": round(series[min(2, reloads)], 1),
                "rss_end_mib": round(series[-1], 1),
                "slope_second_half_mib_per_reload": round(slope(later), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
