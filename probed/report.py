"""The table of output formats, shared by `probed check --output` and HTTP content negotiation.

A format is one entry in FORMATS: a name (the CLI's `--output`), a media type
(matched against `Accept`) and a renderer taking a Report. Adding a format is
one entry and one renderer; the CLI and the web app never branch per format.

health+json follows the IETF draft
https://datatracker.ietf.org/doc/html/draft-inadarei-api-health-check: each
check is keyed by its name and holds a one-element array; probed adds
`reason`, `critical`, `duration` and `observed` to it.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from probed import __version__, page
from probed.model import Fleet, Status
from probed.store import CheckState, Group, Run, Store

CONTENT_TYPE = "application/health+json"


@dataclass(frozen=True)
class Report:
    """What every format renders: a verdict over some checks, with or without details
    (outputs, reasons, observed values, durations)."""

    status: Status
    checks: tuple[CheckState, ...]
    details: bool
    rendered_at: float = field(default_factory=time.time)  # wall clock, for the ages the page shows
    groups: tuple[tuple[str, Status, int], ...] = ()  # name, status, how many checks: what the page shows

    @classmethod
    def of_store(cls, store: Store, details: bool) -> Report:
        groups = tuple((name, group.status, len(group.members)) for name, group in store.groups.items())
        return cls(store.status, tuple(store.checks.values()), details, groups=groups)

    @classmethod
    def of_check(cls, state: CheckState, details: bool) -> Report:
        return cls(published_status(state), (state,), details)


Renderer = Callable[[Report], bytes]


@dataclass(frozen=True)
class Format:
    name: str  # `probed check --output NAME`
    content_type: str
    media_types: tuple[str, ...]  # what an Accept header names to get this format
    render: Renderer
    served: bool = True  # offered by HTTP content negotiation
    headers: Mapping[str, str] = field(default_factory=dict)  # extra response headers
    # None: a cached body is good until the store changes. A number: the body is
    # rendered again every so many seconds instead, changes or not: for a page that
    # shows ages (which must not freeze) and costs too much to render per change.
    fresh_for: float | None = None


def published_status(state: CheckState) -> Status:
    """The IETF status of a check; pending shows as fail, as readiness treats it."""
    return state.effective or Status.FAIL


# -- health+json ----------------------------------------------------------------------------


def check_entry(state: CheckState, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": published_status(state).value,
        "componentType": state.component_type,
        "critical": state.critical,
    }
    if state.last is not None:
        entry["time"] = iso_time(state.last.started_at)
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


def health_document(report: Report) -> dict[str, Any]:
    return {
        "status": report.status.value,
        "releaseId": __version__,
        "checks": {state.name: [check_entry(state, report.details)] for state in report.checks},
    }


def render_json(report: Report) -> bytes:
    return json.dumps(health_document(report), separators=(",", ":")).encode()


def history_document(state: CheckState, details: bool) -> dict[str, Any]:
    """A check's recent runs, oldest first; without details only when and how each ended."""
    return {
        "check": state.name,
        "status": published_status(state).value,
        "runs": [_run_entry(run, details) for run in state.history],
    }


def _run_entry(run: Run, details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": run.status.value, "time": iso_time(run.started_at)}
    if details:
        entry["duration"] = round(run.duration, 6)
        if run.reason is not None:
            entry["reason"] = run.reason.value
    return entry


# -- plain text -----------------------------------------------------------------------------


def render_text(report: Report) -> bytes:
    """A table for terminals and `?verbose`; reasons, outputs and times only with details."""
    header = ("CHECK", "TYPE", "STATUS", "TIME", "REASON", "OUTPUT") if report.details else ("CHECK", "TYPE", "STATUS")
    rows = [header, *(_text_row(state, report.details) for state in report.checks)]
    # The last column (output) is not padded: it can be long.
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows]
    lines.append(f"overall: {report.status.value}")
    return ("\n".join(line.rstrip() for line in lines) + "\n").encode()


def _text_row(state: CheckState, details: bool) -> tuple[str, ...]:
    status = published_status(state).value + ("" if state.critical else " (non-critical)")
    if not details:
        return (state.name, state.type, status)
    took = f"{state.last.duration * 1000:.0f}ms" if state.last else "-"
    reason = state.reason.value if state.reason else "-"
    return (state.name, state.type, status, took, reason, state.output)


# -- JUnit XML ------------------------------------------------------------------------------


