"""`/health` in every format the HTTP API serves, against bare aiohttp bodies of the same size."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import urllib.request

from bench.support import PYTHON, QUICK, Bench, Section, disk_checks, fmt, process, write_config, wrk
from tests.support.net import free_port
from tests.support.probed import serving


def measure(bench: Bench) -> Section:
    """/health in every format the HTTP API serves, chosen by Accept as clients choose them."""
    from probed.report import SERVED
    from probed.store import HISTORY_LENGTH

    seconds, rounds = (3, 3) if QUICK else (4, 5)
    section = Section(
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
        bench.work,
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
