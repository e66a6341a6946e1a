"""Whole commands (probed probe, validate, check, --version) against their baselines; RSS of serve."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.support import PYTHON, QUICK, ROOT, Bench, Section, checkout, fmt, rss_mib, write_config
from tests.support.net import free_port
from tests.support.probed import serving

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


def measure(bench: Bench) -> Section:
    """Whole commands, alternated round by round so load on the machine hits every one
    alike; with BENCH_BASELINE_REV, the same commands from that revision of probed too."""
    work, target = bench.work, bench.target
    repeats = 5 if QUICK else 21
    baseline_rev = os.environ.get("BENCH_BASELINE_REV")
    section = Section(
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
