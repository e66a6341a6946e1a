"""The table of output formats, shared by `probed check --output` and HTTP content
negotiation, and the vocabulary every format speaks.

A format is one entry in FORMATS: a name (the CLI's `--output`), a media type
(matched against `Accept`) and the module that renders it, imported the first
time the format is used. A format's module defines `render(report) -> bytes`,
and `HEADERS` if its responses need headers of their own. Adding a format is
its module and one entry here; the CLI and the web app never branch per format.

The vocabulary: how a check's state shows (`published_status`, `state_name`),
how a case of fleet readiness and an operator's exclusion read (`fleet_words`,
`exclusion_words`) and how a moment is written
(`iso_time`). Durations read as probed.fields.format_duration spells them.
This module imports no renderer and nothing beyond the model and the
groups' table, so the CLI's
parser can read the format names from it.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from probed.groups import OVERALL
from probed.model import Fleet, Status

if TYPE_CHECKING:
    from probed.exclusions import Exclusion
    from probed.store import CheckState, Store

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
    note: str | None = None  # a reason for the status that is none of the checks (probed is shutting down)
    exclusions: tuple[Exclusion, ...] = ()  # the operators' live exclusions, by group then check

    @property
    def excluded(self) -> tuple[Exclusion, ...]:
        """What every format may show of the exclusions: their reasons and who asked only with details."""
        return tuple(item.shown(self.details) for item in self.exclusions)

    @classmethod
    def of_store(cls, store: Store, details: bool) -> Report:
        groups = tuple((name, store.group_status(name).status, len(g.members)) for name, g in store.groups.items())
        answer = store.group_status(OVERALL)
        exclusions = tuple(store.exclusions.all())
        checks = tuple(store.checks.values())
        return cls(answer.status, checks, details, groups=groups, note=answer.note, exclusions=exclusions)

    @classmethod
    def of_check(cls, state: CheckState, details: bool) -> Report:
        return cls(published_status(state.effective), (state,), details)


Renderer = Callable[[Report], bytes]


@dataclass(frozen=True)
class Format:
    name: str  # `probed check --output NAME`
    content_type: str
    media_types: tuple[str, ...]  # what an Accept header names to get this format
    module: str  # the renderer's module, imported on first use
    served: bool = True  # offered by HTTP content negotiation
    # None: a cached body is good until the store changes. A number: the body is
    # rendered again every so many seconds instead, changes or not: for a page that
    # shows ages (which must not freeze) and costs too much to render per change.
    fresh_for: float | None = None

    @functools.cached_property
    def render(self) -> Renderer:
        return cast(Renderer, importlib.import_module(self.module).render)

    @functools.cached_property
    def headers(self) -> Mapping[str, str]:
        """Extra response headers the format's module asks for."""
        return cast(Mapping[str, str], getattr(importlib.import_module(self.module), "HEADERS", {}))


# -- the vocabulary -------------------------------------------------------------------------

PENDING = "pending"  # a check without a verdict yet (not run, or held since a reload)
STATES = ("pass", "warn", "fail", PENDING)  # every state a check shows, in this order


def published_status(verdict: Status | None) -> Status:
    """The IETF status of a check's verdict; pending shows as fail, as readiness treats it."""
    return verdict or Status.FAIL


def state_name(verdict: Status | None) -> str:
    """The verdict for people (the page, metrics, logs, verbose text): pending shows as itself."""
    return verdict.value if verdict is not None else PENDING


def fleet_words(state: CheckState) -> str:
    """A failing shared check: which case of fleet readiness holds, in words."""
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


def exclusion_words(item: Exclusion) -> str:
    """`until 2026-12-03T16:00:00Z (by alice: failover drill)`; a blank reason: no details."""
    why = ": ".join(part for part in (f"by {item.by}" if item.by else "", item.reason) if part)
    return f"until {iso_time(item.expires_at, 'seconds')}" + (f" ({why})" if why else "")


def iso_time(timestamp: float, timespec: str = "milliseconds", zone: str = "Z") -> str:
    """A moment in UTC, ISO 8601: `2026-12-03T14:12:01.123Z`; JUnit's schema wants no zone."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec=timespec)[: -len("+00:00")] + zone


# -- the table ------------------------------------------------------------------------------

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("json", CONTENT_TYPE, (CONTENT_TYPE, "application/json"), "probed.report.health"),
        Format("table", "text/plain; charset=utf-8", ("text/plain",), "probed.report.text"),
        # Rendered once a second: the page shows ages, and with thousands of runs in its
        # strips, rendering it per change of state (up to hundreds a second) would cost
        # the event loop more than the page is worth. Browsers refresh it every 2 s or more.
        Format("html", "text/html; charset=utf-8", ("text/html",), "probed.report.page", fresh_for=1),
        # JUnit is for CI jobs running `probed check`; a daemon has no test run to report.
        Format("junit", "application/xml", ("application/xml",), "probed.report.junit", served=False),
    )
}
DEFAULT = FORMATS["json"]
VERBOSE = FORMATS["table"]  # `?verbose`, as Kubernetes' /readyz?verbose answers in text
SERVED = tuple(f for f in FORMATS.values() if f.served)
