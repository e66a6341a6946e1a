"""Probe latency at 2,000 checks against a hanging target, against an idle probed in the same run.

    python bench/probe_load.py hang PORT                        the accept-and-hang target (a process of its own)
    python bench/probe_load.py CHECKS [PROBED_SOURCE_DIR]       -> one JSON line

Starts two `probed serve` at once, from PROBED_SOURCE_DIR (default: this
checkout): a loaded one with CHECKS http checks and an idle one with one,
all against an accept-and-hang target (it reads requests, never answers),
max_concurrency CHECKS. Four threads ask /health/live and /health/ready of
each server every PERIOD on a fresh connection (as kubelet does), with a
2 s timeout, through these phases, both servers given the same treatment:

- start: from the first answer, while every first run starts and times out;
- steady: the runs spread over their interval;
- reload: SIGHUP, the config unchanged;
- reload changed: SIGHUP after every check's timeout changed (each is built
  again and runs at once);
- scrapes: another client scrapes /metrics back to back.

Reports, per server and phase, the probes' p50, p99 and longest answer and
how many got no answer within the timeout (counted at the timeout).
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
PERIOD = 0.03  # seconds between two probes of one endpoint
PROBE_TIMEOUT = 2.0  # seconds: a probe with no answer by then counts as this long
INTERVAL, TIMEOUT, CHANGED_TIMEOUT = "10s", "2s", "1500ms"
PHASES = (("start", 14.0), ("steady", 6.0), ("reload", 8.0), ("reload changed", 10.0), ("scrapes", 10.0))
ENDPOINTS = ("/health/live", "/health/ready")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hang(port: int) -> None:
    """Accept every connection and read what it sends, never answering;
    close a connection when its client does, so descriptors do not pile up."""
    listener = socket.create_server(("127.0.0.1", port), backlog=8192)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    client, _ = listener.accept()
                except BlockingIOError:
                    continue
                client.setblocking(False)
                selector.register(client, selectors.EVENT_READ)
                continue
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()


@dataclass
class Server:
    name: str
    checks: int
    port: int
    config: Path
    process: subprocess.Popen[bytes] | None = None
    samples: list[tuple[str, str, float]] = field(default_factory=list)  # phase, endpoint, seconds
    answered: threading.Event = field(default_factory=threading.Event)


def config_for(server: Server, target: str, count: int, timeout: str) -> dict[str, Any]:
    checks = {f"c{i}": {"type": "http", "url": target} for i in range(server.checks)}
    return {
        "server": {"listen": f"127.0.0.1:{server.port}"},
        "defaults": {"interval": INTERVAL, "timeout": timeout},
        "scheduler": {"max_concurrency": count},
        "checks": checks,
    }


def probe_once(port: int, path: str) -> float:
    start = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", path)
        connection.getresponse().read()
    except TimeoutError:
        return PROBE_TIMEOUT
    finally:
        connection.close()
    return time.perf_counter() - start


def prober(server: Server, path: str, phase: list[str], stop: threading.Event) -> None:
    """Until the server first answers, a refused connection is not a sample: it is not listening yet."""
    while not stop.is_set():
        current = phase[0]
        try:
            took = probe_once(server.port, path)
        except OSError:
            if server.answered.is_set():
                server.samples.append((current, path, PROBE_TIMEOUT))
            time.sleep(0.01)
            continue
        server.answered.set()
        server.samples.append((current, path, took))
        time.sleep(max(0.0, PERIOD - took))


def scrape_until(server: Server, stop: threading.Event, durations: list[float]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    while not stop.is_set():
        start = time.perf_counter()
        connection.request("GET", "/metrics")
        connection.getresponse().read()
        durations.append(time.perf_counter() - start)
    connection.close()


def metrics_value(server: Server, name: str) -> float | None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", "/metrics")
        body = connection.getresponse().read().decode()
    finally:
        connection.close()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "probes": len(ordered),
        "p50_ms": round(1000 * statistics.median(ordered), 2),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(1000 * ordered[-1], 2),
        "over_250ms": sum(1 for s in ordered if s > 0.25),
        "no_answer": sum(1 for s in ordered if s >= PROBE_TIMEOUT),
    }


def run(count: int, source: str) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="probed-probe-load-"))
    target_port = free_port()
    target = f"http://127.0.0.1:{target_port}/"
    sizes = (("loaded", count), ("idle", 1))
    servers = [Server(name, checks, free_port(), directory / f"{name}.yaml") for name, checks in sizes]
    for server in servers:
        server.config.write_text(yaml.safe_dump(config_for(server, target, count, TIMEOUT)))
    hanging = subprocess.Popen([sys.executable, __file__, "hang", str(target_port)], cwd=ROOT)
    phase, stop, threads = ["start"], threading.Event(), []
    reloads: dict[str, dict[str, Any]] = {}
    scrape_ms: dict[str, float] = {}
    try:
        env = {**os.environ, "PYTHONPATH": source}
        for server in servers:
            server.process = subprocess.Popen(
                [sys.executable, "-m", "probed", "serve", "--config", str(server.config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=source,
                env=env,
            )
        for server in servers:
            for path in ENDPOINTS:
                thread = threading.Thread(target=prober, args=(server, path, phase, stop), daemon=True)
                thread.start()
                threads.append(thread)
        for server in servers:
            if not server.answered.wait(120):
                raise RuntimeError(f"{server.name} probed did not answer")
        for name, seconds in PHASES:
            phase[0] = name
            scrapers: list[tuple[threading.Thread, list[float]]] = []
            scraping = threading.Event()
            if name.startswith("reload"):
                if name == "reload changed":
                    for server in servers:
                        server.config.write_text(yaml.safe_dump(config_for(server, target, count, CHANGED_TIMEOUT)))
                signalled = time.time()
                for server in servers:
                    assert server.process is not None
                    server.process.send_signal(signal.SIGHUP)
            if name == "scrapes":
                for server in servers:
                    durations: list[float] = []
                    thread = threading.Thread(target=scrape_until, args=(server, scraping, durations), daemon=True)
                    thread.start()
                    scrapers.append((thread, durations))
            time.sleep(seconds)
            scraping.set()
            for thread, _ in scrapers:
                thread.join()
            for server, (_, durations) in zip(servers, scrapers, strict=False):
                scrape_ms[server.name] = round(1000 * statistics.median(durations), 1) if durations else 0.0
            if name.startswith("reload"):
                for server in servers:
                    loaded_at = metrics_value(server, "probed_config_last_load_timestamp_seconds") or 0.0
                    success = metrics_value(server, "probed_config_last_load_success")
                    # When the reload took effect, counted from the signal: it ran in its phase.
                    reloads.setdefault(server.name, {})[name] = {
                        "took_effect_s": round(loaded_at - signalled, 2),
                        "success": success == 1.0,
                    }
        lag = {server.name: metrics_value(server, "probed_event_loop_lag_seconds") for server in servers}
    finally:
        stop.set()
        for thread in threads:
            thread.join(PROBE_TIMEOUT + 1)
        for server in servers:
            if server.process is not None:
                server.process.send_signal(signal.SIGTERM)
                try:
                    server.process.wait(15)
                except subprocess.TimeoutExpired:
                    server.process.kill()
        hanging.terminate()
        hanging.wait(10)
    figures: dict[str, Any] = {"checks": count, "scrape_ms": scrape_ms, "reloads": reloads, "loop_lag_max_s": lag}
    for server in servers:
        figures[server.name] = {
            name: summary([took for phase_name, _, took in server.samples if phase_name == name]) for name, _ in PHASES
        }
    return figures


def main() -> None:
    if sys.argv[1] == "hang":
        hang(int(sys.argv[2]))
        return
    count = int(sys.argv[1])
    source = sys.argv[2] if len(sys.argv) > 2 else str(ROOT)  # another checkout, for a before/after
    print(json.dumps(run(count, source)))


if __name__ == "__main__":
    main()
