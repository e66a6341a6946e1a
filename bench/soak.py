"""Soak: `probed serve` with a check of every type against real servers, for
minutes; sample RSS, open fds, threads and /health/ready latency and report
how they trend after warm-up.

python bench/soak.py SECONDS COPIES [INTERVAL_SECONDS [SOURCE]]  (run from the repository root; one JSON line)

SOURCE: another checkout's probed package to run (a before/after in one run).

/health/ready is also asked every PROBE_EVERY seconds as the kubelet asks it
(a new connection each time), of the loaded probed and, in turn, of an idle
one (one disk check) served beside it in the same run: its latency
percentiles are the loaded probed's, against the idle one's as a baseline.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
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
PROBE_EVERY = 0.1  # seconds between /health/ready probes of each probed: thousands of samples for a p99


def proc_status(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = float(value.split()[0])
    return {"rss_mib": fields["VmRSS"] / 1024, "threads": fields["Threads"]}


def probe_ms(url: str) -> float:
    """ms to a whole answer, a new connection each time; a 503 is an answer too."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.read()
    return 1000 * (time.perf_counter() - start)


def ready_probes(urls: dict[str, str], stop: threading.Event, after: float) -> dict[str, list[float]]:
    """ms per /health/ready, a new connection each, of each URL in turn from
    time.monotonic() `after` (past the warm-up) until `stop`; a probe that
    fails or takes over 5 s counts as 5,000 ms."""
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    while not stop.wait(PROBE_EVERY):
        for name, url in urls.items():
            try:
                took = probe_ms(url)
            except OSError:  # urllib's errors and timeouts
                took = 5000.0
            if time.monotonic() >= after:
                latencies[name].append(took)
    return latencies


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"probes": 0}

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    return {"probes": len(ordered), "p50": round(at(0.5), 2), "p99": round(at(0.99), 2), "max": round(ordered[-1], 2)}


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


def soak(seconds: float, copies: int, interval: float = 1.0, source: Path | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="probed-soak-"))
    port = free_port()
    with dependency_services(work, f"http://127.0.0.1:{port}/health/live") as services:
        checks = {
            f"{name.split(' ')[0]}-{index}-{number}": {
                **options,
                "interval": interval,
                "timeout": round(0.9 * interval, 3),
            }
            for number, (name, options) in enumerate(services["configs"].items())
            for index in range(copies)
        }
        for options in checks.values():
            options.pop("_sessions_dsn", None)
        config = work / "soak.yaml"
        config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks}))
        idle_port = free_port()
        idle_config = work / "idle.yaml"
        idle_config.write_text(
            yaml.safe_dump(
                {
                    "server": {"listen": f"127.0.0.1:{idle_port}"},
                    "checks": {"disk": {"type": "disk", "path": str(work)}},
                }
            )
        )
        samples: list[dict[str, float]] = []
        with (
            serving(config, seconds=60, clean_exit=False, source=source) as served,
            serving(idle_config, clean_exit=False, source=source) as idle,
        ):
            base, pid = served.base, served.process.pid
            urls = {"loaded": f"{base}/health/ready", "idle": f"{idle.base}/health/ready"}
            stop = threading.Event()
            ready: dict[str, list[float]] = {}
            start = time.monotonic()
            after = start + WARM_UP * seconds
            prober = threading.Thread(target=lambda: ready.update(ready_probes(urls, stop, after)), daemon=True)
            prober.start()
            while time.monotonic() - start < seconds:
                sample = {"t": time.monotonic() - start, **proc_status(pid)}
                sample["fds"] = len(list(Path(f"/proc/{pid}/fd").iterdir()))
                sample["probe_ms"] = probe_ms(f"{base}/health/live")
                samples.append(sample)
                time.sleep(SAMPLE_EVERY)
            stop.set()
            prober.join()
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                metrics = response.read().decode()
            runs = run_counts(metrics)
            lag = next(
                (
                    float(line.split()[-1])
                    for line in metrics.splitlines()
                    if line.startswith("probed_event_loop_lag_seconds ")
                ),
                0.0,
            )
    steady = [s for s in samples if s["t"] >= WARM_UP * seconds]
    times = [s["t"] for s in steady]
    result: dict[str, Any] = {"checks": len(checks), "runs": runs, "seconds": seconds, "samples": len(samples)}
    result["loop_lag_ms"] = round(1000 * lag, 1)  # the longest of the last minute, at the end
    result["ready"] = {name: percentiles(values) for name, values in ready.items()}
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
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    source = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    print(json.dumps(soak(float(sys.argv[1]), int(sys.argv[2]), interval, source)))
