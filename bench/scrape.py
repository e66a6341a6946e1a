"""Probe latency while /metrics is scraped, in a fresh `probed serve`.

    python bench/scrape.py CHECKS SECONDS [PROBED_SOURCE_DIR]   -> one JSON line

Starts `probed serve` with CHECKS disk checks (each has run once before the
measurement), then for SECONDS asks /health/live every 20 ms on a kept-alive
connection, first alone, then while another thread scrapes /metrics back to
back. Reports the probes' latency in both phases, the longest probe seen
during scrapes, the scrape's duration and the exposition's size.
"""

from __future__ import annotations

import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from tests.support.probed import serving  # noqa: E402


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def probe_latencies(port: int, seconds: float) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        status, _ = get(connection, "/health/live")
        latencies.append(time.perf_counter() - start)
        assert status == 200, status
        time.sleep(0.02)
    connection.close()
    return latencies


def scrape_until(port: int, stop: threading.Event, durations: list[float], sizes: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        start = time.perf_counter()
        _, body = get(connection, "/metrics")
        durations.append(time.perf_counter() - start)
        sizes.append(len(body))
    connection.close()


def ms(values: list[float], quantile: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * quantile))], 2)


def main() -> None:
    count, seconds = int(sys.argv[1]), float(sys.argv[2])
    source = sys.argv[3] if len(sys.argv) > 3 else str(ROOT)  # another checkout, for a before/after
    port = free_port()
    directory = tempfile.mkdtemp(prefix="probed-scrape-")
    checks = {
        f"disk-{i}": {"type": "disk", "path": directory, "interval": "30s", "timeout": "5s"} for i in range(count)
    }
    config = {"server": {"listen": f"127.0.0.1:{port}"}, "scheduler": {"max_concurrency": 256}, "checks": checks}
    path = Path(directory) / "probed.yaml"
    path.write_text(yaml.safe_dump(config))
    with serving(path, until="ran", seconds=120, source=Path(source), clean_exit=False):
        quiet = probe_latencies(port, seconds)
        stop, durations, sizes = threading.Event(), [], []  # type: ignore[var-annotated]
        scraper = threading.Thread(target=scrape_until, args=(port, stop, durations, sizes))
        scraper.start()
        loaded = probe_latencies(port, seconds)
        stop.set()
        scraper.join()
    print(
        json.dumps(
            {
                "checks": count,
                "probe_p50_ms": round(1000 * statistics.median(quiet), 2),
                "probe_p99_ms": ms(quiet, 0.99),
                "scraping_p50_ms": round(1000 * statistics.median(loaded), 2),
                "scraping_p99_ms": ms(loaded, 0.99),
                "scraping_max_ms": round(1000 * max(loaded), 2),
                "scrapes": len(durations),
                "scrape_ms": round(1000 * statistics.median(durations), 1),
                "exposition_kib": round(statistics.median(sizes) / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
