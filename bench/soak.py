"""Soak: `probed serve` with a check of every type against real servers, for
minutes; sample RSS, open fds, threads and /health/ready latency and report
how they trend after warm-up.

python bench/soak.py SECONDS COPIES  (run from the repository root; one JSON line)
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent.parent))

from bench.services import dependency_services
from tests.support.net import free_port
from tests.support.probed import serving

SAMPLE_EVERY = 2.0  # seconds
WARM_UP = 0.25  # share of the run left out of the trends


def proc_status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = float(value.split()[0])
    return {"rss_mib": fields["VmRSS"] / 1024, "threads": fields["Threads"]}


def probe_ms(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=5) as response:
        response.read()
    return 1000 * (time.perf_counter() - start)


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of values over time, per hour."""
    if len(times) < 3:
        return 0.0
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((t - mean_t) ** 2 for t in times)
    return 3600 * sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / spread if spread else 0.0


def run_counts(metrics: str) -> int:
    total = 0
    for line in metrics.splitlines():
        if line.startswith("probed_check_runs_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def soak(seconds: float, copies: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="probed-soak-"))
    port = free_port()
    with dependency_services(work, f"http://127.0.0.1:{port}/health/live") as services:
        checks = {
            f"{name.split(' ')[0]}-{index}-{number}": {**options, "interval": "1s", "timeout": "900ms"}
            for number, (name, options) in enumerate(services["configs"].items())
            for index in range(copies)
        }
        for options in checks.values():
            options.pop("_sessions_dsn", None)
        config = work / "soak.yaml"
        config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks}))
        samples: list[dict[str, float]] = []
        with serving(config, seconds=60, clean_exit=False) as served:
            base, pid = served.base, served.process.pid
            start = time.monotonic()
            while time.monotonic() - start < seconds:
                sample = {"t": time.monotonic() - start, **proc_status(pid)}
                sample["fds"] = len(list(Path(f"/proc/{pid}/fd").iterdir()))
                sample["probe_ms"] = probe_ms(f"{base}/health/live")
                samples.append(sample)
                time.sleep(SAMPLE_EVERY)
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                runs = run_counts(response.read().decode())
    steady = [s for s in samples if s["t"] >= WARM_UP * seconds]
    times = [s["t"] for s in steady]
    result: dict[str, Any] = {"checks": len(checks), "runs": runs, "seconds": seconds, "samples": len(samples)}
    for key in ("rss_mib", "fds", "threads", "probe_ms"):
        values = [s[key] for s in steady]
        result[key] = {
            "start": round(values[0], 2),
            "end": round(values[-1], 2),
            "max": round(max(values), 2),
            "median": round(statistics.median(values), 2),
            "slope_per_hour": round(slope_per_hour(times, values), 2),
        }
    return result


if __name__ == "__main__":
    print(json.dumps(soak(float(sys.argv[1]), int(sys.argv[2]))))
