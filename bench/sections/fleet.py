"""Fleet-safe readiness: start to decided readiness, peer traffic in an outage (bench/fleet.py)."""

from __future__ import annotations

from typing import Any

from bench.support import Bench, Section, run_json

SAMPLE = 10  # peers.sample's default; the "before" runs ask every peer (sample = replicas)


def measure(bench: Bench) -> Section:
    target = bench.target
    section = Section(
        "Real `probed serve` processes (`bench/fleet.py`). Start: hourly checks (an http check on a live target "
        "and a disk check, timeout 2 s), time from spawning the process until `/health/ready` first answers 200 "
        "(polled every 10 ms). Peers: N replicas on 127.0.0.2.. share an http dependency (`scope: shared`, "
        "interval 2 s); dnsmasq resolves the peer name; the dependency's /health turns 500, and every "
        "replica's `probed_peer_requests_total` is read over 5 intervals of the outage; then one replica's own "
        "path to the dependency (a TCP proxy) is cut. Each size runs twice in the same run: asking every peer "
        "(`peers.sample` = replicas, the behaviour before the sample) and with the default sample of 10.",
        header=["measure", "result", "design bound"],
    )
    decided = run_json("bench/fleet.py", "decide", target)
    section.rows.append(
        [
            "start -> listening (median)",
            f"{decided['listening_median_s']:.2f} s",
            "-",
        ]
    )
    section.rows.append(
        [
            f"start -> decided `/health/ready` (median / max of {decided['repeats']})",
            f"{decided['decided_median_s']:.2f} s / {decided['decided_max_s']:.2f} s",
            "listening + 1 s jitter + one run (timeout 2 s); with the old random first offset: up to the "
            "interval (1 h)",
        ]
    )
    section.rows.append(
        ["listening -> decided (median)", f"{decided['after_listening_median_s']:.2f} s", "1 s jitter + one run"]
    )
    for count in (3, 10, 50):
        before, after = (run_json("bench/fleet.py", "peers", str(count), str(sample)) for sample in (count, SAMPLE))
        _fleet_rows(section, count, before, after)
    return section


def _fleet_rows(section: Section, count: int, before: dict[str, Any], after: dict[str, Any]) -> None:
    """One row per measure: asking every peer (before) / a sample of SAMPLE (after)."""
    both = (before, after)
    sample = f"ask all / sample {SAMPLE}"
    section.rows += [
        [
            f"{count} replicas, shared outage: peer requests per replica per interval ({sample})",
            " / ".join(f"{r['requests_per_replica_per_interval']:g}" for r in both),
            f"{before['bound']} / {after['bound']} (one per peer asked per failing shared check, "
            "plus one to itself at first)",
        ],
        [
            f"{count} replicas: dependency down -> every replica says shared outage ({sample})",
            " / ".join(_seconds(r["all_shared_outage_after_s"]) for r in both),
            "one interval to see it fail + one for the peers' runs to count",
        ],
        [
            f"{count} replicas: unready during the outage / peer requests while healthy ({sample})",
            " / ".join(f"{r['unready_during_outage']}, {r['requests_while_healthy']:g}" for r in both),
            "0, 0",
        ],
        [
            f"{count} replicas: one replica cut off -> its `/health/ready` 503 ({sample})",
            " / ".join(_seconds(r["local_fault_after_s"]) for r in both),
            f"2 x interval + timeout + peers.timeout = {after['local_fault_bound_s']:g} s",
        ],
        [
            f"{count} replicas, local fault: its peer requests per interval / others still ready ({sample})",
            " / ".join(
                f"{r['local_fault_requests_per_interval']:g}, {r['others_ready_during_local_fault']}" for r in both
            ),
            f"{before['bound']}, {count - 1} / {after['bound']}, {count - 1}",
        ],
    ]


def _seconds(value: float | None) -> str:
    return "not within 60 s" if value is None else f"{value:.2f} s"
