"""Fleet-safe readiness, measured with real `probed serve` processes:

  python bench/fleet.py decide TARGET_URL   -> one JSON line: start -> decided /health/ready
  python bench/fleet.py peers N             -> one JSON line: peer requests per replica per interval
                                               during a shared outage of N replicas

bench/sections/fleet.py calls both and writes their rows into docs/benchmarks.md.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import QUICK, until, until_answer  # noqa: E402
from tests.support.net import free_port, http_get  # noqa: E402
from tests.support.probed import Served, serving  # noqa: E402
from tests.support.servers.dnsmasq import DnsServer  # noqa: E402


def serve(directory: Path, name: str, config: dict[str, Any]) -> AbstractContextManager[Served]:
    """`probed serve` on this config, started: the benchmark times what comes next."""
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return serving(path, until="started", clean_exit=False)


# -- start -> decided readiness ----------------------------------------------------------------


def decide(target: str) -> dict[str, Any]:
    """Hourly checks against a live target: the first answer of /health/ready
    that is not 503 comes after the first runs, which start within a second."""
    repeats = 3 if QUICK else 7
    work = Path(tempfile.mkdtemp(prefix="probed-bench-fleet-"))
    listening, decided = [], []
    for attempt in range(repeats):
        port = free_port()
        config = {
            "server": {"listen": f"127.0.0.1:{port}"},
            "defaults": {"interval": "1h", "timeout": "2s"},
            "checks": {
                "api": {"type": "http", "url": target},
                "disk": {"type": "disk", "path": str(work)},
            },
        }
        base = f"http://127.0.0.1:{port}"
        start = time.monotonic()
        with serve(work, f"decide-{attempt}", config):
            until_answer(f"{base}/health/live", lambda status, _: status != 0)
            listening.append(time.monotonic() - start)
            until_answer(f"{base}/health/ready", lambda status, _: status == 200)
            decided.append(time.monotonic() - start)
    return {
        "repeats": repeats,
        "interval_s": 3600,
        "timeout_s": 2,
        "listening_median_s": round(statistics.median(listening), 3),
        "decided_median_s": round(statistics.median(decided), 3),
        "decided_max_s": round(max(decided), 3),
        "after_listening_median_s": round(statistics.median(d - s for d, s in zip(decided, listening)), 3),
    }


# -- peer traffic during a shared outage --------------------------------------------------------


def peers(count: int) -> dict[str, Any]:
    """N replicas on 127.0.0.2.. share one dependency (an http target whose
    /health the benchmark flips to 500); dnsmasq resolves the peer name."""
    interval = 2.0
    window = 3 if QUICK else 5  # intervals measured during the outage
    work = Path(tempfile.mkdtemp(prefix="probed-bench-peers-"))
    hosts = [f"127.0.0.{i + 2}" for i in range(count)]
    port, target_port = free_port(), free_port()
    flag = work / "flag"
    flag.write_text("200")
    with ExitStack() as stack:
        dns = DnsServer(work / "dns")
        dns.start({"probed-peers.bench": hosts})
        stack.callback(dns.stop)
        switch = subprocess.Popen(
            [sys.executable, "bench/switch.py", str(target_port), str(flag)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stack.callback(switch.terminate)
        until(lambda: http_get(f"http://127.0.0.1:{target_port}/", 2)[0] != 0)
        for host in hosts:
            config = {
                "server": {"listen": f"{host}:{port}"},
                "peers": {"dns": "probed-peers.bench", "resolver": f"127.0.0.1:{dns.port}", "timeout": "500ms"},
                "checks": {
                    "api": {
                        "type": "http",
                        "url": f"http://127.0.0.1:{target_port}/health",
                        "scope": "shared",
                        "interval": interval,
                        "timeout": "500ms",
                    }
                },
            }
            stack.enter_context(serve(work, host, config))
        bases = [f"http://{host}:{port}" for host in hosts]
        for base in bases:
            until_answer(f"{base}/health/ready", lambda status, _: status == 200, step=0.1)
        flag.write_text("500")
        flipped = time.monotonic()
        for base in bases:
            until_answer(f"{base}/health", lambda _, body: '"case":"shared-outage"' in body, step=0.05)
        all_decided = time.monotonic() - flipped
        before = sum(_peer_requests(base) for base in bases)
        time.sleep(window * interval)
        during = sum(_peer_requests(base) for base in bases) - before
        unready = [base for base in bases if http_get(f"{base}/health/ready", 2)[0] != 200]
        flag.write_text("200")
        for base in bases:
            until_answer(f"{base}/health", lambda status, _: status == 200, step=0.1)
        before = sum(_peer_requests(base) for base in bases)
        time.sleep(window * interval)
        healthy = sum(_peer_requests(base) for base in bases) - before
    return {
        "replicas": count,
        "interval_s": interval,
        "requests_per_replica_per_interval": round(during / count / window, 2),
        "bound": count - 1,
        "all_shared_outage_after_s": round(all_decided, 2),
        "unready_during_outage": len(unready),
        "requests_while_healthy": healthy,
    }


def _peer_requests(base: str) -> float:
    text = http_get(f"{base}/metrics", 2)[1]
    return sum(float(m[1]) for m in re.finditer(r"probed_peer_requests_total\{result=\"\w+\"\} ([0-9.e+]+)", text))


def main() -> None:
    mode = sys.argv[1]
    result = decide(sys.argv[2]) if mode == "decide" else peers(int(sys.argv[2]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
