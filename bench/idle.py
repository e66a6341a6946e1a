"""Probes while hundreds of clients hold half-sent requests.

    python bench/idle.py CLIENTS NOFILE [PROBED_SOURCE_DIR]   -> one JSON line

Starts `probed serve` (one disk check) with RLIMIT_NOFILE set to NOFILE, opens
CLIENTS connections that each send half a request and wait, then asks
/health/live 200 times. Reports the probes' latency before and during the
flood, how many probes failed, and how many of the idle clients probed closed
to make room.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port  # noqa: E402
from tests.support.probed import serving  # noqa: E402

PARTIAL = b"GET /health HTTP/1.1\r\nHost: probed\r\n"


def probe(url: str) -> float | None:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            response.read()
    except OSError:
        return None
    return time.perf_counter() - start


def probes(url: str, count: int = 200) -> list[float | None]:
    answers = []
    for _ in range(count):
        answers.append(probe(url))
        time.sleep(0.01)
    return answers


def summary(answers: list[float | None]) -> dict[str, float]:
    ok = sorted(a for a in answers if a is not None)
    return {
        "p50_ms": round(1000 * statistics.median(ok), 2) if ok else 0.0,
        "p99_ms": round(1000 * ok[int(len(ok) * 0.99) - 1], 2) if ok else 0.0,
        "failed": len(answers) - len(ok),
    }


def main() -> None:
    clients, nofile = int(sys.argv[1]), int(sys.argv[2])
    source = sys.argv[3] if len(sys.argv) > 3 else str(ROOT)  # another checkout, for a before/after
    port = free_port()
    directory = tempfile.mkdtemp(prefix="probed-idle-")
    path = Path(directory) / "probed.yaml"
    path.write_text(f"server: {{listen: '127.0.0.1:{port}'}}\nchecks:\n  tmp: {{type: disk, path: '{directory}'}}\n")
    url = f"http://127.0.0.1:{port}/health/live"
    socks: list[socket.socket] = []
    with serving(path, nofile=nofile, source=Path(source), clean_exit=False):
        quiet = probes(url)
        unanswered = 0
        for _ in range(clients):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:  # the listener stopped accepting: out of file descriptors
                unanswered += 1
                if unanswered == 10:
                    break
                continue
            sock.sendall(PARTIAL)
            socks.append(sock)
        flooded = probes(url)
        closed = 0
        for sock in socks:
            sock.settimeout(0.001)
            try:
                closed += sock.recv(1) == b""
            except (TimeoutError, BlockingIOError):
                pass
            except ConnectionResetError:
                closed += 1
        for sock in socks:
            sock.close()
    print(
        json.dumps(
            {
                "clients": clients,
                "nofile": nofile,
                "quiet": summary(quiet),
                "flooded": summary(flooded),
                "closed": closed,
                "connected": len(socks),
            }
        )
    )


if __name__ == "__main__":
    main()
