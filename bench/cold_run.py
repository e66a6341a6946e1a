"""Time a cold `make run`: from a fresh copy of a revision (no .venv) until
/health/live answers. Prints one JSON line per run.

    python bench/cold_run.py REV [REV...]    e.g. main fast (alternated, so load affects both)

Uses pip's cache as it is (warm after any earlier install), so the figure is
the set-up work itself, not the download.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def cold_run(rev: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="probed-cold-"))
    try:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        port = free_port()
        config = work / "cold.yaml"
        config.write_text(f"server:\n  listen: 127.0.0.1:{port}\nchecks:\n  root:\n    type: disk\n    path: /\n")
        env = {**os.environ, "PROBED_CONFIG": str(config)}
        env.pop("VIRTUAL_ENV", None)
        start = time.perf_counter()
        make = subprocess.Popen(
            ["make", "run"],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            while not answers(f"http://127.0.0.1:{port}/health/live"):
                if make.poll() is not None:
                    raise RuntimeError(f"make run exited {make.returncode} in {work}")
                time.sleep(0.1)
            seconds = time.perf_counter() - start
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(30)
        site = next((work / ".venv" / "lib").glob("python*/site-packages"))
        size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file())
        distributions = len(list(site.glob("*.dist-info")))
        return {
            "rev": rev,
            "seconds": round(seconds, 1),
            "site_packages_mib": round(size / 2**20),
            "dists": distributions,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    for rev in sys.argv[1:] or ["HEAD"]:
        print(json.dumps(cold_run(rev)), flush=True)


if __name__ == "__main__":
    main()
