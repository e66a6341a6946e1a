"""What a pod pays (bench/podcost.py): the image built in both variants and run
as a pod runs it, beside a bare aiohttp app and blackbox_exporter."""

from __future__ import annotations

from bench.support import Bench, Section, run_json


def measure(bench: Bench) -> Section:
    """Builds the image twice (cached layers make a rerun quick); needs Podman."""
    return Section(**run_json("bench/podcost.py"))
