"""probed against Debian's blackbox_exporter, type by type, in one run: CPU per run.

    python -m bench.blackbox [TYPE...]   (from the repository root; prints the section)

For every type both have (http, https, tcp, tcp with TLS, dns, grpc, icmp),
the same local target for both: probed serves 50 checks of the type at a
500 ms interval (100 runs a second); blackbox_exporter answers `/probe`
requests for the same module at the same rate, sent by this process over one
kept connection (as Prometheus scrapes it). Each program's CPU is the sum of
its threads' run time (/proc/PID/task/*/schedstat) over a window, divided by
its runs in that window: blackbox's figure includes parsing and answering the
request and rendering its registry, probed's its scheduler, store and event
loop. The two alternate window by window, in turn first (probed is stopped,
SIGSTOP, while blackbox is measured), and a ratio is the median of the
rounds' ratios, so load from elsewhere on the machine hits both alike.

bench/run_path.py then splits probed's run, per type, into the check's own
work and what probed does around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.certificates import issue_certificate  # noqa: E402
from tests.support.net import free_port, port_open, wait_until  # noqa: E402
from tests.support.probed import serving  # noqa: E402
from tests.support.servers.dnsmasq import DnsServer  # noqa: E402
from tests.support.servers.health_grpc import GrpcServer  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV")  # a revision of probed to run in the same rounds
SATURATED_RATE = 2000  # no-op runs/s of bench/run_path.py's saturated figure (SATURATED checks at 1 s)
CHECKS = 50
INTERVAL = 0.5  # seconds
RATE = CHECKS / INTERVAL  # runs a second, for both programs
WINDOW = 2.0 if QUICK else 4.0  # seconds of CPU measured per program per round
ROUNDS = 2 if QUICK else 5
SETTLE = 1.0  # seconds after probed resumes (its overdue runs catch up) before a window
# Targets (issue #20): at or under these ratios of blackbox_exporter's CPU per probe.
TARGETS = {"http": 0.9, "https": 1.0, "tcp": 0.9, "tcp (TLS)": 1.0, "dns": 0.9, "grpc": 1.0, "icmp": 0.9}

TITLE = "Side by side with blackbox_exporter: CPU per run, type by type"
HEADER = [
    "type",
    "probed µs / run",
    "blackbox_exporter µs / probe",
    "ratio",
    "target",
    "probed in process µs / run",
    "of which the check's own work",
    "of which around the run (no-op check)",
]


def cpu_ns(pid: int) -> int:
    """Run time of every thread of `pid` so far (ns); threads are long-lived in both programs."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended while we read
            total += int((task / "schedstat").read_text().split()[0])
    return total


@contextmanager
def targets(work: Path) -> Iterator[dict[str, tuple[dict[str, Any], str, str]]]:
    """Type -> (probed check options, blackbox module, blackbox target), all on loopback."""
    ca = issue_certificate(work, "bench-ca", ca=True)
    leaf = issue_certificate(work, "localhost", issuer=ca)
    http_port, https_port = free_port(), free_port()
    with ExitStack() as stack:
        for args in (["target", str(http_port)], ["target", str(https_port), str(leaf.cert_file), str(leaf.key_file)]):
            proc = subprocess.Popen([sys.executable, "bench/apps.py", *args], cwd=ROOT)
            stack.callback(_end, proc)
        dns = DnsServer(work / "dns")
        dns.start({"www.bench.test": ["192.0.2.10"]})
        stack.callback(dns.stop)
        grpc = GrpcServer()
        grpc.start()
        stack.callback(grpc.stop)
        wait_until(lambda: port_open(http_port) and port_open(https_port), "the http and https targets")
        ca_file = str(ca.cert_file)
        yield {
            "http": (
                {"type": "http", "url": f"http://127.0.0.1:{http_port}/health"},
                "http",
                f"http://127.0.0.1:{http_port}/health",
            ),
            "https": (
                {"type": "http", "url": f"https://127.0.0.1:{https_port}/health", "ca_file": ca_file},
                "https",
                f"https://127.0.0.1:{https_port}/health",
            ),
            "tcp": ({"type": "tcp", "host": "127.0.0.1", "port": http_port}, "tcp", f"127.0.0.1:{http_port}"),
            "tcp (TLS)": (
                {"type": "tcp", "host": "127.0.0.1", "port": https_port, "tls": True, "ca_file": ca_file},
                "tcp_tls",
                f"127.0.0.1:{https_port}",
            ),
            "dns": (
                {"type": "dns", "name": "www.bench.test", "server": "127.0.0.1", "port": dns.port},
                "dns",
                f"127.0.0.1:{dns.port}",
            ),
            "grpc": ({"type": "grpc", "target": f"127.0.0.1:{grpc.port}"}, "grpc", f"127.0.0.1:{grpc.port}"),
            "icmp": ({"type": "icmp", "host": "127.0.0.1", "count": 1}, "icmp", "127.0.0.1"),
        }


