"""A check's duration alone and in company: does any check pay for another's setup?

    python bench/company.py [REV ...]    e.g. main HEAD (default: the working tree)

For each case (redis beside s3 and postgres; tcp beside tls, grpc and dns), one
check is run alone and with its company, in `probed check` (a first run, the
only one) and in `probed serve` (the first run, and the median of the runs
after it), rounds alternated so that load from elsewhere weighs on both alike.
A REV is a git revision whose probed (`git archive`) runs on this venv's
drivers, so two revisions compare in one session against the same servers.
The verdict: in company within 1.25x (+2 ms) of alone (issue 16).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import QUICK, checkout, probed_at  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.probed import serving  # noqa: E402

SERVE_RUNS = 6  # runs per check in one `probed serve`: the first, then five later ones
TARGET_RATIO, TARGET_SLACK = 1.25, 0.002
ROUNDS = 2 if QUICK else 5


@dataclass(frozen=True)
class Case:
    name: str
    check: str  # the check whose duration is measured
    company: tuple[str, ...]  # the checks beside it


CASES = (
    Case("redis beside s3 and postgres", "redis", ("s3", "postgres")),
    Case("tcp beside tls, grpc and dns", "tcp", ("tls", "grpc", "dns")),
    Case("redis beside tls and postgres that hang", "redis", ("hung_tls", "hung_postgres")),
)


@contextmanager
def servers(work: Path) -> Iterator[dict[str, dict[str, Any]]]:
    """The cases' dependencies, real servers on loopback; the options of a check of each."""
    from tests.support.certificates import issue_certificate
    from tests.support.faults import silent_listener
    from tests.support.servers import temp_dir
    from tests.support.servers.dnsmasq import DnsServer
    from tests.support.servers.health_grpc import GrpcServer
    from tests.support.servers.postgres import PostgresServer
    from tests.support.servers.redis import RedisServer
    from tests.support.servers.s3 import S3Server

    with contextlib.ExitStack() as stack:
        base = temp_dir("probed-bench-company-")
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        postgres = PostgresServer.create(base / "pg")
        postgres.start()
        stack.callback(postgres.stop, "immediate")
        postgres.add_app_role()
        redis = RedisServer(work / "redis")
        redis.start()
        stack.callback(redis.stop)
        certificate = issue_certificate(work, days=90)
        redis_tls = RedisServer(work / "redis-tls", tls=(certificate.cert_file, certificate.key_file))
        redis_tls.start()
        stack.callback(redis_tls.stop)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs each request
        s3 = S3Server()
        s3.start()
        stack.callback(s3.stop)
        s3.create_bucket("bench")
        grpc = GrpcServer()
        grpc.start()
        stack.callback(grpc.stop)
        dns = DnsServer(work / "dns")
        dns.start({"www.bench.test": ["192.0.2.10"]})
        stack.callback(dns.stop)
        hung = stack.enter_context(silent_listener())  # accepts, never answers: its checks time out
        yield {
            "redis": {"type": "redis", "url": redis.url()},
            "postgres": {"type": "postgres", "dsn": postgres.dsn()},
            "s3": {
                "type": "s3",
                "bucket": "bench",
                "endpoint_url": s3.endpoint,
                "region": "us-east-1",
                "access_key_id": "test",
                "secret_access_key": "test",
            },
            "tcp": {"type": "tcp", "host": "127.0.0.1", "port": redis.port},
            "tls": {"type": "tls", "host": "127.0.0.1", "port": redis_tls.port, "ca_file": str(certificate.cert_file)},
            "grpc": {"type": "grpc", "target": f"127.0.0.1:{grpc.port}"},
            "dns": {"type": "dns", "name": "www.bench.test", "server": "127.0.0.1", "port": dns.port},
            "hung_tls": {"type": "tls", "host": "127.0.0.1", "port": hung, "ca_file": str(certificate.cert_file)},
            "hung_postgres": {"type": "postgres", "dsn": f"postgresql://app:secret@127.0.0.1:{hung}/app"},
        }


