"""Fleet-safe readiness, measured with real `probed serve` processes:

  python bench/fleet.py decide TARGET_URL   -> one JSON line: start -> decided /health/ready
  python bench/fleet.py peers N SAMPLE      -> one JSON line: peer requests per replica per interval
                                               and decision times, N replicas, peers.sample SAMPLE

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
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import QUICK, until, until_answer  # noqa: E402
from tests.support.faults import TcpProxy  # noqa: E402
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


# -- peer traffic and decisions at fleet size -----------------------------------------------------


def peers(count: int, sample: int) -> dict[str, Any]:
    """N replicas on 127.0.0.2.. share one dependency (an http target whose
    /health the benchmark flips to 500); dnsmasq resolves the peer name;
    replica 0 reaches the target through a proxy the benchmark cuts (a local
    fault). `sample`: peers.sample (>= N - 1 asks every peer, as before it)."""
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
        proxy = TcpProxy(target_port)
        proxy.start()
        stack.callback(proxy.cut)
        peer_options = {"dns": "probed-peers.bench", "resolver": f"127.0.0.1:{dns.port}", "timeout": "500ms"}
        for index, host in enumerate(hosts):
            via = proxy.port if index == 0 else target_port
            config = {
                "server": {"listen": f"{host}:{port}"},
                "peers": {**peer_options, "sample": sample},
                "checks": {
                    "api": {
                        "type": "http",
                        "url": f"http://127.0.0.1:{via}/health",
                        "scope": "shared",
                        "interval": interval,
                        "timeout": "500ms",
                    }
                },
            }
            stack.enter_context(serve(work, host, config))
        bases = [f"http://{host}:{port}" for host in hosts]
        for base in bases:  # 50 interpreters starting on a shared machine: minutes, not seconds
            until_answer(f"{base}/health/ready", lambda status, _: status == 200, step=0.1, seconds=600)
        flag.write_text("500")
        all_decided = _within(
            lambda: all('"case":"shared-outage"' in http_get(f"{base}/health", 2)[1] for base in bases), 60
        )
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
        proxy.cut()
        local_decided = _within(lambda: http_get(f"{bases[0]}/health/ready", 2)[0] == 503, 60)
        before = _peer_requests(bases[0])
        time.sleep(window * interval)
        local = _peer_requests(bases[0]) - before
        still_ready = sum(http_get(f"{base}/health/ready", 2)[0] == 200 for base in bases[1:])
    return {
        "replicas": count,
        "sample": sample,
        "interval_s": interval,
        "requests_per_replica_per_interval": round(during / count / window, 2),
        "bound": min(count - 1, sample),
        "all_shared_outage_after_s": None if all_decided is None else round(all_decided, 2),
        "unready_during_outage": len(unready),
        "requests_while_healthy": healthy,
        "local_fault_after_s": None if local_decided is None else round(local_decided, 2),
        "local_fault_bound_s": 2 * interval + 0.5 + 0.5,
        "local_fault_requests_per_interval": round(local / window, 2),
        "others_ready_during_local_fault": still_ready,
    }


def _within(condition: Callable[[], bool], seconds: float) -> float | None:
    """Seconds until condition() holds (polled every 50 ms); None if not within `seconds`."""
    try:
        return until(condition, seconds, step=0.05)
    except RuntimeError:
        return None


def _peer_requests(base: str) -> float:
    text = http_get(f"{base}/metrics", 2)[1]
    return sum(float(m[1]) for m in re.finditer(r"probed_peer_requests_total\{result=\"\w+\"\} ([0-9.e+]+)", text))


def main() -> None:
    mode = sys.argv[1]
    result = decide(sys.argv[2]) if mode == "decide" else peers(int(sys.argv[2]), int(sys.argv[3]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