def _end(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def blackbox_config(ca_file: str) -> dict[str, Any]:
    """One module per type, each as close as blackbox allows to probed's check."""
    ip4 = {"preferred_ip_protocol": "ip4"}
    tls = {"ca_file": ca_file}
    modules: dict[str, dict[str, Any]] = {
        "http": {"prober": "http", "http": ip4},
        "https": {"prober": "http", "http": {**ip4, "tls_config": tls}},
        "tcp": {"prober": "tcp", "tcp": ip4},
        "tcp_tls": {"prober": "tcp", "tcp": {**ip4, "tls": True, "tls_config": tls}},
        "dns": {
            "prober": "dns",
            "dns": {**ip4, "query_name": "www.bench.test", "query_type": "A", "transport_protocol": "udp"},
        },
        "grpc": {"prober": "grpc", "grpc": {**ip4, "tls": False}},
        "icmp": {"prober": "icmp", "icmp": ip4},
    }
    return {"modules": {name: {"timeout": "2s", **module} for name, module in modules.items()}}


def probed_runs(port: int) -> tuple[int, int]:
    """(runs, failed runs) so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    runs = [line for line in lines if line.startswith("probed_check_runs_total{")]
    total = sum(int(float(line.rsplit(" ", 1)[1])) for line in runs)
    failed = sum(int(float(line.rsplit(" ", 1)[1])) for line in runs if 'result="fail"' in line)
    return total, failed


def probed_window(proc: subprocess.Popen[bytes], port: int) -> tuple[float, int, int]:
    """Resume probed, let it catch up, measure one window, stop it again: (CPU s, runs, failed)."""
    os.kill(proc.pid, signal.SIGCONT)
    time.sleep(SETTLE)
    runs, failed = probed_runs(port)  # the scrape before the window: its cost is not a run's
    start = cpu_ns(proc.pid)
    time.sleep(WINDOW)
    used = cpu_ns(proc.pid) - start
    runs_after, failed_after = probed_runs(port)
    os.kill(proc.pid, signal.SIGSTOP)
    return used / 1e9, runs_after - runs, failed_after - failed


async def drive(url: str, count: int) -> int:
    """`count` GETs of `url` at RATE a second over one session; how many probes succeeded."""
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def one() -> bool:
            async with session.get(url) as response:
                return "\nprobe_success 1" in await response.text()

        loop = asyncio.get_running_loop()
        start, tasks = loop.time(), []
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / RATE - loop.time()))
            tasks.append(asyncio.create_task(one()))
        return sum(await asyncio.gather(*tasks))


def blackbox_window(pid: int, url: str) -> tuple[float, int, int]:
    """(CPU s, probes, failed probes) of one window of /probe requests at RATE."""
    count = int(RATE * WINDOW)
    start = cpu_ns(pid)
    succeeded = asyncio.run(drive(url, count))
    return (cpu_ns(pid) - start) / 1e9, count, count - succeeded


@contextmanager
def probed_serving(
    work: Path, kind: str, options: dict[str, Any], source: Path | None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """probed serve (of the checkout `source`, or this tree's) with CHECKS checks of
    `options`: ready, past the first runs, then stopped (SIGSTOP) until a window resumes it."""
    port = free_port()
    checks = {f"{kind.split()[0]}-{i}": {**options, "interval": INTERVAL, "timeout": 0.45} for i in range(CHECKS)}
    config = work / f"probed-{port}.yaml"
    config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{port}"}, "checks": checks}))
    with serving(config, until="ready", source=source, seconds=60, clean_exit=False) as served:
        time.sleep(1.5)  # past every first run and the join of the spread cadence
        os.kill(served.process.pid, signal.SIGSTOP)
        try:
            yield served.process, port
        finally:
            os.kill(served.process.pid, signal.SIGCONT)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


Window = Callable[[], tuple[float, int, int]]  # one measured window: (CPU s, runs, failed runs)


def probed_sources(work: Path) -> dict[str, Path | None]:
    """This tree's probed, and with BENCH_BASELINE_REV that revision's in the same rounds."""
    sources: dict[str, Path | None] = {"probed": None}
    if BASELINE_REV:
        from bench.support import checkout

        sources["baseline"] = checkout(BASELINE_REV, work)
    return sources


def side_by_side(kind: str, options: dict[str, Any], probe_url: str, work: Path, pid: int) -> dict[str, Any]:
    """Alternating rounds for one type, each program first in turn: medians of each program's
    CPU per run, and of the rounds' ratios to blackbox (and of probed to the baseline)."""
    asyncio.run(drive(probe_url, 20))  # blackbox's warm-up: first connections, its buffers
    with ExitStack() as stack:
        windows: dict[str, Window] = {"blackbox": functools.partial(blackbox_window, pid, probe_url)}
        for name, source in probed_sources(work).items():
            proc, port = stack.enter_context(probed_serving(work, kind, options, source))
            windows[name] = functools.partial(probed_window, proc, port)
        order = sorted(windows)
        per_run: dict[str, list[float]] = {name: [] for name in order}
        failures = dict.fromkeys(order, 0)
        for round_ in range(ROUNDS):
            for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
                cpu, runs, failed = windows[name]()
                failures[name] += failed
                per_run[name].append(1e6 * cpu / runs)
    ratios = [p / b for p, b in zip(per_run["probed"], per_run["blackbox"])]
    figures: dict[str, Any] = {f"{name}_us": statistics.median(values) for name, values in per_run.items()}
    figures |= {"ratio": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios)), "failures": failures}
    if "baseline" in per_run:
        figures["baseline_ratio"] = statistics.median(p / b for p, b in zip(per_run["probed"], per_run["baseline"]))
        figures["baseline_to_blackbox"] = statistics.median(
            b / x for b, x in zip(per_run["baseline"], per_run["blackbox"])
        )
    return figures