def render_junit(report: Report) -> bytes:
    """One testcase per check, as Jenkins, GitLab and GitHub Actions read JUnit reports
    (the Ant format; tests/junit.xsd). A failed check is a <failure> with its reason
    and output, non-critical ones included (`probed check` still exits 0 for those);
    a warning passes with its output in <system-out>."""
    cases = [_testcase(state, report.details) for state in report.checks]
    failures = sum(1 for case in cases if case.find("failure") is not None)
    took = f"{sum(state.last.duration for state in report.checks if state.last):.6f}"
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0", "time": took}
    suites = ET.Element("testsuites", {"name": "probed", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": "probed",
            **counts,
            "skipped": "0",
            "timestamp": datetime.fromtimestamp(report.rendered_at, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            "hostname": socket.gethostname(),
        },
    )
    suite.extend(cases)
    ET.indent(suites)
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def _testcase(state: CheckState, details: bool) -> ET.Element:
    took = f"{state.last.duration:.6f}" if state.last else "0"
    case = ET.Element("testcase", name=state.name, classname=f"probed.{state.type}", time=took)
    status = published_status(state)
    if status is Status.FAIL:
        reason = state.reason.value if state.reason else "fail"
        output = xml_text(state.output) if details else ""
        label = reason if state.critical else f"{reason} (non-critical)"
        message = f"{label}: {output}" if output else label
        ET.SubElement(case, "failure", message=message, type=reason).text = output
    elif status is Status.WARN and details:
        ET.SubElement(case, "system-out").text = xml_text(f"warn: {state.output}")
    return case


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Characters XML 1.0 cannot carry even escaped (NUL, most control characters) replaced."""
    return _NOT_XML.sub("\ufffd", text)


def iso_time(timestamp: float) -> str:
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


# -- the table ------------------------------------------------------------------------------

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("json", CONTENT_TYPE, (CONTENT_TYPE, "application/json"), render_json),
        Format("table", "text/plain; charset=utf-8", ("text/plain",), render_text),
        # Rendered once a second: the page shows ages, and with thousands of runs in its
        # strips, rendering it per change of state (up to hundreds a second) would cost
        # the event loop more than the page is worth. Browsers refresh it every 2 s or more.
        Format("html", "text/html; charset=utf-8", ("text/html",), page.render_page, headers=page.HEADERS, fresh_for=1),
        # JUnit is for CI jobs running `probed check`; a daemon has no test run to report.
        Format("junit", "application/xml", ("application/xml",), render_junit, served=False),
    )
}
DEFAULT = FORMATS["json"]
VERBOSE = FORMATS["table"]  # `?verbose`, as Kubernetes' /readyz?verbose answers in text
SERVED = tuple(f for f in FORMATS.values() if f.served)


# -- content negotiation ---------------------------------------------------------------------


@functools.lru_cache(maxsize=256)  # clients send a handful of distinct Accept headers, again and again
def negotiate(accept: str | None, verbose: bool = False) -> Format:
    """The served format the Accept header prefers (RFC 9110 §12.5.1).

    Ties go to the more specific media range, then to the table's order, so
    `*/*` and a missing header get health+json. An Accept header that is
    garbage or names nothing probed serves also gets health+json, not a 406:
    probes read the status code, and one with an odd Accept must still work.
    """
    if verbose:
        return VERBOSE
    ranges = _media_ranges(accept or "")
    best, best_key = DEFAULT, (0.0, -1)
    for candidate in SERVED:
        key = max((_preference(media_type, ranges) for media_type in candidate.media_types), default=(0.0, -1))
        if key > best_key:
            best, best_key = candidate, key
    return best


MediaRange = tuple[str, str, float]  # type, subtype, q


def _media_ranges(accept: str) -> list[MediaRange]:
    ranges = []
    for item in accept.split(","):
        media, *params = item.strip().lower().split(";")
        kind, slash, subtype = media.strip().partition("/")
        if not slash or not kind or not subtype:
            continue  # not a media range: skip it
        quality = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((kind, subtype.strip(), quality))
    return ranges


def _preference(media_type: str, ranges: list[MediaRange]) -> tuple[float, int]:
    """(q, specificity) of the most specific range matching `media_type`; (0, -1) if none does."""
    kind, _, subtype = media_type.partition("/")
    best: tuple[int, float] | None = None
    for range_kind, range_subtype, quality in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    if best is None or best[1] == 0.0:
        return (0.0, -1)
    return (best[1], best[0])
