"""Render verdicts: health+json (IETF draft shape) for HTTP and CLI, and a table.

The draft: https://datatracker.ietf.org/doc/html/draft-inadarei-api-health-check
Each check is keyed by its name and holds a one-element array, as the draft
says; probed adds `reason`, `critical`, `duration` and `observed` to it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from probed import __version__
from probed.model import Fleet, Status
from probed.store import CheckState, Group, Store

CONTENT_TYPE = "application/health+json"


def published_status(state: CheckState) -> Status:
    """The IETF status of a check; pending shows as fail, as readiness treats it."""
    return state.effective or Status.FAIL


def check_entry(state: CheckState, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": published_status(state).value,
        "componentType": state.component_type,
        "critical": state.critical,
    }
    if state.last is not None:
        entry["time"] = _iso(state.last.started_at)
    if state.fleet is not None:
        entry["fleet"] = fleet_entry(state)
    if not details:
        return entry
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


def fleet_words(state: CheckState) -> str:
    assert state.fleet is not None
    counts = state.fleet_counts
    seen = f" ({counts[0]} of {counts[1]} answering replicas see it failing)" if counts else ""
    return {
        Fleet.NO_PEERS: "fails here; no peers are configured, so readiness does not depend on it",
        Fleet.ASKING: "fails here; asking the peers whether it fails for them too",
        Fleet.SHARED_OUTAGE: f"shared outage{seen}: readiness stays up, since removing every replica helps nobody",
        Fleet.LOCAL_FAULT: f"local fault{seen}: the other replicas reach it, this one does not",
        Fleet.ALONE: "no peer answered: "
        + ("this replica is taken as the one cut off (alone: fail)" if state.fleet_gates else "alone: pass"),
    }[state.fleet]


def health_document(store: Store, details: bool) -> dict[str, Any]:
    return {
        "status": store.status.value,
        "releaseId": __version__,
        "checks": {name: [check_entry(state, details)] for name, state in store.checks.items()},
    }


def render_health(store: Store, details: bool) -> bytes:
    return json.dumps(health_document(store, details), separators=(",", ":")).encode()


def render_check(state: CheckState, details: bool) -> bytes:
    entry = check_entry(state, details)
    return json.dumps({"status": entry["status"], "checks": {state.name: [entry]}}, separators=(",", ":")).encode()


def render_table(store: Store) -> str:
    rows = [("CHECK", "TYPE", "STATUS", "TIME", "REASON", "OUTPUT")]
    for name, state in store.checks.items():
        status = published_status(state).value + ("" if state.critical else " (non-critical)")
        took = f"{state.last.duration * 1000:.0f}ms" if state.last else "-"
        reason = state.reason.value if state.reason else "-"
        rows.append((name, state.type, status, took, reason, state.output))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5] for row in rows]
    lines.append(f"overall: {store.status.value}")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- a group, one line per check (Kubernetes /readyz?verbose style) ---------------------


def render_group_verbose(
    store: Store, group: Group, status: Status, excluded: frozenset[str], details: bool, alive: bool = True
) -> str:
    """`[+]db ok`, `[-]cache failed: refused`, then `<group> check passed|failed`."""
    lines = [] if alive else ["[-]scheduler failed: a check loop died or the watchdog stopped"]
    for name in group.members:
        state = store.checks[name]
        if name in excluded:
            lines.append(f"[+]{name} excluded: {_verbose_verdict(state, details)}")
            continue
        mark = "-" if group.weights[name] is Status.FAIL else "+"
        lines.append(f"[{mark}]{name} {_verbose_verdict(state, details)}")
    unmatched = sorted(excluded - store.checks.keys())
    if unmatched:  # a typo must not pass unnoticed, nor fail the probe (as Kubernetes does)
        lines.append(f"warn: some checks cannot be excluded: no such check {', '.join(map(repr, unmatched))}")
    outcome = "failed" if status is Status.FAIL else "passed"
    lines.append(f"{group.name} check {outcome}")
    return "\n".join(lines) + "\n"


def _verbose_verdict(state: CheckState, details: bool) -> str:
    verdict = state.effective
    if verdict is None:
        text = "pending"
    elif verdict is Status.FAIL:
        text = f"failed: {state.reason.value if state.reason else 'error'}"
        if details and state.output:
            text += f": {state.output}"
    else:
        text = "ok" if verdict is Status.PASS else "warn"
        if details and verdict is Status.WARN and state.output:
            text += f": {state.output}"
    notes = [] if state.critical else ["non-critical"]
    if state.fleet is not None:
        notes.append(fleet_words(state))
    return text + (f" ({'; '.join(notes)})" if notes else "")