def run_path(options: dict[str, Any]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "bench/run_path.py", json.dumps(options), str(WINDOW), str(1 if QUICK else 3)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


EXPORTER = "prometheus-blackbox-exporter"
NOT_INSTALLED = f"{EXPORTER} is not installed (bench/setup.sh installs it): skipped."


@contextmanager
def exporter(work: Path, by_type: dict[str, tuple[dict[str, Any], str, str]]) -> Iterator[tuple[int, int]]:
    """Debian's blackbox_exporter with a module per type of `targets`, answering: (pid, port)."""
    config = work / "blackbox.yml"
    ca_file = str(next(o for o, *_ in by_type.values() if "ca_file" in o)["ca_file"])
    config.write_text(yaml.safe_dump(blackbox_config(ca_file)))
    port = free_port()
    proc = subprocess.Popen(
        [EXPORTER, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/metrics"), "blackbox_exporter")
        yield proc.pid, port
    finally:
        _end(proc)


def measure(work: Path, only: set[str] | None = None) -> dict[str, Any]:
    """The section's parts (title, intro, header, rows, notes) for bench/run.py's Section."""
    header = HEADER + (
        [f"{BASELINE_REV} µs / run", f"{BASELINE_REV} ratio", f"probed vs {BASELINE_REV}"] if BASELINE_REV else []
    )
    section: dict[str, Any] = {"title": TITLE, "intro": _intro(), "header": header, "rows": [], "notes": []}
    if shutil.which(EXPORTER) is None:
        section["notes"].append(NOT_INSTALLED)
        return section
    load_before = os.getloadavg()
    breakdowns = []
    with targets(work) as by_type, exporter(work, by_type) as (pid, port):
        for kind, (options, module, target) in by_type.items():
            if only and kind not in only:
                continue
            print(f"bench: blackbox side by side: {kind} ...", file=sys.stderr, flush=True)
            url = f"http://127.0.0.1:{port}/probe?module={module}&target={target}"
            figures = side_by_side(kind, options, url, work, pid)
            path = run_path(options)
            breakdowns.append((kind, path))
            section["rows"].append(_row(kind, figures, path))
            failed = ", ".join(f"{count} of {program}'s" for program, count in figures["failures"].items() if count)
            if failed:
                section["notes"].append(f"{kind}: {failed} runs failed in the windows.")
    load_after = os.getloadavg()
    section["notes"] += _notes(breakdowns, load_before, load_after)
    return section


def _row(kind: str, figures: dict[str, Any], path: dict[str, float]) -> list[str]:
    low, high = figures["ratio_range"]
    met = "met" if figures["ratio"] <= TARGETS[kind] else "not met"
    baseline = []
    if "baseline_ratio" in figures:
        baseline = [
            f"{figures['baseline_us']:,.0f}",
            f"{figures['baseline_to_blackbox']:.2f}x",
            f"{figures['baseline_ratio']:.2f}x",
        ]
    return [
        kind,
        f"{figures['probed_us']:,.0f}",
        f"{figures['blackbox_us']:,.0f}",
        f"{figures['ratio']:.2f}x ({low:.2f} to {high:.2f})",
        f"≤ {TARGETS[kind]:.1f}x: {met}",
        f"{path['all_us']:,.0f}",
        f"{path['own_us']:,.0f}",
        f"{path['around_us']:,.0f}",
        *baseline,
    ]


def _intro() -> str:
    return (
        f"`bench/blackbox.py`: for each type, probed serves {CHECKS} checks at a {INTERVAL * 1000:.0f} ms interval "
        f"({RATE:.0f} runs/s) and Debian's blackbox_exporter answers `/probe` for the same target at the same rate "
        "(one kept client connection, as Prometheus scrapes it), both against the same loopback servers. CPU is "
        "the sum of each process's threads' run time (/proc/PID/task/*/schedstat) over a "
        f"{WINDOW:g} s window divided by the runs or probes in it; blackbox's includes answering each request and "
        f"rendering its registry. The programs alternate window by window, {ROUNDS} rounds, in turn first (probed "
        "is stopped while blackbox is measured); a ratio is the median of the rounds' ratios, their range in "
        "brackets. The last three columns come from `bench/run_path.py`, in a process of its own: the "
        f"scheduler, runner and store running the same {CHECKS} checks in process, and alternating with that, "
        "the same checks with `run()` replaced by an immediate pass (around the run); the check's own work is "
        "the difference."
        + (
            f" `{BASELINE_REV}` (BENCH_BASELINE_REV) is that revision's probed in the same rounds: its CPU per run, "
            "its ratio to blackbox_exporter, and this tree's ratio to it (before and after under the same load)."
            if BASELINE_REV
            else ""
        )
    )


def _notes(
    breakdowns: list[tuple[str, dict[str, float]]], before: tuple[float, ...], after: tuple[float, ...]
) -> list[str]:
    notes = [load_note(before, after)]
    if breakdowns:
        keys = (
            "around_us", "runner_in_place_us", "store_in_place_us", "loop_in_place_us", "runner_us", "store_us",
            "around_saturated_us", "wakes_per_run", "bare_wake_us", "metrics_per_run_us",
        )  # fmt: skip
        median = {key: statistics.median(path[key] for _, path in breakdowns) for key in keys}
        wakes = median["wakes_per_run"] * median["bare_wake_us"]
        notes.append(
            f"Around a run, median over the types (µs of CPU per run, no-op check, {RATE:.0f} runs/s): in all "
            f"{median['around_us']:.1f} (target: under 50): the runner {median['runner_in_place_us']:.1f} in place "
            f"({median['runner_us']:.1f} for one warm check in a loop: the timeout task, timing, levels, the "
            f"Result), the store {median['store_in_place_us']:.1f} ({median['store_us']:.1f} warm: history, "
            f"counters, group counts), the loop {median['loop_in_place_us']:.1f} (the Pacer, the slot, asyncio's "
            f"steps and the wakes). The loop slept and woke {median['wakes_per_run']:.2f} times per run; one wake "
            f"of a loop with nothing else to do costs {median['bare_wake_us']:.0f} µs on this machine, so "
            f"{wakes:.0f} µs a run is the price of sleeping between ticks, more with probed's code to run cold "
            f"after each sleep. With a hundred runs to a wake ({SATURATED_RATE:,} no-op runs/s): "
            f"{median['around_saturated_us']:.1f} µs a run. Metrics are built at scrape time from the store: one "
            f"render of 50 checks amortized over the runs between 15 s scrapes is "
            f"{median['metrics_per_run_us']:.2f} µs a run. Logging: probed logs transitions, never a run."
        )
    return notes


def load_note(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """The machine's load around a section's measurements, for its notes."""

    def load(values: tuple[float, ...]) -> str:
        return ", ".join(f"{value:.1f}" for value in values)

    return f"Load average (1, 5, 15 min): {load(before)} before, {load(after)} after (2 cores, shared)."


def print_section(measure: Callable[[Path, set[str] | None], dict[str, Any]], prefix: str) -> None:
    """A section script's main: measure the types named on the command line (or all) and print the section."""
    import tempfile

    from bench.support import Section

    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        print(Section(**measure(work, set(sys.argv[1:]) or None)).markdown())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    print_section(measure, "probed-blackbox-")


if __name__ == "__main__":
    main()
