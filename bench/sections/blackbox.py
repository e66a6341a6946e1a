"""CPU per HTTP probe against prometheus-blackbox-exporter."""

from __future__ import annotations

import asyncio
import shutil
import time
import urllib.request

from bench.support import QUICK, Bench, Section, cpu_seconds, fmt, process, write_config
from tests.support.net import free_port
from tests.support.probed import serving


def measure(bench: Bench) -> Section:
    work, target = bench.work, bench.target
    probes = 500 if QUICK else 2000
    section = Section(
        "CPU seconds per HTTP probe of the same local target, measured from /proc for each process. "
        f"blackbox_exporter (Debian's) answers {probes} `/probe?module=http_2xx` requests, 8 at a time; probed runs "
        "200 http checks at a 1 s interval for the same number of runs. Both open a new connection per probe.",
        header=["prober", "probes", "CPU s", "CPU µs / probe"],
    )
    exporter = shutil.which("prometheus-blackbox-exporter")
    if exporter is None:
        section.notes.append("prometheus-blackbox-exporter is not installed (bench/setup.sh installs it): skipped.")
        return section
    config = work / "blackbox.yml"
    config.write_text(
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 3s\n    http:\n      valid_status_codes: []\n"
    )
    port = free_port()
    with process(
        [exporter, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/metrics",
    ) as proc:
        url = f"http://127.0.0.1:{port}/probe?module=http_2xx&target={target}"
        before = cpu_seconds(proc.pid)
        asyncio.run(hammer(url, probes, concurrency=8))
        blackbox = cpu_seconds(proc.pid) - before
    section.rows.append(["blackbox_exporter", fmt(probes, 0), f"{blackbox:.2f}", fmt(1e6 * blackbox / probes, 0)])
    port = free_port()
    checks = {f"api-{i}": {"type": "http", "url": target, "interval": 1, "timeout": 0.5} for i in range(200)}
    path = write_config(
        work,
        "peer.yaml",
        {"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks, "scheduler": {"max_concurrency": 64}},
    )
    with serving(path, "--log-level", "warning", until="ready", clean_exit=False) as served:
        time.sleep(1.5)  # past every check's first, random-offset run
        runs_before, before = probed_runs(port), cpu_seconds(served.process.pid)
        time.sleep(probes / 200)  # 200 runs a second
        runs, used = probed_runs(port) - runs_before, cpu_seconds(served.process.pid) - before
    section.rows.append(["probed", fmt(runs, 0), f"{used:.2f}", fmt(1e6 * used / runs, 0)])
    section.notes.append(
        f"probed uses {used / runs / (blackbox / probes):.2f}x the CPU per HTTP probe of "
        "blackbox_exporter (Go) in this run; probed's figure includes its scheduler, store and "
        "two /metrics scrapes; blackbox's includes answering each /probe request."
    )
    return section


async def hammer(url: str, count: int, concurrency: int) -> None:
    import aiohttp

    queue = iter(range(count))
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for _ in queue:
                async with session.get(url) as response:
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def probed_runs(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(
        sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("probed_check_runs_total{"))
    )
