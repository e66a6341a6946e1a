"""What a pod pays for probed: memory, idle CPU, start-up time and image bytes,
beside Debian's blackbox_exporter where the two compare.

    python bench/podcost.py   -> one JSON line: the section (intro, header, rows, notes)

Builds the image twice (`EXTRAS=core` and the default, every extra) with Podman,
then runs probed in it as a pod does: read-only root, /tmp a tmpfs, user
65532, host network so that it reaches a local target. RSS and CPU are read
from the host's /proc for the container's process (utime + stime of every
thread). The baselines run on the host in the same run: a bare aiohttp app
(the floor of any aiohttp server) and blackbox_exporter.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import cpu_seconds, process, rss_mib, until_answer  # noqa: E402
from probed.checks import TYPES, load_type  # noqa: E402
from tests.support.net import free_port, http_get  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
TICKS = os.sysconf("SC_CLK_TCK")
BASE = "python:3.11-slim"
IMAGES = {"core": "localhost/probed:bench-core", "all": "localhost/probed:bench"}
TARGET_RSS_MIB = 45
TARGET_CORE_MB = 60
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IDLE_CHECKS, IDLE_INTERVAL = 10, 10  # the idle load: 10 checks every 10 s
WINDOW = 20.0 if QUICK else 60.0  # seconds of idle CPU measured, extrapolated to an hour
STARTS = 3 if QUICK else 5  # start-to-ready runs, median


def status_of(url: str) -> int:
    return http_get(url, 2)[0]


def until(url: str, status: int = 200, seconds: float = 60) -> float:
    """Seconds until url answers status, asked every 10 ms."""
    return until_answer(url, lambda answered, _: answered == status, seconds)


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", "--runtime", "runc", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


# -- the images ---------------------------------------------------------------------------


def build_images() -> dict[str, float]:
    """Both variants (the layers before the install are shared); MB each adds to its base."""
    subprocess.run([str(ROOT / "scripts" / "standin-base-image.sh")], check=True, timeout=900)
    mounts = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
    added = {}
    base = image_bytes(BASE)
    for extras, tag in IMAGES.items():
        podman(
            "build", "--pull=never", "--format", "docker", "--network", "host", *mounts,
            "--build-arg", f"EXTRAS={extras}", "-t", tag, str(ROOT), timeout=1800,
        )  # fmt: skip
        added[extras] = (image_bytes(tag) - base) / 1e6
    return added


def image_bytes(tag: str) -> int:
    return int(json.loads(podman("image", "inspect", tag).stdout)[0]["Size"])


@contextmanager
def container(image: str, config: dict[str, Any], work: Path) -> Iterator[tuple[int, str, float, float]]:
    """probed serving config in image as a pod runs it: (host pid, base URL, and
    seconds from `podman run` until /health/live, then /health/ready, answered 200)."""
    port = free_port()
    path = work / f"pod-{port}.yaml"
    path.write_text(yaml.safe_dump({**config, "server": {"listen": f"127.0.0.1:{port}"}}))
    base = f"http://127.0.0.1:{port}"
    with running(image, ["-v", f"{path}:/etc/probed/probed.yaml:ro"], [], f"{base}/health/live") as (pid, live):
        yield pid, base, live, live + until(f"{base}/health/ready")


# As a pod runs it; the limits because runc here cannot raise them to the host's.
POD = [
    "--network",
    "host",
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
]


@contextmanager
def running(image: str, options: list[str], args: list[str], url: str) -> Iterator[tuple[int, float]]:
    """A container of image (read-only root, /tmp a tmpfs, host network): its host
    pid and the seconds from `podman run` until url answered 200."""
    name = f"probed-bench-{free_port()}"
    start = time.perf_counter()
    podman("run", "-d", "--name", name, *POD, *options, image, *args)
    try:
        until(url)
        ready = time.perf_counter() - start
        yield int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout), ready
    finally:
        podman("rm", "-f", "--time", "5", name, check=False)


# RSS after each import `probed serve` makes, in the order it makes them: where the memory goes.
IMPORT_STEPS = """\
import sys, json
def rss(): return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
steps = [("the interpreter", rss())]
import asyncio, ssl; steps.append(("asyncio and ssl", rss()))
import aiohttp.web; steps.append(("aiohttp.web (with its client)", rss()))
import yaml; steps.append(("yaml", rss()))
from pydantic import BaseModel
class First(BaseModel): a: int = 1
steps.append(("pydantic and a first model", rss()))
import structlog; steps.append(("structlog", rss()))
import probed.config; steps.append(("probed.config (its models)", rss()))
import probed.web; steps.append(("probed's daemon, scheduler, store, reports, web", rss()))
print(json.dumps(steps))
"""


# A bare aiohttp app in the same image: what any aiohttp server holds.
BARE_AIOHTTP = """\
import sys
from aiohttp import web
async def ok(request): return web.Response(text="ok")
app = web.Application(); app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# -- host processes ---------------------------------------------------------------------------


