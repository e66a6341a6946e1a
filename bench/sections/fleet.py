"""Fleet-safe readiness: start to decided readiness, peer traffic in an outage (bench/fleet.py)."""

from __future__ import annotations

from bench.support import Bench, Section, run_json


def measure(bench: Bench) -> Section:
    target = bench.target
    section = Section(
        "Real `probed serve` processes (`bench/fleet.py`). Start: hourly checks (an http check on a live target "
        "and a disk check, timeout 2 s), time from spawning the process until `/health/ready` first answers 200 "
        "(polled every 10 ms). Peers: N replicas on 127.0.0.2.. share an http dependency (`scope: shared`, "
        "interval 2 s); dnsmasq resolves the peer name; the dependency's /health turns 500, and every "
        "replica's `probed_peer_requests_total` is read over 5 intervals of the outage.",
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
    for count in (3, 20):
        peers = run_json("bench/fleet.py", "peers", str(count))
        section.rows.append(
            [
                f"{count} replicas: peer requests per replica per interval, during the outage",
                f"{peers['requests_per_replica_per_interval']:g}",
                f"{peers['bound']} (one per other replica per failing shared check), plus one to itself at first",
            ]
        )
        section.rows.append(
            [
                f"{count} replicas: dependency down -> every replica says shared outage",
                f"{peers['all_shared_outage_after_s']:.2f} s",
                "one interval to see it fail + one for the peers' runs to count",
            ]
        )
        section.rows.append(
            [
                f"{count} replicas: unready during the outage / peer requests while healthy",
                f"{peers['unready_during_outage']} / {peers['requests_while_healthy']:g}",
                "0 / 0",
            ]
        )
    return section