@contextmanager
def source(rev: str | None) -> Iterator[Path]:
    """The probed to run: the working tree, or a revision's files in a directory of their own."""
    if rev is None:
        yield ROOT
        return
    work = Path(tempfile.mkdtemp(prefix="probed-bench-rev-"))
    try:
        yield checkout(rev, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def config_file(work: Path, checks: dict[str, dict[str, Any]], port: int) -> Path:
    path = Path(tempfile.mkstemp(dir=work, suffix=".yaml")[1])
    timing = {"interval": "1s", "timeout": "900ms"}
    config = {
        "server": {"listen": f"127.0.0.1:{port}"},
        "checks": {name: {**options, **timing} for name, options in checks.items()},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # the config's order is the start order
    return path


def check_once(code: Path, config: Path, name: str) -> tuple[float, float]:
    """`probed check` of the whole config: the named check's duration and the
    command's wall time (its checks' runs, without start-up and prepare), in seconds."""
    done = subprocess.run(probed_at(code, "check", "--config", str(config), "--output", "json"), capture_output=True)
    document = json.loads(done.stdout)
    entries = [entries[0] for entries in document["checks"].values()]
    entry = next(entries[0] for key, entries in document["checks"].items() if key.split(":")[0] == name)
    began = min(_epoch(e["time"]) for e in entries)
    ended = max(_epoch(e["time"]) + float(e["duration"]) for e in entries)
    return float(entry["duration"]), ended - began


def _epoch(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp).timestamp()


def serve_runs(code: Path, config: Path, name: str) -> list[float]:
    """`probed serve` until the named check has run SERVE_RUNS times: its durations, oldest first."""
    history = f"/health/checks/{name}/history"
    with serving(config, "--log-level", "warning", command=probed_at(code), clean_exit=False) as served:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = _history(served.base + history)
            if len(runs) >= SERVE_RUNS:
                return [float(run["duration"]) for run in runs[:SERVE_RUNS]]
            time.sleep(0.5)
        raise RuntimeError(f"{name} did not run {SERVE_RUNS} times within 60 s")


def _history(url: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            runs: list[dict[str, Any]] = json.load(response)["runs"]
            return runs
    except OSError:
        return []


Figures = list[dict[str, Any]]


def measure(code: Path, work: Path, options: dict[str, dict[str, Any]], rounds: int) -> tuple[Figures, Figures]:
    """Per case and mode, the median durations alone and in company; per case,
    the median wall time of `probed check`'s runs alone and in company (seconds)."""
    rows: Figures = []
    walls: Figures = []
    for case in CASES:
        figures: dict[str, dict[str, list[float]]] = {"alone": {}, "company": {}}
        port = free_port()
        configs = {
            "alone": config_file(work, {case.check: options[case.check]}, port),
            # The check comes last: `probed check` starts the checks in the config's order.
            "company": config_file(
                work, {**{c: options[c] for c in case.company}, case.check: options[case.check]}, port
            ),
        }
        for round_number in range(rounds):
            order = ("alone", "company") if round_number % 2 else ("company", "alone")
            for setting in order:
                got = figures[setting]
                duration, wall = check_once(code, configs[setting], case.check)
                got.setdefault("check", []).append(duration)
                got.setdefault("wall", []).append(wall)
                runs = serve_runs(code, configs[setting], case.check)
                got.setdefault("serve, first run", []).append(runs[0])
                got.setdefault("serve, later runs", []).append(statistics.median(runs[1:]))
        for mode in ("check", "serve, first run", "serve, later runs"):
            alone = statistics.median(figures["alone"][mode])
            company = statistics.median(figures["company"][mode])
            rows.append({"case": case.name, "mode": mode, "alone": alone, "company": company})
        walls.append(
            {
                "case": case.name,
                "alone": statistics.median(figures["alone"]["wall"]),
                "company": statistics.median(figures["company"]["wall"]),
            }
        )
    return rows, walls


def within_target(alone: float, company: float) -> bool:
    return company <= alone * TARGET_RATIO + TARGET_SLACK


def markdown_rows(label: str, rows: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            label,
            row["case"],
            f"`probed {row['mode']}`" if row["mode"] == "check" else row["mode"],
            f"{row['alone'] * 1000:.1f}",
            f"{row['company'] * 1000:.1f}",
            f"{row['company'] / row['alone']:.2f}x",
            "yes" if within_target(row["alone"], row["company"]) else "**no**",
        ]
        for row in rows
    ]


HEADER = ["code", "case", "run", "alone ms", "in company ms", "ratio", "within 1.25x + 2 ms"]


def wall_rows(label: str, walls: Figures) -> list[list[str]]:
    return [[label, wall["case"], f"{wall['alone'] * 1000:.0f}", f"{wall['company'] * 1000:.0f}"] for wall in walls]


WALL_HEADER = ["code", "case", "`probed check` alone ms", "in company ms"]


def compare(revs: list[str | None], rounds: int) -> tuple[list[list[str]], list[list[str]]]:
    """Every revision against the same servers, in one session: the table's
    rows, and the rows of `probed check`'s wall times."""
    work = Path(tempfile.mkdtemp(prefix="probed-bench-company-"))
    table: list[list[str]] = []
    wall_table: list[list[str]] = []
    try:
        with servers(work) as options:
            for rev in revs:
                with source(rev) as code:
                    print(f"bench: company, {rev or 'working tree'} ...", file=sys.stderr, flush=True)
                    rows, walls = measure(code, work, options, rounds)
                    table += markdown_rows(rev or "this tree", rows)
                    wall_table += wall_rows(rev or "this tree", walls)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return table, wall_table


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def main() -> None:
    revs: list[str | None] = list(sys.argv[1:]) or [None]
    table, wall_table = compare(revs, ROUNDS)
    print("\n".join([*_markdown(HEADER, table), "", *_markdown(WALL_HEADER, wall_table)]))


if __name__ == "__main__":
    main()
