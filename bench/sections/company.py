"""A check's duration alone and in company (bench/company.py, issue 16)."""

from __future__ import annotations

from bench.support import Bench, Section


def measure(bench: Bench) -> Section:
    """A check's duration alone and beside others (bench/company.py, issue 16)."""
    from bench.company import HEADER, ROUNDS, compare

    return Section(
        "`bench/company.py`: one check run alone and beside others against real local servers (redis beside "
        "s3 and postgres; tcp beside tls, grpc and dns; redis beside tls and postgres that hang), at a 1 s "
        "interval: in `probed check` (its one run, the check last in the config), and in `probed serve` "
        f"(its first run, and the median of the five after it); medians of {ROUNDS} rounds, alone and in "
        "company alternated. Target: in company within 1.25x (+2 ms) of alone. "
        "`python bench/company.py main HEAD` compares two revisions in one session.",
        header=HEADER,
        rows=compare([None], ROUNDS)[0],
    )
