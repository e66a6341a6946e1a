"""What watching files costs: `probed serve`'s CPU with server.watch_files on and off.

    python bench/watch.py FILES SECONDS ROUNDS [PROBED_SOURCE_DIR]   -> one JSON line

The config has FILES heartbeat checks, each with a token_file of its own (so
probed watches FILES + 1 files, the config included), every 10 s. Each round
starts `probed serve` once with watching off and once on, lets it settle,
and reads its CPU time (all threads, /proc/PID/task/*/schedstat) over SECONDS. Also
times one poll of those files in this process (os.stat through symlinks).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from tests.support.probed import serving  # noqa: E402

SETTLE = 3.0  # seconds after start before measuring: imports and first runs are not the steady state


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of the process, in nanoseconds' precision
    (/proc/PID/task/*/schedstat), not the 10 ms ticks of /proc/PID/stat."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def write_config(directory: Path, files: int, watch: bool, port: int) -> Path:
    lines = [f"server: {{listen: '127.0.0.1:{port}', watch_files: {str(watch).lower()}}}", "checks:"]
    for index in range(files):
        token = directory / f"token-{index}"
        token.write_text(f"token-number-{index}\n")
        lines.append(f"  beat{index}: {{type: heartbeat, ttl: 1h, token_file: '{token}', interval: 10s}}")
    path = directory / f"probed-{watch}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def serve_cpu(config: Path, seconds: float, source: Path) -> float:
    """CPU seconds `probed serve` spends over `seconds` once settled."""
    with serving(config, source=source, clean_exit=False) as served:
        time.sleep(SETTLE)
        before = cpu_seconds(served.process.pid)
        time.sleep(seconds)
        return cpu_seconds(served.process.pid) - before


def poll_microseconds(paths: list[str], repeats: int = 2000) -> float:
    sys.path.insert(0, str(ROOT))
    from probed.watch import snapshot

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        snapshot(paths)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    files, seconds, rounds = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    source = Path(sys.argv[4]) if len(sys.argv) > 4 else ROOT
    directory = Path(tempfile.mkdtemp(prefix="probed-watch-"))
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for watch in (False, True):  # interleaved: the machine's drift falls on both alike
            cpu[watch].append(serve_cpu(write_config(directory, files, watch, free_port()), seconds, source))
    paths = [str(directory / "probed-True.yaml"), *(str(directory / f"token-{i}") for i in range(files))]
    per_minute = {watch: 1000 * statistics.median(values) * 60 / seconds for watch, values in cpu.items()}
    print(
        json.dumps(
            {
                "watched_files": len(paths),
                "cpu_ms_per_min_off": round(per_minute[False], 1),
                "cpu_ms_per_min_on": round(per_minute[True], 1),
                "poll_us": round(poll_microseconds(paths), 1),
            }
        )
    )


if __name__ == "__main__":
    main()
