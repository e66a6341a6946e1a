"""health+json, and the history of a check's runs in JSON.

It follows the IETF draft
https://datatracker.ietf.org/doc/html/draft-inadarei-api-health-check: each
check is keyed by its name and holds a one-element array; probed adds
`reason`, `critical`, `duration` and `observed` to it.
"""

from __future__ import annotations

import json
from typing import Any

from probed import __version__
from probed.exclusions import Exclusion
from probed.model import FleetPeers, Status
from probed.report import Report, fleet_words, iso_time, published_status
from probed.store import CheckState, Run


def render(report: Report) -> bytes:
    return json.dumps(health_document(report), separators=(",", ":")).encode()


def health_document(report: Report) -> dict[str, Any]:
    document: dict[str, Any] = {"status": report.status.value, "releaseId": __version__}
    if report.note:  # the draft's `output`: why it fails when no check says (probed is shutting down)
        document["output"] = report.note
    document["checks"] = {state.name: [check_entry(state, report.details)] for state in report.checks}
    if report.exclusions:  # the operators': the checks above still show as they are
        document["exclusions"] = [exclusion_entry(item) for item in report.excluded]
    return document


def exclusion_entry(item: Exclusion) -> dict[str, Any]:
    """An operator's exclusion, as the exclusions API and /health show it (a blank reason: no details)."""
    entry: dict[str, Any] = {"group": item.group, "check": item.check}
    if item.reason:
        entry["reason"] = item.reason
    if item.by is not None:
        entry["by"] = item.by
    entry["created"] = iso_time(item.created_at)
    entry["expires"] = iso_time(item.expires_at)
    return entry


def check_entry(state: CheckState, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": published_status(state.effective).value,
        "componentType": state.component_type,
        "critical": state.critical,
    }
    if state.last is not None:
        entry["time"] = iso_time(state.last.started_at)
    if state.fleet is not None:
        entry["fleet"] = fleet_entry(state)
    if not details:
        return entry
    if state.fleet_peers is not None:  # peer addresses are details: the topology of the fleet
        entry["fleet"]["peers"] = fleet_peers_entry(state.fleet_peers)
    last = state.last
    if last is not None and last.observed:
        name, primary = next(iter(last.observed.items()))
        entry["observedValue"] = primary.value
        entry["observedUnit"] = primary.unit or name
    if state.reason is not None:
        entry["reason"] = state.reason.value
    if entry["status"] != Status.PASS.value or (last is not None and last.status is not Status.PASS):
        entry["output"] = state.output
    if last is not None:
        entry["duration"] = round(last.duration, 6)
        entry["observed"] = {key: {"value": o.value, "unit": o.unit} for key, o in last.observed.items()}
    return entry


def fleet_entry(state: CheckState) -> dict[str, Any]:
    """A failing shared check: which case holds, in words and in fields."""
    assert state.fleet is not None
    entry: dict[str, Any] = {
        "case": state.fleet.value,
        "gatesReadiness": not state.readiness_ignores_failure,
        "says": fleet_words(state),
    }
    if state.fleet_counts is not None:
        entry["failing"], entry["answering"] = state.fleet_counts
    return entry


def fleet_peers_entry(peers: FleetPeers) -> dict[str, list[str]]:
    """Whom the verdict heard: `answered` is `counted` plus `notYet`."""
    return {
        "answered": list(peers.answered),
        "counted": list(peers.counted),
        "notYet": list(peers.not_yet),
        "unreachable": list(peers.unreachable),
    }


def history_document(state: CheckState, details: bool) -> dict[str, Any]:
    """A check's recent runs, oldest first; without details only when and how each ended."""
    return {
        "check": state.name,
        "status": published_status(state.effective).value,
        "runs": [_run_entry(run, details) for run in state.history],
    }


def _run_entry(run: Run, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": run.status.value, "time": iso_time(run.started_at)}
    if details:
        entry["duration"] = round(run.duration, 6)
        if run.reason is not None:
            entry["reason"] = run.reason.value
    return entry
