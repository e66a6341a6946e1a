"""Measure probed and write docs/benchmarks.md: `make bench`.

Every figure is compared against a baseline measured in the same run on the
same machine: ratios and medians, never a number from elsewhere. Servers run
as separate processes on loopback; CPU is read from /proc for the process
being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.probed import serving  # noqa: E402

PYTHON = sys.executable
PROBED = [PYTHON, "-m", "probed"]
TICKS = os.sysconf("SC_CLK_TCK")
QUICK = os.environ.get("BENCH_QUICK") == "1"  # shorter runs, for trying the script out


@dataclass
class Section:
    title: str
    intro: str
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.intro, ""]
        if self.rows:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("|" + "---|" * len(self.header))
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


# -- helpers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, seconds: float = 30, status: int | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if status is None or response.status == status:
                    return
        except urllib.error.HTTPError as error:
            if status is None or error.code == status:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


@contextmanager
def process(args: list[str], ready_url: str | None = None, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, **kwargs)
    try:
        if ready_url:
            wait_http(ready_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_config(directory: Path, name: str, config: dict[str, Any]) -> str:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def disk_checks(count: int, directory: str) -> dict[str, Any]:
    return {f"disk-{i}": {"type": "disk", "path": directory} for i in range(count)}


def fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


# -- 1. endpoints under load ------------------------------------------------------------------


def wrk(url: str, seconds: int, accept: str | None = None) -> dict[str, float]:
    headers = ["-H", f"Accept: {accept}"] if accept else []
    done = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", *headers, url], capture_output=True, text=True, check=True
    )
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {"rps": rps, "p50": latency("50"), "p99": latency("99")}


def endpoints(work: Path) -> Section:
    seconds = 4 if QUICK else 5
    rounds = 2 if QUICK else 12
    section = Section(
        "Endpoint throughput and latency",
        f"`wrk -t2 -c32 -d{seconds}s --latency` over loopback, server and wrk sharing the machine's cores; "
        f"bare aiohttp and probed alternated over {rounds} rounds, in turn first and second (medians; a ratio "
        "is the median of each round's ratio). Server CPU: the server process's user and system time per "
        "request, less sensitive than requests/s to what else runs on the machine. probed has 50 disk checks "
        "configured on a 10 s interval. Baselines from the same run: "
        "a bare aiohttp app answering a constant body (the ceiling for an aiohttp service here), and an app "
        "that runs the same 50 checks inside each request (the design probed replaces), measured once.",
        header=[
            "server",
            "path",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "server CPU µs / request",
            "vs bare aiohttp",
            "p99 vs bare",
        ],
    )
    bare_port, inline_port, probed_port = free_port(), free_port(), free_port()
    config = write_config(
        work,
        "fifty.yaml",
        {"checks": disk_checks(50, tempfile.gettempdir()), "server": {"listen": f"127.0.0.1:{probed_port}"}},
    )
    ports = {"bare aiohttp": bare_port, "probed": probed_port}  # the rows' order
    apps = {"bare aiohttp": [PYTHON, "bench/apps.py", "bare", str(bare_port)]}
    # until ready: every check has run once
    probeds = {"probed": serving(config, "--log-level", "warning", until="ready", clean_exit=False)}
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    if baseline_rev:  # that revision's probed in the same rounds: before and after under the same load
        baseline_port = free_port()
        listen = {"server": {"listen": f"127.0.0.1:{baseline_port}"}}
        baseline_config = write_config(
            work, "fifty-baseline.yaml", {"checks": disk_checks(50, tempfile.gettempdir()), **listen}
        )
        baseline = probed_at(checkout(baseline_rev, work))
        ports[f"probed `{baseline_rev}`"] = baseline_port
        probeds[f"probed `{baseline_rev}`"] = serving(
            baseline_config, "--log-level", "warning", until="ready", command=baseline, clean_exit=False
        )
    compared = list(ports)  # alternated in rounds; the inline app is measured once
    ports["checks in each request"] = inline_port
    apps["checks in each request"] = [PYTHON, "bench/apps.py", "inline", str(inline_port), config]
    paths = ("/health/ready", "/health")
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with contextlib.ExitStack() as stack:
        pids = {
            name: stack.enter_context(process(args, f"http://127.0.0.1:{ports[name]}/health/ready")).pid
            for name, args in apps.items()
        }
        pids |= {name: stack.enter_context(probed).process.pid for name, probed in probeds.items()}

        def measure(name: str, path: str) -> None:
            before = cpu_seconds(pids[name])
            figures = wrk(f"http://127.0.0.1:{ports[name]}{path}", seconds)
            figures["cpu_us"] = 1e6 * (cpu_seconds(pids[name]) - before) / (figures["rps"] * seconds)
            runs.setdefault((name, path), []).append(figures)

        loads = [os.getloadavg()[0]]
        for round_number in range(rounds):
            for path in paths:
                for name in compared if round_number % 2 else reversed(compared):  # drift hits each alike
                    measure(name, path)
            loads.append(os.getloadavg()[0])
        for path in paths:
            measure("checks in each request", path)
    ratios: dict[tuple[str, str], tuple[float, float]] = {}
    for (name, path), figures in sorted(
        runs.items(), key=lambda run: (list(ports).index(run[0][0]), paths.index(run[0][1]))
    ):
        bare = runs[("bare aiohttp", "/health/ready")]
        rps_ratio = statistics.median(f["rps"] / b["rps"] for f, b in zip(figures, bare))
        p99_ratio = statistics.median(f["p99"] / b["p99"] for f, b in zip(figures, bare))
        ratios[(name, path)] = (rps_ratio, p99_ratio)
        section.rows.append(
            [
                name,
                f"`{path}`",
                fmt(statistics.median(f["rps"] for f in figures), 0),
                fmt(statistics.median(f["p50"] for f in figures), 2),
                fmt(statistics.median(f["p99"] for f in figures), 2),
                fmt(statistics.median(f["cpu_us"] for f in figures), 1),
                f"{rps_ratio:.2f}x",
                f"{p99_ratio:.2f}x",
            ]
        )
    ready_rps, ready_p99 = ratios[("probed", "/health/ready")]
    ready_cpu = statistics.median(
        p["cpu_us"] / b["cpu_us"]
        for p, b in zip(runs[("probed", "/health/ready")], runs[("bare aiohttp", "/health/ready")])
    )
    inline = statistics.median(f["rps"] for f in runs[("checks in each request", "/health/ready")])
    probed_ready = statistics.median(f["rps"] for f in runs[("probed", "/health/ready")])
    section.notes.append(
        f"`/health/ready`: {ready_rps:.2f}x the bare aiohttp ceiling's requests/s (target: at least 0.95x), "
        f"p99 {ready_p99:.2f}x its p99 (target: at most 1.2x), server CPU per request {ready_cpu:.2f}x; "
        f"{probed_ready / inline:.0f}x the requests/s of running the checks in each request."
    )
    if baseline_rev:
        before = runs[(f"probed `{baseline_rev}`", "/health/ready")]
        after = runs[("probed", "/health/ready")]
        ratio = {key: statistics.median(a[key] / b[key] for a, b in zip(after, before)) for key in after[0]}
        section.notes.append(
            f"`/health/ready` of this probed against probed `{baseline_rev}` in the same rounds (medians of the "
            f"rounds' ratios): requests/s {ratio['rps']:.2f}x, p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x, "
            f"server CPU per request {ratio['cpu_us']:.2f}x."
        )
    section.notes.append(in_process_cost(work))
    section.notes.append(
        "`/health` with 50 checks serves a body rendered once per change of state, so it stays "
        f"at {ratios[('probed', '/health')][0]:.2f}x the ceiling although the body is larger."
    )
    section.notes.append(
        f"Load average of the machine during the rounds: {min(loads):.1f} to {max(loads):.1f} ({os.cpu_count()} "
        "cores); on a busy machine the ratios are rough, CPU per request the steadiest of them."
    )
    return section


def formats(work: Path) -> Section:
    """/health in every format the HTTP API serves, chosen by Accept as clients choose them."""
    sys.path.insert(0, str(ROOT))
    from probed.report import SERVED
    from probed.store import HISTORY_LENGTH

    seconds, rounds = (3, 3) if QUICK else (4, 5)
    section = Section(
        "/health per format",
        f"`wrk -t2 -c32 -d{seconds}s --latency -H 'Accept: ...'` (medians of {rounds} rounds) against `/health` of "
        f"probed with 50 disk checks on a 1 s interval, measured once every check has run {HISTORY_LENGTH} "
        "times: the page's worst case, with every strip of recent runs full and the state changing 50 times "
        "a second. One row per format of the table in probed/report/. The ceiling for each is the bare "
        "aiohttp app answering a constant body of the same size, measured in rounds alternating with "
        "probed's; the ratio is the median of the rounds' ratios.",
        header=[
            "format (Accept)",
            "body bytes",
            "requests/s",
            "p50 ms",
            "p99 ms",
            "bare aiohttp, same size: requests/s",
            "vs bare aiohttp",
            "rounds' ratios",
        ],
    )
    probed_port = free_port()
    config = write_config(
        work,
        "formats.yaml",
        {
            "checks": disk_checks(50, tempfile.gettempdir()),
            "defaults": {"interval": "1s", "timeout": "500ms"},
            "server": {"listen": f"127.0.0.1:{probed_port}"},
        },
    )
    url = f"http://127.0.0.1:{probed_port}/health"
    loads = [os.getloadavg()[0]]
    with serving(config, "--log-level", "warning", until="ready", clean_exit=False):
        time.sleep(HISTORY_LENGTH + 2)  # every strip full
        for form in SERVED:
            accept = form.media_types[0]
            size = len(http_body(url, accept))
            bare_port = free_port()
            bare = f"http://127.0.0.1:{bare_port}/health"
            with process([PYTHON, "bench/apps.py", "bare", str(bare_port), str(size)], bare):
                # Alternated rounds, so that load from elsewhere on the machine weighs on both alike.
                pairs = [(wrk(url, seconds, accept), wrk(bare, seconds)) for _ in range(rounds)]
            loads.append(os.getloadavg()[0])
            probed_rps = statistics.median(p["rps"] for p, _ in pairs)
            bare_rps = statistics.median(b["rps"] for _, b in pairs)
            ratios = [p["rps"] / b["rps"] for p, b in pairs]
            section.rows.append(
                [
                    f"{form.name} (`{accept}`)",
                    fmt(size, 0),
                    fmt(probed_rps, 0),
                    fmt(statistics.median(p["p50"] for p, _ in pairs), 2),
                    fmt(statistics.median(p["p99"] for p, _ in pairs), 2),
                    fmt(bare_rps, 0),
                    f"{statistics.median(ratios):.2f}x",
                    f"{min(ratios):.2f} to {max(ratios):.2f}",
                ]
            )
    section.notes.append(
        "Bodies come from a cache: health+json and text are rendered once per change of state (here 50 a "
        "second), the page at most once a second (it shows ages, and its strips make it the costliest to "
        "render). Browsers refresh the page every few seconds: each viewer costs well under one request a "
        "second."
    )
    section.notes.append(
        f"Load average of the machine during this section: {min(loads):.1f} to {max(loads):.1f} "
        f"({os.cpu_count()} cores). Alternating rounds and taking medians is meant to cancel other work on "
        "the machine; the last column shows how far it did: on a busy machine, single rounds differ by 2x "
        "or more, and the ratios are rough. Rerun `bench/run.py formats` on a quiet machine for sharper "
        "figures."
    )
    return section


def http_body(url: str, accept: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        return bytes(error.read())


def in_process_cost(work: Path) -> str:
    """bench/handle.py: the app's own work per /health/ready request against bare
    aiohttp's in the same process, best of three processes (with BENCH_BASELINE_REV,
    that revision's too)."""
    variants: list[tuple[str, dict[str, str]]] = [("probed", {})]
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    if baseline_rev:
        variants.append((f"probed `{baseline_rev}`", {"PYTHONPATH": str(checkout(baseline_rev, work))}))
    figures = []
    for label, env in variants:
        runs = [
            json.loads(
                subprocess.run(
                    [PYTHON, str(ROOT / "bench" / "handle.py")],
                    capture_output=True,
                    text=True,
                    check=True,
                    cwd=work,
                    env={**os.environ, **env},
                ).stdout
            )
            for _ in range(3)
        ]
        bare, probed = min(run["bare"] for run in runs), min(run["probed"] for run in runs)
        figures.append(f"{label} {probed:.2f} µs against bare aiohttp's {bare:.2f} µs ({probed / bare:.2f}x)")
    return (
        "In process, without the socket and the HTTP parser every app shares (`bench/handle.py`: routing, "
        f"middleware, handler, Response; both apps interleaved, best of 21 x 5,000 requests): {'; '.join(figures)}."
    )


