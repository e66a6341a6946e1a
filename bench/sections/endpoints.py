"""`/health/ready` and `/health` under wrk against bare aiohttp, alternated in rounds."""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.support import (
    PYTHON,
    QUICK,
    ROOT,
    Bench,
    Section,
    checkout,
    cpu_seconds,
    disk_checks,
    fmt,
    probed_at,
    process,
    write_config,
    wrk,
)
from tests.support.net import free_port
from tests.support.probed import serving


def measure(bench: Bench) -> Section:
    work = bench.work
    seconds = 4 if QUICK else 5
    rounds = 2 if QUICK else 12
    section = Section(
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
