"""probed against Debian's blackbox_exporter at a pod's pace: CPU per run when runs are few.

    python -m bench.pace [TYPE...]   (from the repository root; prints the section)

bench/blackbox.py compares the two at 100 runs a second, where each wake of
probed's event loop is shared by many runs. A pod runs a few checks every
few seconds: there what probed spends between runs (its watchdog, its heap's
passes, its file watch, the wakes themselves) is billed to few runs. So here,
for http and tcp against the same loopback targets, all at once over one
window: probed serves PACE_CHECKS checks every PACE seconds and is scraped
once per PACE (what Prometheus asks of it), and blackbox_exporter answers
PACE_CHECKS `/probe` requests every PACE over one kept connection (what
Prometheus asks of it for as many targets). CPU is each process's threads'
run time (/proc/PID/task/*/schedstat) over the window, per run or probe and
per hour. Beside them, probed with one disk check an hour: what it costs
doing nothing. With BENCH_BASELINE_REV, that revision's probed runs the same
checks in the same windows.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench.blackbox import (  # noqa: E402
    BASELINE_REV,
    EXPORTER,
    NOT_INSTALLED,
    cpu_ns,
    exporter,
    load_note,
    print_section,
    probed_runs,
    probed_sources,
    targets,
)
from tests.support.net import free_port  # noqa: E402
from tests.support.probed import serving  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
PACE_CHECKS = 10
PACE = 10.0  # seconds: each check's interval, and between two rounds of Prometheus's requests
WINDOW = 20.0 if QUICK else 60.0  # seconds of CPU measured per round, all programs at once
ROUNDS = 1 if QUICK else 3
TYPES = ("http", "tcp")
TARGET = 1.0  # at or under blackbox_exporter's CPU per probe (issue 20: a run costs no more than a Go prober's)

TITLE = "At a pod's pace: CPU per run beside blackbox_exporter, 10 checks every 10 s"


@contextmanager
def probed_at_pace(work: Path, name: str, checks: dict[str, Any], source: Path | None) -> Iterator[tuple[int, int]]:
    """probed serve with `checks`, past every check's first run: (pid, port)."""
    port = free_port()
    config = work / f"pace-{name}-{port}.yaml"
    config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks}))
    with serving(config, until="ready", source=source, seconds=60, clean_exit=False) as served:
        yield served.process.pid, port


def at_pace(options: dict[str, Any]) -> dict[str, Any]:
    return {f"c{i}": {**options, "interval": PACE} for i in range(PACE_CHECKS)}


class Prometheus:
    """What Prometheus asks each PACE: one /metrics of each probed, PACE_CHECKS /probe of blackbox_exporter."""

    def __init__(self, blackbox_port: int, probe_path: str, probed_ports: list[int]) -> None:
        self.blackbox = http.client.HTTPConnection("127.0.0.1", blackbox_port, timeout=10)
        self.probe_path = probe_path
        self.probed = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for port in probed_ports]
        self.probes = self.failed = 0

    def scrape_round(self) -> None:
        for _ in range(PACE_CHECKS):
            self.probes += 1
            if b"\nprobe_success 1" not in _get(self.blackbox, self.probe_path):
                self.failed += 1
        for connection in self.probed:
            _get(connection, "/metrics")

    def close(self) -> None:
        for connection in (self.blackbox, *self.probed):
            connection.close()


def _get(connection: http.client.HTTPConnection, path: str) -> bytes:
    connection.request("GET", path)
    return connection.getresponse().read()


def window(pids: dict[str, int], prometheus: Prometheus) -> dict[str, float]:
    """Seconds of CPU of each process over WINDOW, Prometheus's round every PACE."""
    before = {name: cpu_ns(pid) for name, pid in pids.items()}
    start = time.monotonic()
    for round_ in range(int(WINDOW / PACE)):
        time.sleep(max(0.0, start + round_ * PACE - time.monotonic()))
        prometheus.scrape_round()
    time.sleep(max(0.0, start + WINDOW - time.monotonic()))
    return {name: (cpu_ns(pid) - before[name]) / 1e9 for name, pid in pids.items()}