# -- 2. scheduler scale --------------------------------------------------------------------------


def scheduler_scale(target: str) -> Section:
    seconds = 10
    sizes = [10, 100, 1000] if QUICK else [10, 100, 1000, 5000]
    section = Section(
        "Scheduler scale",
        "probed's scheduler and store in a fresh process (`bench/scale.py`) with N checks at a 10 s interval, "
        f"measured over {seconds} s after one interval of warm-up. CPU is this process's, all threads; the "
        "http checks' target is another process. Drift: how late each run started against its plan.",
        header=[
            "kind",
            "checks",
            "runs",
            "CPU % of a core",
            "CPU µs / run",
            "RSS MiB",
            "RSS KiB / check",
            "drift p50 ms",
            "drift p99 ms",
        ],
    )
    results: dict[tuple[str, int], dict[str, float]] = {}
    for kind in ("http", "disk"):
        for count in sizes:
            done = subprocess.run(
                [PYTHON, "bench/scale.py", kind, str(count), target, str(seconds)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            results[(kind, count)] = figures
            section.rows.append(
                [
                    kind,
                    fmt(count, 0),
                    fmt(figures["runs"], 0),
                    fmt(figures["cpu_percent"], 1),
                    fmt(figures["cpu_us_per_run"], 0),
                    fmt(figures["rss_mib"], 1),
                    fmt(figures["rss_per_check_kib"], 1),
                    fmt(figures["drift_p50_ms"], 2),
                    fmt(figures["drift_p99_ms"], 2),
                ]
            )
    http_1000 = results[("http", 1000)]
    section.notes.append(
        f"1,000 http checks at 10 s: {http_1000['cpu_percent']:.1f}% of one core (target: under 25%), "
        f"drift p99 {http_1000['drift_p99_ms']:.1f} ms (target: under 50 ms)."
    )
    biggest = max(sizes)
    per_check = results[("http", biggest)]["rss_per_check_kib"]
    section.notes.append(
        f"Memory per check levels off at about {per_check:.0f} KiB per http check at {biggest:,} checks "
        "(an aiohttp session and connector each) and less for disk checks; the rest is the process's "
        "fixed ~36 MiB."
    )
    return section


def transitions() -> Section:
    section = Section(
        "Verdict changes at scale",
        "When a shared dependency dies, every check on it changes verdict at once. `bench/transitions.py`: "
        "N checks each go pending -> pass, then pass -> fail, through the store (the event loop is blocked "
        "meanwhile, so this is time no probe is answered).",
        header=["checks", "transitions", "total ms", "µs / transition"],
    )
    for count in (100, 1000, 5000):
        done = subprocess.run(
            [PYTHON, "bench/transitions.py", str(count)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        figures = json.loads(done.stdout)
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["transitions"], 0),
                fmt(1000 * figures["seconds"], 1),
                fmt(figures["us_per_transition"], 2),
            ]
        )
    return section


# -- 3c. soak ------------------------------------------------------------------------------------


def soak() -> Section:
    seconds, copies = (60, 1) if QUICK else (300, 3)
    done = subprocess.run(
        [PYTHON, "bench/soak.py", str(seconds), str(copies)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    section = Section(
        "Soak",
        f"`probed serve` with {figures['checks']} checks ({copies} of every type in the cost table, against the "
        f"same real servers) at a 1 s interval for {seconds} s: {figures['runs']:,} runs. Sampled every 2 s; "
        "trends are least-squares slopes after the first quarter (warm-up), per hour. Flat means no leak.",
        header=["sampled", "start", "end", "max", "median", "slope per hour"],
    )
    for key, label in (
        ("rss_mib", "RSS MiB"),
        ("fds", "open fds"),
        ("threads", "threads"),
        ("probe_ms", "/health/live ms"),
    ):
        row = figures[key]
        section.rows.append(
            [label, fmt(row["start"], 1), fmt(row["end"], 1), fmt(row["max"], 1), fmt(row["median"], 1),
             fmt(row["slope_per_hour"], 1)]
        )  # fmt: skip
    return section


# -- 3b. driver import time ----------------------------------------------------------------------


def in_company() -> Section:
    """A check's duration alone and beside others (bench/company.py, issue 16)."""
    from bench.company import HEADER, ROUNDS, compare

    return Section(
        "A check alone and in company",
        "`bench/company.py`: one check run alone and beside others against real local servers (redis beside "
        "s3 and postgres; tcp beside tls, grpc and dns), at a 1 s interval: in `probed check` (its one run, "
        "every check started at once), and in `probed serve` (its first run, and the median of the five "
        f"after it); medians of {ROUNDS} rounds, alone and in company alternated. Target: in company within "
        "1.25x (+2 ms) of alone. `python bench/company.py main HEAD` compares two revisions in one session.",
        header=HEADER,
        rows=compare([None], ROUNDS),
    )


def driver_imports() -> Section:
    runs = 3 if QUICK else 9
    done = subprocess.run([PYTHON, "bench/drivers.py", str(runs)], capture_output=True, text=True, check=True, cwd=ROOT)
    figures = json.loads(done.stdout)
    baseline = figures.pop("baseline_ms")
    section = Section(
        "Driver import time",
        f"Wall time a fresh process spends importing each type's driver (`python -c 'import ...'`), minus "
        f"`python -c pass` ({fmt(baseline, 1)} ms), medians of {runs} alternated runs. A driver is imported "
        "only when a check of its type is created to run: `probed validate` and the other types never pay it.",
        header=["type", "driver modules", "import ms"],
    )
    for name, row in sorted(figures.items(), key=lambda item: item[1]["ms"]):
        section.rows.append([name, ", ".join(row["modules"]), fmt(row["ms"], 1)])
    return section


def history_memory() -> Section:
    checks = 5000
    sys.path.insert(0, str(ROOT))
    from probed.store import HISTORY_LENGTH

    section = Section(
        "Run history memory",
        f"What the in-memory history of recent runs holds at {checks:,} checks (`bench/history.py`): Python "
        "memory in use with every check's ring full, minus the same without the rings (tracemalloc). Each "
        "run is kept as status, reason, start time and duration; outputs and observed values are not kept.",
        header=["runs kept per check", "MiB at 5,000 checks", "KiB / check", "bytes / run"],
    )
    for length in sorted({HISTORY_LENGTH, 60, 120}):
        done = subprocess.run(
            [PYTHON, "bench/history.py", str(checks), str(length)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        figures = json.loads(done.stdout)
        label = f"**{length}** (probed's)" if length == HISTORY_LENGTH else str(length)
        section.rows.append(
            [label, fmt(figures["mib"], 1), fmt(figures["kib_per_check"], 1), fmt(figures["bytes_per_run"], 0)]
        )
    section.notes.append(
        f"probed keeps {HISTORY_LENGTH} runs: 5 minutes at the default 10 s interval, a strip that fits a "
        "phone's width on the status page, for less memory than the rest of a check's state (compare RSS "
        "KiB / check under Scheduler scale); twice the length costs twice the memory for a strip too wide to show."
    )
    return section


# -- 3. cost per run by type ----------------------------------------------------------------------


def cost_per_run(work: Path, services: dict[str, Any]) -> Section:
    runs = 50 if QUICK else 200
    section = Section(
        "Cost per run by type",
        f"CPU time of probed's process per check run (all threads, `time.process_time`), {runs} runs one after "
        "another against real local servers (each its own process), median of 3 batches.",
        header=["check", "CPU µs / run", "wall ms / run"],
    )
    configs = services["configs"]
    results = {}
    for name, options in configs.items():
        done = subprocess.run(
            [PYTHON, "bench/cost.py", json.dumps(options), str(runs)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        section.rows.append([name, fmt(results[name]["cpu_us"], 0), fmt(results[name]["wall_ms"], 2)])
    mysql_fresh, mysql_kept = results["mysql (fresh connection)"], results["mysql (kept connection)"]
    section.notes.append(
        f"A kept mysql connection costs {mysql_kept['cpu_us'] / mysql_fresh['cpu_us']:.2f}x the CPU of a fresh one; "
        "an amqp run always opens and closes its connection (AMQP's handshake is three round trips)."
    )
    fresh, kept = results["postgres (fresh connection)"], results["postgres (kept connection)"]
    section.notes.append(
        f"A kept postgres connection costs {kept['cpu_us'] / fresh['cpu_us']:.2f}x the CPU of a fresh "
        f"one per run on probed's side; on the server, {fresh['sessions']} runs opened "
        f"{fresh['sessions']} sessions fresh and {kept['sessions']} kept (pg_stat_database.sessions)."
    )
    pods, interval = 500, 10
    section.notes.append(
        f"Server load at a fleet of {pods} pods, one postgres check each at {interval} s: "
        f"{pods * 60 // interval:,} new connections per minute with fresh connections, "
        f"none in steady state with `keep_connection: true`."
    )
    return section


# -- 3c. command check against the plugin run directly -------------------------------------------


def command_against_subprocess() -> Section:
    runs = 50 if QUICK else 300
    done = subprocess.run([PYTHON, "bench/command.py", str(runs)], capture_output=True, text=True, check=True, cwd=ROOT)
    figures = json.loads(done.stdout)
    section = Section(
        "Command check against running the plugin directly",
        f"The same Nagios plugin (`check_tcp` against a local port), {runs} runs one after another: with "
        "`subprocess.run`, with asyncio's subprocess API alone, and as a probed command check (runner, own "
        "session, group kill, bounded output, performance data). CPU per run from `getrusage`: the calling "
        "process (all threads) and the plugin (reaped children); median of 3 batches.",
        header=["way", "caller CPU µs / run", "plugin CPU µs / run", "wall ms / run"],
    )
    for name, row in figures.items():
        section.rows.append([name, fmt(row["parent_us"], 0), fmt(row["children_us"], 0), fmt(row["wall_ms"], 2)])
    probed, floor = figures["probed command check"], figures["asyncio.create_subprocess_exec"]
    section.notes.append(
        f"probed adds {probed['parent_us'] - floor['parent_us']:,.0f} µs of CPU per run to asyncio's own "
        "subprocess handling; most of the gap to `subprocess.run` is asyncio's (on Python 3.11 a thread "
        "waits for each child), which keeps a hung plugin off the event loop."
    )
    return section


# -- 4. start-up -------------------------------------------------------------------------------------

PROBED_SCRIPT = str(Path(PYTHON).parent / "probed")  # the console script, as a HEALTHCHECK runs it
# Environment the example config needs: it reads two secrets from variables.
EXAMPLE_ENV = {"PAYMENTS_TOKEN": "bench", "MONITOR_PASSWORD": "bench"}


@dataclass
class Command:
    label: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    baseline: str = ""  # label of the command it is compared with
    max_ratio: float | None = None  # targets: at most this times the baseline,
    max_ms: float | None = None  # and at most this long
    before: bool = True  # also run from BENCH_BASELINE_REV (probed commands that existed then)


def startup(work: Path, target: str) -> Section:
    """Whole commands, alternated round by round so load on the machine hits every one
    alike; with BENCH_BASELINE_REV, the same commands from that revision of probed too."""
    repeats = 5 if QUICK else 21
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    section = Section(
        "Start-up",
        f"Wall time and CPU time (user + system) of whole processes (the console script "
        f"`{Path(PROBED_SCRIPT).name}`, as a HEALTHCHECK runs it), medians of {repeats} runs alternated round "
        "by round with their baselines: `python -c pass` "
        "and a urllib one-liner doing the same GET (both with the same interpreter and environment), and curl. "
        "`probed probe` GETs a bare aiohttp app on loopback."
        + (
            f" Before: the same command from revision `{baseline_rev}` of probed, alternated in the same run."
            if baseline_rev
            else ""
        ),
        header=[
            "command",
            "wall ms",
            "CPU ms",
            *(["before: wall ms", "before: CPU ms"] if baseline_rev else []),
            "wall vs baseline",
            "target",
        ],
    )
    disk = write_config(work, "disk.yaml", {"checks": {"root": {"type": "disk", "path": "/"}}})
    s3 = write_config(work, "s3.yaml", s3_config())
    listen = write_config(work, "probe.yaml", {"server": {"listen": target.split("/")[2]}, "checks": {}})
    example = str(ROOT / "config" / "probed.example.yaml")
    python, one_liner = "`python -c pass`", "urllib one-liner"
    commands = [
        Command(python, [PYTHON, "-c", "pass"]),
        Command(one_liner, [PYTHON, "-c", f"import urllib.request; urllib.request.urlopen({target!r}, timeout=3)"]),
        Command("`curl -fsS URL`", ["curl", "-fsS", "-o", "/dev/null", "--max-time", "3", target]),
        Command("`probed probe URL`", [PROBED_SCRIPT, "probe", target], baseline=one_liner, max_ratio=1.5, max_ms=60),
        Command(
            "`probed probe` (its URL from a config: yaml too)",
            [PROBED_SCRIPT, "probe", "--config", listen],
            baseline=one_liner,
            before=False,
        ),
        Command("`probed --version`", [PROBED_SCRIPT, "--version"], baseline=python, max_ratio=1.5),
        Command(
            "`probed validate` (example config, every type)",
            [PROBED_SCRIPT, "validate", "--config", example],
            env=EXAMPLE_ENV,
            max_ms=350,
        ),
        Command("`probed check` (disk only)", [PROBED_SCRIPT, "check", "--config", disk], max_ms=450),
        Command("`probed check` (disk and s3: boto3 imported)", [PROBED_SCRIPT, "check", "--config", s3]),
    ]
    variants: list[tuple[str, dict[str, str]]] = [("now", {})]
    if baseline_rev:
        variants.append(("before", {"PYTHONPATH": str(checkout(baseline_rev, work))}))
    # Bytecode as an installed probed has it (pip compiles at install time), also
    # where PYTHONDONTWRITEBYTECODE is set: otherwise every run compiles probed anew.
    for directory in [str(ROOT / "probed"), *(extra["PYTHONPATH"] for _, extra in variants if extra)]:
        subprocess.run([PYTHON, "-m", "compileall", "-q", directory], check=True)
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_number in range(repeats + 1):  # round 0 warms caches (bytecode, page cache) and is dropped
        for command in commands:
            for variant, extra in variants:
                if variant == "before" and not (command.before and command.args[0] == PROBED_SCRIPT):
                    continue
                wall_cpu = run_timed(command.args, {**command.env, **extra}, work)
                if round_number:
                    times.setdefault((command.label, variant), []).append(wall_cpu)
    ms = {key: 1000 * statistics.median(wall for wall, _ in values) for key, values in times.items()}
    cpu_ms = {key: 1000 * statistics.median(cpu for _, cpu in values) for key, values in times.items()}
    for command in commands:
        now = ms[(command.label, "now")]
        ratio = now / ms[(command.baseline, "now")] if command.baseline else None
        row = [command.label, fmt(now, 1), fmt(cpu_ms[(command.label, "now")], 1)]
        if baseline_rev:
            before = (command.label, "before")
            row += [fmt(ms[before], 1), fmt(cpu_ms[before], 1)] if before in ms else ["", ""]
        row.append(f"{ratio:.2f}x {command.baseline}" if ratio else "")
        targets = [
            f"≤ {command.max_ratio}x" if command.max_ratio else "",
            f"≤ {command.max_ms:g} ms" if command.max_ms else "",
        ]
        row.append(", ".join(t for t in targets if t))
        section.rows.append(row)
        if command.max_ratio or command.max_ms:
            section.notes.append(verdict(command, now, ratio, cpu_ms[(command.label, "now")]))
    pass_ms, pass_cpu = ms[(python, "now")], cpu_ms[(python, "now")]
    section.notes.append(
        f"Load: `python -c pass` took {pass_ms:.0f} ms ({pass_cpu:.0f} ms CPU) in this run; on this machine with "
        "little else running it takes 25 to 30 ms. Ratios to the baselines hold under load; the absolute targets "
        "(ms) assume the machine to itself."
    )
    for label, config in (("the default config (a disk check on /)", disk), ("an s3 check too (boto3)", s3)):
        rss = {variant: serve_rss(work, config, extra) for variant, extra in variants}
        before_text = f" ({rss['before']:.1f} MiB before)" if "before" in rss else ""
        section.notes.append(f"RSS of `probed serve` with {label}: {rss['now']:.1f} MiB{before_text}.")
    return section


def verdict(command: Command, ms: float, ratio: float | None, cpu: float) -> str:
    missed = []
    if command.max_ratio and ratio and ratio > command.max_ratio:
        missed.append(f"{ratio:.2f}x the {command.baseline} against at most {command.max_ratio}x")
    if command.max_ms and ms > command.max_ms:
        missed.append(f"{ms:.0f} ms ({cpu:.0f} ms CPU) against at most {command.max_ms:g} ms")
    if missed:
        return f"{command.label}: target missed: {'; '.join(missed)}."
    return f"{command.label}: target met."


def s3_config() -> dict[str, Any]:
    return {
        "checks": {
            "root": {"type": "disk", "path": "/"},
            "media": {
                "type": "s3",
                "bucket": "b",
                "endpoint_url": f"http://127.0.0.1:{free_port()}",
                "region": "us-east-1",
                "access_key_id": "a",
                "secret_access_key": "b",
                "critical": False,
            },
        }
    }


def checkout(rev: str, work: Path) -> Path:
    """That revision's probed package, to run from PYTHONPATH with this environment's packages."""
    directory = work / f"rev-{rev}"
    if directory.exists():
        return directory
    archive = subprocess.run(["git", "archive", rev, "probed"], cwd=ROOT, capture_output=True, check=True).stdout
    directory.mkdir()
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def probed_at(directory: Path) -> list[str]:
    """The command line of the probed package in `directory` (a checkout), ahead of this one."""
    code = (
        f"import sys; sys.path.insert(0, {str(directory)!r}); from probed.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [PYTHON, "-c", code]


def run_timed(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one whole process. cwd is outside the
    repository, so that `python -c` does not find ./probed ahead of PYTHONPATH."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, capture_output=True, check=False, cwd=cwd, env={**os.environ, **env})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def serve_rss(work: Path, config: str, env: dict[str, str]) -> float:
    port = free_port()
    path = write_config(
        work,
        f"serve-{port}.yaml",
        {**yaml.safe_load(Path(config).read_text()), "server": {"listen": f"127.0.0.1:{port}"}},
    )
    with serving(path, command=[PROBED_SCRIPT], env=env, clean_exit=False) as served:
        time.sleep(1)
        return rss_mib(served.process.pid)


# -- 5. detection latency ------------------------------------------------------------------------------


def detection(work: Path) -> Section:
    repeats = 3 if QUICK else 5
    section = Section(
        "Detection latency",
        "Time from a dependency's /health turning 500 until probed's `/health/ready` answers 503, and from "
        f"its recovery until 200 again (polled every 10 ms), median of {repeats} flips, each at a random "
        "point of the schedule. One http check, timeout 500 ms.",
        header=[
            "interval",
            "failure / success threshold",
            "down -> 503 (median s)",
            "up -> 200 (median s)",
            "worst case by design",
        ],
    )
    for interval, threshold in ((1.0, 1), (1.0, 3), (2.0, 1)):
        port, target_port = free_port(), free_port()
        config = write_config(
            work,
            f"detect-{port}.yaml",
            {
                "server": {"listen": f"127.0.0.1:{port}"},
                "checks": {
                    "api": {
                        "type": "http",
                        "url": f"http://127.0.0.1:{target_port}/health",
                        "interval": interval,
                        "timeout": 0.5,
                        "failure_threshold": threshold,
                        "success_threshold": threshold,
                    }
                },
            },
        )
        flag = work / f"flag-{target_port}"
        with (
            process([PYTHON, "bench/switch.py", str(target_port), str(flag)], f"http://127.0.0.1:{target_port}/"),
            serving(config, until="ready", clean_exit=False),
        ):
            ready = f"http://127.0.0.1:{port}/health/ready"
            downs, ups = [], []
            rng = random.Random(interval * 10 + threshold)
            for _ in range(repeats):
                time.sleep(rng.uniform(0, interval))  # flip at a random point of the schedule
                flag.write_text("500")
                downs.append(time_until_status(ready, 503))
                time.sleep(rng.uniform(0, interval))
                flag.write_text("200")
                ups.append(time_until_status(ready, 200))
        section.rows.append(
            [
                f"{interval:g} s",
                str(threshold),
                f"{statistics.median(downs):.2f}",
                f"{statistics.median(ups):.2f}",
                f"{interval * threshold:g} s (+ run time)",
            ]
        )
    section.notes.append(
        "A change is seen at the next run: on average half an interval, at worst one interval, "
        "then one more interval per further threshold step; readiness answers from the cache at once."
    )
    return section


def time_until_status(url: str, status: int, seconds: float = 30) -> float:
    start = time.monotonic()
    while http_status(url) != status:
        if time.monotonic() - start > seconds:
            raise RuntimeError("condition never met")
        time.sleep(0.01)
    return time.monotonic() - start


# -- fleet-safe readiness ------------------------------------------------------------------------------


def fleet(target: str) -> Section:
    section = Section(
        "Fleet-safe readiness",
        "Real `probed serve` processes (`bench/fleet.py`). Start: hourly checks (an http check on a live target "
        "and a disk check, timeout 2 s), time from spawning the process until `/health/ready` first answers 200 "
        "(polled every 10 ms). Peers: N replicas on 127.0.0.2.. share an http dependency (`scope: shared`, "
        "interval 2 s); dnsmasq resolves the peer name; the dependency's /health turns 500, and every "
        "replica's `probed_peer_requests_total` is read over 5 intervals of the outage.",
        header=["measure", "result", "design bound"],
    )
    decided = _fleet_script("decide", target)
    section.rows.append(
        [
            "start -> listening (median)",
            f"{decided['listening_median_s']:.2f} s",
            "-",
        ]
    )
    section.rows.append(
        [
            f"start -> decided `/health/ready` (median / max of {decided['repeats']})",
            f"{decided['decided_median_s']:.2f} s / {decided['decided_max_s']:.2f} s",
            "listening + 1 s jitter + one run (timeout 2 s); with the old random first offset: up to the "
            "interval (1 h)",
        ]
    )
    section.rows.append(
        ["listening -> decided (median)", f"{decided['after_listening_median_s']:.2f} s", "1 s jitter + one run"]
    )
    for count in (3, 20):
        peers = _fleet_script("peers", str(count))
        section.rows.append(
            [
                f"{count} replicas: peer requests per replica per interval, during the outage",
                f"{peers['requests_per_replica_per_interval']:g}",
                f"{peers['bound']} (one per other replica per failing shared check), plus one to itself at first",
            ]
        )
        section.rows.append(
            [
                f"{count} replicas: dependency down -> every replica says shared outage",
                f"{peers['all_shared_outage_after_s']:.2f} s",
                "one interval to see it fail + one for the peers' runs to count",
            ]
        )
        section.rows.append(
            [
                f"{count} replicas: unready during the outage / peer requests while healthy",
                f"{peers['unready_during_outage']} / {peers['requests_while_healthy']:g}",
                "0 / 0",
            ]
        )
    return section


def _fleet_script(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [PYTHON, "bench/fleet.py", *args], capture_output=True, text=True, check=True, cwd=ROOT, timeout=600
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- 6. against blackbox_exporter ------------------------------------------------------------------------


def against_blackbox(work: Path, target: str) -> Section:
    probes = 500 if QUICK else 2000
    section = Section(
        "Against a peer: prometheus-blackbox-exporter",
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


# -- 8. load: scrapes, idle clients, s3 memory, reloads ------------------------------------------------


def run_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([PYTHON, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def scrapes() -> Section:
    seconds = 5 if QUICK else 15
    section = Section(
        "Probes during /metrics scrapes",
        f"`bench/scrape.py`: `probed serve` with N disk checks; /health/live asked every 20 ms for {seconds} s "
        "on a kept-alive connection, first alone, then while another client scrapes /metrics back to back.",
        header=[
            "checks",
            "exposition KiB",
            "scrape ms",
            "probe p50 ms",
            "probe p99 ms",
            "during scrapes p50 ms",
            "during scrapes p99 ms",
            "during scrapes max ms",
        ],
    )
    for count in (1000, 5000):
        figures = run_json("bench/scrape.py", str(count), str(seconds))
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["exposition_kib"], 0),
                fmt(figures["scrape_ms"], 0),
                fmt(figures["probe_p50_ms"], 2),
                fmt(figures["probe_p99_ms"], 2),
                fmt(figures["scraping_p50_ms"], 2),
                fmt(figures["scraping_p99_ms"], 2),
                fmt(figures["scraping_max_ms"], 2),
            ]
        )
    section.notes.append(
        "The exposition is written in a thread of its own, releasing the GIL every 100 checks of a family; "
        "the probe figures include the machine's noise (compare the two columns of one row)."
    )
    return section


def idle_clients() -> Section:
    clients, nofile = 600, 256
    section = Section(
        "Idle connections",
        f"`bench/idle.py`: `probed serve` under `RLIMIT_NOFILE` {nofile}; {clients} clients each send half a "
        "request and wait; /health/live is asked 200 times before and during the flood (2 s timeout each).",
        header=["phase", "probes failed", "p50 ms", "p99 ms"],
    )
    figures = run_json("bench/idle.py", str(clients), str(nofile))
    for phase in ("quiet", "flooded"):
        row = figures[phase]
        section.rows.append([phase, fmt(row["failed"], 0), fmt(row["p50_ms"], 2), fmt(row["p99_ms"], 2)])
    section.notes.append(
        f"{figures['connected']} of the {clients} clients got a connection; probed closed {figures['closed']} "
        "of them, oldest idle first, to stay under its connection limit (a quarter of the file descriptors)."
    )
    return section


def s3_memory(services: dict[str, Any]) -> Section:
    seconds = 5 if QUICK else 15
    endpoint = services["configs"]["s3"]["endpoint_url"]
    section = Section(
        "s3 checks: memory and loop stalls",
        "`bench/s3load.py`: probed's daemon in a fresh process with N s3 checks against moto's server (another "
        f"process) at a 2 s interval; after every check has run twice, {seconds} s of a 5 ms timer on the event "
        "loop (how late it fires is how long a probe would wait) and the garbage collector's longest pause.",
        header=["s3 checks", "RSS MiB", "loop stall p99 ms", "longest loop stall ms", "longest GC pause ms"],
    )
    for count in (1, 20, 100):
        figures = run_json("bench/s3load.py", str(count), endpoint, str(seconds))
        section.rows.append(
            [
                fmt(count, 0),
                fmt(figures["rss_mib"], 1),
                fmt(figures["stall_p99_ms"], 1),
                fmt(figures["stall_max_ms"], 1),
                fmt(figures["gc_longest_ms"], 1),
            ]
        )
    return section


def reloads(work: Path, services: dict[str, Any]) -> Section:
    count = 5 if QUICK else 20
    checks: dict[str, dict[str, Any]] = {}
    for name, options in services["configs"].items():
        options = {k: v for k, v in options.items() if not k.startswith("_")}
        for i in range(3):
            checks[f"{name.split()[0]}-{len(checks)}-{i}"] = {**options, "interval": "1s", "timeout": "900ms"}
    path = write_config(work, "reloads.yaml", {"checks": checks})
    figures = run_json("bench/reloads.py", path, str(count))
    section = Section(
        "Same-config reloads",
        f"`bench/reloads.py`: `probed serve` with three checks of every type against real local servers, "
        f"at a 1 s interval; SIGHUP {count} times, 2 s apart, RSS read before and after each.",
        header=["RSS at start MiB", "after 2 reloads MiB", f"after {count} MiB", "slope, second half, MiB / reload"],
        rows=[
            [
                fmt(figures["rss_start_mib"], 1),
                fmt(figures["rss_after_2_mib"], 1),
                fmt(figures["rss_end_mib"], 1),
                fmt(figures["slope_second_half_mib_per_reload"], 3),
            ]
        ],
    )
    return section


def file_watching() -> Section:
    files, seconds, rounds = 10, (10 if QUICK else 30), 3
    figures = run_json("bench/watch.py", str(files), str(seconds), str(rounds))
    return Section(
        "Watching files for reload",
        f"`bench/watch.py`: `probed serve` with {files} heartbeat checks, each with a `token_file`, every 10 s "
        f"({figures['watched_files']} files watched with the config); its CPU time over {seconds} s, "
        f"`server.watch_files` off and on, interleaved, median of {rounds} rounds; and one poll (a `stat` of "
        "every file) timed in-process.",
        header=["watched files", "CPU off ms / min", "CPU on ms / min", "one poll µs"],
        rows=[
            [
                fmt(figures["watched_files"], 0),
                fmt(figures["cpu_ms_per_min_off"], 0),
                fmt(figures["cpu_ms_per_min_on"], 0),
                fmt(figures["poll_us"], 0),
            ]
        ],
        notes=[
            "The watch polls in a thread of its own, so the event loop is not woken for it; "
            "CPU time is the sum over the process's threads (schedstat, nanoseconds)."
        ],
    )


# -- the run --------------------------------------------------------------------------------------------------


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} "
        f"{platform.release()}, {time.strftime('%Y-%m-%d')}"
    )


def main() -> None:
    """`bench/run.py` runs every section; `bench/run.py NAME...` runs those sections only and
    replaces them in docs/benchmarks.md (names as printed while running)."""
    sys.path.insert(0, str(ROOT))
    from bench.services import dependency_services

    only = set(sys.argv[1:])

    work = Path(tempfile.mkdtemp(prefix="probed-bench-"))
    sections = []
    target_port = free_port()
    target = f"http://127.0.0.1:{target_port}/health"
    with process([PYTHON, "bench/apps.py", "target", str(target_port)], target):
        steps: list[tuple[str, Callable[[], Section]]] = [
            ("endpoints", lambda: endpoints(work)),
            ("formats", lambda: formats(work)),
            ("scheduler scale", lambda: scheduler_scale(target)),
            ("transitions", transitions),
            ("history", history_memory),
            ("cost per run", lambda: with_services(work, target, dependency_services, cost_per_run)),
            ("driver imports", driver_imports),
            ("company", in_company),
            ("soak", soak),
            ("command check", command_against_subprocess),
            ("start-up", lambda: startup(work, target)),
            ("detection", lambda: detection(work)),
            ("blackbox_exporter", lambda: against_blackbox(work, target)),
            ("fleet", lambda: fleet(target)),
            ("scrapes", scrapes),
            ("idle connections", idle_clients),
            ("s3 memory", lambda: with_services(work, target, dependency_services, lambda _, s: s3_memory(s))),
            ("reloads", lambda: with_services(work, target, dependency_services, reloads)),
            ("file watching", file_watching),
        ]
        unknown = only - {name for name, _ in steps}
        if unknown:
            raise SystemExit(f"bench: no section {', '.join(sorted(unknown))}")
        for name, step in steps:
            if only and name not in only:
                continue
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            section = step()
            print(section.markdown(), flush=True)
            sections.append(section)
    if only:
        update_sections(sections)
        shutil.rmtree(work, ignore_errors=True)
        return
    header = (
        "# Benchmarks\n\nGenerated by `make bench` (bench/run.py); every comparison is within one run on one "
        f"machine.\n\nMachine: {machine()}.\n"
    )
    before_after = (ROOT / "bench" / "before-after.md").read_text()
    (ROOT / "docs").mkdir(exist_ok=True)
    (ROOT / "docs" / "benchmarks.md").write_text("\n".join([header, *(s.markdown() for s in sections), before_after]))
    shutil.rmtree(work, ignore_errors=True)
    print("bench: wrote docs/benchmarks.md", file=sys.stderr)


def update_sections(sections: list[Section]) -> None:
    """Replace sections of the same title in docs/benchmarks.md; new ones go before the closing notes."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    closing = (ROOT / "bench" / "before-after.md").read_text().splitlines()[0]
    for section in sections:
        section.notes.append(
            f"Measured on {time.strftime('%Y-%m-%d')} by `bench/run.py` for this section alone, not in the run "
            "the rest of this file comes from: compare it with its own baselines only."
        )
        title = f"## {section.title}\n"
        if title in text:
            start = text.index(title)
            end = text.find("\n## ", start + len(title))
            text = text[:start] + section.markdown() + (text[end:] if end != -1 else "")
        else:
            start = text.index(closing)
            text = text[:start] + section.markdown() + "\n" + text[start:]
    path.write_text(text)
    print("bench: updated docs/benchmarks.md", file=sys.stderr)


def with_services(
    work: Path, target: str, dependency_services: Any, measure: Callable[[Path, dict[str, Any]], Section]
) -> Section:
    with dependency_services(work, target) as services:
        return measure(work, services)


if __name__ == "__main__":
    main()
