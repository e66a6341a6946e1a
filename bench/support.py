"""What every benchmark section shares: the Section it returns, the Bench it is
given, processes and their CPU and memory from /proc, wrk, waiting for a
condition, and the command line of another checkout's probed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import http_get  # noqa: E402

PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
QUICK = os.environ.get("BENCH_QUICK") == "1"  # shorter runs, for trying the script out


@dataclass
class Section:
    """One `## title` of docs/benchmarks.md; the title comes from bench/run.py's table."""

    intro: str
    rows: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    title: str = ""

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.intro, ""]
        if self.rows:
            lines.append("| " + " | ".join(self.header) + " |")
            lines.append("|" + "---|" * len(self.header))
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


@dataclass
class Bench:
    """What a section is given: a scratch directory, the URL of a live http target
    (bench/apps.py) and, started on demand, the dependency servers (bench/services.py)."""

    work: Path
    target: str

    def services(self) -> AbstractContextManager[dict[str, Any]]:
        from bench.services import dependency_services

        return dependency_services(self.work, self.target)


def until(condition: Callable[[], bool], seconds: float = 60, step: float = 0.01) -> float:
    """Seconds until condition() holds, asked every `step` seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > seconds:
            raise RuntimeError("condition never met")
        time.sleep(step)
    return time.monotonic() - start


def until_answer(url: str, condition: Callable[[int, str], bool], seconds: float = 60, step: float = 0.01) -> float:
    """Seconds until a GET of `url` answers so that condition(status, body) holds."""
    return until(lambda: condition(*http_get(url, 2)), seconds, step)


@contextmanager
def process(args: list[str], ready_url: str | None = None, **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (not probed: see serving) until the block ends; once `ready_url` answers."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, **kwargs)
    try:
        if ready_url:
            until_answer(ready_url, lambda status, _: status != 0, seconds=30, step=0.05)
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


def run_json(*args: str, cwd: Path = ROOT) -> dict[str, Any]:
    """Run a bench script with this interpreter: the JSON of its last line of output."""
    done = subprocess.run([PYTHON, *args], capture_output=True, text=True, cwd=cwd, timeout=1800)
    if done.returncode != 0:  # say why: a bench run of minutes that fails must not need a rerun to tell
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


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


def checkout(rev: str, work: Path) -> Path:
    """That revision's probed package, to run from PYTHONPATH with this environment's packages."""
    directory = work / f"rev-{rev}"
    if directory.exists():
        return directory
    archive = subprocess.run(["git", "archive", rev, "probed"], cwd=ROOT, capture_output=True, check=True).stdout
    directory.mkdir()
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


def probed_at(directory: Path, *args: str) -> list[str]:
    """The command line of the probed package in `directory` (a checkout), ahead of this one."""
    code = (
        f"import sys; sys.path.insert(0, {str(directory)!r}); from probed.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [PYTHON, "-c", code, *args]