def one_type(work: Path, options: dict[str, Any], blackbox: tuple[int, int], probe: str) -> dict[str, Any]:
    """Rounds of one window each, every program at once, blackbox_exporter's (pid, port) given: medians of
    CPU per run and per hour."""
    with ExitStack() as stack:
        ports: dict[str, int] = {}
        pids = {"blackbox": blackbox[0]}
        for name, source in probed_sources(work).items():
            pids[name], ports[name] = stack.enter_context(probed_at_pace(work, name, at_pace(options), source))
            idle = {"floor": {"type": "disk", "path": "/", "interval": "1h"}}
            pids[f"{name}_idle"], _ = stack.enter_context(probed_at_pace(work, f"{name}-idle", idle, source))
        prometheus = Prometheus(blackbox[1], probe, list(ports.values()))
        stack.callback(prometheus.close)
        time.sleep(PACE + 1)  # every check past its first run and onto its spread cadence
        per_run: dict[str, list[float]] = {name: [] for name in pids}
        per_hour: dict[str, list[float]] = {name: [] for name in pids}
        failed = 0
        for _ in range(ROUNDS):
            runs_before = {name: probed_runs(port) for name, port in ports.items()}
            probes_before, failed_before = prometheus.probes, prometheus.failed
            used = window(pids, prometheus)
            runs = {name: probed_runs(port)[0] - runs_before[name][0] for name, port in ports.items()}
            failed += sum(probed_runs(port)[1] - runs_before[name][1] for name, port in ports.items())
            failed += prometheus.failed - failed_before
            runs["blackbox"] = prometheus.probes - probes_before
            for name, seconds in used.items():
                per_hour[name].append(seconds * 3600 / WINDOW)
                if name in runs:
                    per_run[name].append(1e6 * seconds / runs[name])
    figures: dict[str, Any] = {f"{name}_us": statistics.median(v) for name, v in per_run.items() if v}
    figures |= {f"{name}_hour": statistics.median(v) for name, v in per_hour.items()}
    ratios = [p / b for p, b in zip(per_run["probed"], per_run["blackbox"], strict=True)]
    figures |= {"ratio": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios)), "failed": failed}
    if "baseline" in per_run:
        figures["baseline_ratio"] = statistics.median(
            b / x for b, x in zip(per_run["baseline"], per_run["blackbox"], strict=True)
        )
    return figures


def measure(work: Path, only: set[str] | None = None) -> dict[str, Any]:
    """The section's parts (title, intro, header, rows, notes) for bench/run.py's Section."""
    baseline = [f"{BASELINE_REV} µs / run", f"{BASELINE_REV} ratio", f"{BASELINE_REV} idle s / hour"]
    header = ["type", "probed µs / run", "blackbox_exporter µs / probe", "ratio", "target"]
    header += ["probed s / hour", "blackbox_exporter s / hour", "probed idle s / hour"]
    section: dict[str, Any] = {
        "title": TITLE,
        "intro": _intro(),
        "header": header + (baseline if BASELINE_REV else []),
        "rows": [],
        "notes": [],
    }
    if shutil.which(EXPORTER) is None:
        section["notes"].append(NOT_INSTALLED)
        return section
    load_before = os.getloadavg()
    with targets(work) as by_type, exporter(work, by_type) as running:
        for kind in TYPES:
            if only and kind not in only:
                continue
            options, module, target = by_type[kind]
            print(f"bench: at a pod's pace: {kind} ...", file=sys.stderr, flush=True)
            figures = one_type(work, options, running, f"/probe?module={module}&target={target}")
            section["rows"].append(_row(kind, figures))
            if figures["failed"]:
                section["notes"].append(f"{kind}: {figures['failed']} runs or probes failed in the windows.")
    load_after = os.getloadavg()
    section["notes"].append(load_note(load_before, load_after))
    return section


def _row(kind: str, figures: dict[str, Any]) -> list[str]:
    low, high = figures["ratio_range"]
    met = "met" if figures["ratio"] <= TARGET else "not met"
    row = [
        kind,
        f"{figures['probed_us']:,.0f}",
        f"{figures['blackbox_us']:,.0f}",
        f"{figures['ratio']:.2f}x ({low:.2f} to {high:.2f})",
        f"≤ {TARGET:.1f}x: {met}",
        f"{figures['probed_hour']:.1f}",
        f"{figures['blackbox_hour']:.1f}",
        f"{figures['probed_idle_hour']:.1f}",
    ]
    if "baseline_us" in figures:
        row += [f"{figures['baseline_us']:,.0f}", f"{figures['baseline_ratio']:.2f}x"]
        row.append(f"{figures['baseline_idle_hour']:.1f}")
    return row


def _intro() -> str:
    return (
        f"`bench/pace.py`: at 100 runs a second (the section above) each wake of probed's loop is shared by many "
        f"runs; a pod runs a few checks every few seconds. Here probed serves {PACE_CHECKS} checks every {PACE:g} s "
        f"and is scraped once per {PACE:g} s, and blackbox_exporter answers {PACE_CHECKS} `/probe` requests every "
        f"{PACE:g} s over one kept connection: what Prometheus asks of each for as many targets. All run at once "
        f"against the same loopback targets; CPU is each process's threads' run time over a {WINDOW:g} s window "
        f"(median of {ROUNDS} rounds), per run or probe (probed's includes its scrapes and everything it does "
        "between runs) and per hour. Idle: probed with one disk check an hour, doing nothing but its own clockwork."
        + (f" `{BASELINE_REV}` (BENCH_BASELINE_REV) runs the same checks in the same windows." if BASELINE_REV else "")
    )


def main() -> None:
    print_section(measure, "probed-pace-")


if __name__ == "__main__":
    main()