@contextmanager
def host_process(args: list[str], ready_url: str) -> Iterator[tuple[int, float]]:
    """(pid, seconds from spawn until ready_url answered 200)."""
    with process(args) as proc:
        yield proc.pid, until(ready_url)


def blackbox(work: Path) -> tuple[list[str], str] | None:
    exporter = shutil.which("prometheus-blackbox-exporter")
    if exporter is None:
        return None
    config = work / "blackbox.yml"
    config.write_text("modules:\n  http_2xx:\n    prober: http\n    timeout: 3s\n")
    port = free_port()
    args = [exporter, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    return args, f"http://127.0.0.1:{port}"


# -- the configs ------------------------------------------------------------------------------


def default_config() -> dict[str, Any]:
    """The image's default config (config/probed.container.yaml) with its listen address set."""
    text = (ROOT / "config" / "probed.container.yaml").read_text()
    config: dict[str, Any] = yaml.safe_load(text.replace("${PROBED_LISTEN:-0.0.0.0:8080}", "127.0.0.1:8080"))
    return config


def core_type_checks(closed: int, target: str) -> dict[str, Any]:
    """One check of every type that needs no extra, its driver loaded: networked
    ones at a closed port (they fail, which costs what a failing dependency costs)."""
    at = f"127.0.0.1:{closed}"
    options: dict[str, dict[str, Any]] = {
        "disk": {"path": "/"},
        "file": {"path": "/etc/hostname"},
        "http": {"url": target},
        "postgres": {"dsn": f"postgresql://probe:secret@{at}/app"},
        "redis": {"url": f"redis://{at}/0"},
        "smtp": {"host": "127.0.0.1", "port": closed},
        "s3": {
            "bucket": "media",
            "region": "us-east-1",
            "endpoint_url": f"http://{at}",
            "access_key_id": "probe",
            "secret_access_key": "secret",
        },
        "tcp": {"host": "127.0.0.1", "port": closed},
        "tls": {"host": "127.0.0.1", "port": closed},
        "command": {"command": ["true"]},
        "heartbeat": {"ttl": "1h"},
        "memcached": {"host": "127.0.0.1", "port": closed},
        "ldap": {"url": f"ldap://{at}"},
        "websocket": {"url": f"ws://{at}/"},
        "udp": {"host": "127.0.0.1", "port": closed, "send": "hi"},
        "icmp": {"host": "127.0.0.1", "count": 1},
    }
    core = [name for name in TYPES if load_type(name, need_driver=False).extra is None]
    missing = set(core) - set(options)
    if missing:  # a new core type must join the measurement
        raise SystemExit(f"bench/podcost.py: no options for core type(s) {', '.join(sorted(missing))}")
    return {f"{name}-1": {"type": name, "critical": False, **options[name]} for name in core}


# A config must have a check: one that runs once an hour costs next to nothing.
FLOOR = {"checks": {"root": {"type": "disk", "path": "/", "interval": "1h"}}}


def http_checks(count: int, target: str, interval: float) -> dict[str, Any]:
    return {f"api-{i}": {"type": "http", "url": target, "interval": interval} for i in range(count)}


# -- measuring ---------------------------------------------------------------------------------


def idle_cpu_per_hour(pids: dict[str, int], tick: Callable[[], None]) -> dict[str, float]:
    """CPU seconds per hour of each process over one shared window, tick()
    called every IDLE_INTERVAL seconds (the load a scraper would bring)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < WINDOW:
        tick()
        time.sleep(min(IDLE_INTERVAL, max(0.0, WINDOW - (time.perf_counter() - start))))
    elapsed = time.perf_counter() - start
    return {name: (cpu_seconds(pid) - before[name]) * 3600 / elapsed for name, pid in pids.items()}


def runs_of(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("probed_check_runs")))


def measure(work: Path) -> dict[str, Any]:
    figures: dict[str, Any] = {"image_mb": build_images()}
    target_port = free_port()
    target = f"http://127.0.0.1:{target_port}/health"
    python = sys.executable
    with host_process([python, "bench/apps.py", "target", str(target_port)], target):
        figures.update(pod_figures(work, target))
        figures.update(host_figures(work, target))
    return figures


def pod_figures(work: Path, target: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for extras, image in IMAGES.items():
        lives, readies, rss = [], [], []
        for _ in range(STARTS if extras == "core" else 1):
            with container(image, default_config(), work) as (pid, _, live, ready):
                time.sleep(2)  # past both checks' first runs
                lives.append(live)
                readies.append(ready)
                rss.append(rss_mib(pid))
        figures[f"{extras}_default_rss"] = statistics.median(rss)
        figures[f"{extras}_live_s"] = statistics.median(lives)
        figures[f"{extras}_ready_s"] = statistics.median(readies)
    steps = podman("run", "--rm", *POD, "--entrypoint", "python", IMAGES["core"], "-c", IMPORT_STEPS)
    figures["import_steps"] = json.loads(steps.stdout)
    port = free_port()
    bare = ["--entrypoint", "python"], ["-c", BARE_AIOHTTP, str(port)]
    with running(IMAGES["core"], *bare, f"http://127.0.0.1:{port}/") as (pid, _):
        time.sleep(1)
        figures["aiohttp_rss"] = rss_mib(pid)
    config = {"checks": core_type_checks(free_port(), target)}
    with container(IMAGES["core"], config, work) as (pid, base, _, _):
        time.sleep(3)  # every check has run once: its driver imported, its client built
        figures["core_types_rss"] = rss_mib(pid)
        figures["core_types"] = len(config["checks"])
    with container(IMAGES["core"], {"checks": http_checks(1, target, 1)}, work) as (pid, base, _, _):
        while runs_of(base) < 20:
            time.sleep(0.2)
        figures["probed_20_rss"] = rss_mib(pid)
    return figures


def host_figures(work: Path, target: str) -> dict[str, Any]:
    """The baselines, and probed from this environment, started and measured alike."""
    figures: dict[str, Any] = {}
    python = sys.executable
    lives, readies = [], []
    for _ in range(STARTS):
        port = free_port()
        path = work / f"host-{port}.yaml"
        path.write_text(yaml.safe_dump({**default_config(), "server": {"listen": f"127.0.0.1:{port}"}}))
        serve = [str(Path(python).parent / "probed"), "serve", "--config", str(path)]
        with host_process(serve, f"http://127.0.0.1:{port}/health/live") as (_, live):
            lives.append(live)
            readies.append(live + until(f"http://127.0.0.1:{port}/health/ready"))
    figures["host_live_s"] = statistics.median(lives)
    figures["host_ready_s"] = statistics.median(readies)
    peer = blackbox(work)
    if peer is None:
        return figures
    args, base = peer
    readies = []
    for _ in range(STARTS):
        with host_process(args, f"{base}/metrics") as (pid, ready):
            readies.append(ready)
    figures["blackbox_ready_s"] = statistics.median(readies)
    probe = f"{base}/probe?module=http_2xx&target={target}"
    with host_process(args, f"{base}/metrics") as (pid, _):
        for _ in range(20):
            status_of(probe)
        figures["blackbox_20_rss"] = rss_mib(pid)
    config = {"checks": http_checks(IDLE_CHECKS, target, IDLE_INTERVAL)}
    with (
        host_process(args, f"{base}/metrics") as (exporter, _),
        container(IMAGES["core"], config, work) as (pid, _, _, _),
        container(IMAGES["core"], FLOOR, work) as (floor, _, _, _),
    ):
        time.sleep(IDLE_INTERVAL + 2)  # every check past its first, randomly offset run
        pids = {"probed": pid, "probed_floor": floor, "blackbox": exporter}
        figures.update(idle_cpu_per_hour(pids, lambda: blackbox_round(probe)))
    return figures


def blackbox_round(probe: str) -> None:
    """What Prometheus asks of blackbox_exporter for 10 targets scraped every 10 s."""
    for _ in range(IDLE_CHECKS):
        status_of(probe)


# -- the section ---------------------------------------------------------------------------------


def section(figures: dict[str, Any]) -> dict[str, Any]:
    mb, none = figures["image_mb"], "not installed"

    def peer(key: str, text: Callable[[float], str]) -> str:
        return text(figures[key]) if key in figures else f"blackbox_exporter: {none}"

    rows = [
        [
            "RSS, the image's default config (a disk check on / and a write test on /tmp)",
            f"{figures['core_default_rss']:.1f} MiB (core image); {figures['all_default_rss']:.1f} MiB (full image)",
            f"a bare aiohttp app in the same image: {figures['aiohttp_rss']:.1f} MiB",
            f"≤ {TARGET_RSS_MIB} MiB",
        ],
        [
            f"RSS, one check of each of the {figures['core_types']} core types (core image)",
            f"{figures['core_types_rss']:.1f} MiB",
            "",
            "",
        ],
        [
            "RSS after 20 HTTP probes of a local target",
            f"{figures['probed_20_rss']:.1f} MiB (one http check, core image)",
            peer("blackbox_20_rss", lambda v: f"blackbox_exporter: {v:.1f} MiB"),
            "",
        ],
        [
            f"CPU per hour, {IDLE_CHECKS} http checks every {IDLE_INTERVAL} s",
            f"{figures.get('probed', 0):.1f} s ({100 * figures.get('probed', 0) / 3600:.2f} % of a core); "
            f"one disk check an hour (what probed costs doing nothing): {figures.get('probed_floor', 0):.1f} s",
            peer(
                "blackbox",
                lambda v: f"blackbox_exporter answering {IDLE_CHECKS} probes every {IDLE_INTERVAL} s: {v:.1f} s",
            ),
            "",
        ],
        [
            "start until /health/live, then /health/ready, answers 200 (default config; ready waits for "
            "the checks' first runs, up to 1 s apart)",
            f"`probed serve`: {1000 * figures['host_live_s']:.0f} ms, {1000 * figures['host_ready_s']:.0f} ms; "
            f"`podman run`, core image: {1000 * figures['core_live_s']:.0f} ms, "
            f"{1000 * figures['core_ready_s']:.0f} ms; "
            f"full image: {1000 * figures['all_live_s']:.0f} ms, {1000 * figures['all_ready_s']:.0f} ms",
            peer("blackbox_ready_s", lambda v: f"blackbox_exporter, spawn until /metrics: {1000 * v:.0f} ms"),
            "",
        ],
        [
            "bytes the image adds to its base",
            f"{mb['core']:.0f} MB (`EXTRAS=core`); {mb['all']:.0f} MB (every extra)",
            "",
            f"≤ {TARGET_CORE_MB} MB (core)",
        ],
    ]
    verdicts = [
        f"RSS target {'met' if figures['core_default_rss'] <= TARGET_RSS_MIB else 'missed'}: "
        f"{figures['core_default_rss']:.1f} MiB against at most {TARGET_RSS_MIB} MiB.",
        f"Core image target {'met' if mb['core'] <= TARGET_CORE_MB else 'missed'}: "
        f"{mb['core']:.0f} MB against at most {TARGET_CORE_MB} MB.",
    ]
    return {
        "intro": (
            "`bench/podcost.py`: the image built with Podman in both variants and run as a pod runs it (read-only "
            "root, /tmp a tmpfs, user 65532), RSS and CPU (utime + stime of every thread) read from the host's /proc "
            f"for the container's process; start-to-ready a median of {STARTS} starts. Baselines in the same run: "
            "a bare aiohttp app in the same image, and Debian's blackbox_exporter on the host. Idle CPU over "
            f"{WINDOW:.0f} s, extrapolated to an hour."
        ),
        "header": ["figure", "probed", "baseline, same run", "target"],
        "rows": rows,
        "notes": [*verdicts, where_memory_goes(figures["import_steps"])],
    }


def where_memory_goes(steps: list[tuple[str, float]]) -> str:
    parts, before = [], 0.0
    for label, rss in steps:
        parts.append(f"{label} +{rss - before:.1f}")
        before = rss
    return (
        "Where the memory goes (core image, RSS after each import `probed serve` makes, MiB): "
        + ", ".join(parts)
        + f"; {steps[-1][1]:.1f} MiB in all before the first check or request."
    )


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="probed-podcost-"))
    try:
        print(json.dumps(section(measure(work))))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
