"""How long `probed serve` takes from SIGTERM to its exit, with one disk check
and with every type configured (tests/every_type.py; each networked type
against a port that hangs and one that closes at once, so hung runs are in
flight when the signal comes). Issue 16: within a second, exit 0.

    python bench/shutdown.py [REV ...]    e.g. main HEAD (default: the working tree)

A REV is a git revision whose probed (`git archive`, as in bench/company.py)
runs on this venv's drivers, rounds alternated with the others.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent.parent
ROUNDS = 5
RUNNING = 2.0  # seconds of runs before the signal
HEADER = ["config", "checks", "SIGTERM to exit, median (ms)", "slowest (ms)", "exit codes"]


def stop_time(checks: dict[str, dict[str, Any]], work: Path, code_dir: Path = ROOT) -> tuple[float, int]:
    """One `probed serve` (of the code in code_dir): seconds from SIGTERM to exit, and its exit code."""
    from tests.support.net import free_port
    from tests.support.probed import serving

    config = work / "probed.yaml"
    config.write_text(yaml.safe_dump({"server": {"listen": f"127.0.0.1:{free_port()}"}, "checks": checks}))
    with serving(config, source=None if code_dir == ROOT else code_dir, clean_exit=False) as served:
        time.sleep(RUNNING)
        signalled = time.monotonic()
        code = served.stop(timeout=30)
        return time.monotonic() - signalled, code


def rows(revs: list[str | None] | None = None) -> list[list[str]]:
    """A row per config (and per REV, when given)."""
    sys.path.insert(0, str(ROOT))
    from bench.company import source
    from tests.support.every_type import AT_PORT, DATAGRAM, LOCAL
    from tests.support.faults import answering_listener, silent_listener
    from tests.support.net import udp_closed_port

    with contextlib.ExitStack() as stack:
        hangs, closes = stack.enter_context(silent_listener()), stack.enter_context(answering_listener(b""))
        every = {f"{name}-hangs": options(hangs) for name, options in AT_PORT.items()}
        every |= {f"{name}-closes": options(closes) for name, options in AT_PORT.items()}
        every |= {name: options(udp_closed_port()) for name, options in DATAGRAM.items()}
        every |= {name: options() for name, options in LOCAL.items()}
        configs = {
            "one disk check (baseline)": {"root": LOCAL["disk"]()},
            "every type, hang and close at once": every,
        }
        configs = {
            label: {name: {**check, "interval": "3s", "timeout": "2s"} for name, check in checks.items()}
            for label, checks in configs.items()
        }
        sources = {rev: stack.enter_context(source(rev)) for rev in revs or [None]}
        runs = [(label, rev) for rev in sources for label in configs]
        times: dict[tuple[str, str | None], list[float]] = {run: [] for run in runs}
        codes: dict[tuple[str, str | None], set[int]] = {run: set() for run in runs}
        work = Path(tempfile.mkdtemp(prefix="probed-bench-shutdown-"))
        for _ in range(ROUNDS):  # alternated, so load from elsewhere weighs on all alike
            for label, rev in runs:
                seconds, code = stop_time(configs[label], work, sources[rev])
                times[label, rev].append(seconds)
                codes[label, rev].add(code)
    return [
        [
            label if rev is None else f"{label} ({rev})",
            str(len(configs[label])),
            f"{statistics.median(times[label, rev]) * 1000:.0f}",
            f"{max(times[label, rev]) * 1000:.0f}",
            ", ".join(map(str, sorted(codes[label, rev]))),
        ]
        for label, rev in runs
    ]


if __name__ == "__main__":
    print(" | ".join(HEADER))
    for row in rows([*sys.argv[1:]] or None):
        print(" | ".join(row))
