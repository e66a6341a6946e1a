"""heartbeat: a push check. A job (a cron job, a batch worker) says "I ran"
with `POST /heartbeat/{name}`; the check fails when no heartbeat arrived
within `ttl`, or when the last one said the job failed.

The daemon owns one `Heartbeats` book: the web handler writes a beat into it
and the check reads it on its next run, neither awaiting anything. The book
outlives config reloads, so a reload loses no heartbeat. It does not outlive
probed: after a start (or the reload that adds the check) the ttl counts
from then, which gives the job one ttl of grace.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from probed.checks.base import AnyCheck, Check, CheckOptions, Gauge
from probed.fields import Duration, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

MAX_REPORT_BYTES = 64 * 1024  # a heartbeat's body; larger ones are refused with 413
MAX_REPORT_OUTPUT = 1000  # characters of the job's output kept (the verdict shows 500)
_REPORT_KEYS = {"status", "output"}


class HeartbeatOptions(CheckOptions):
    """The bearer token is the check's own `token`, else the server-wide
    `server.heartbeat_token` (the config loader fills it in)."""

    type: Literal["heartbeat"]
    optional_levels = frozenset({"age"})  # no heartbeat yet: no age to judge
    ttl: Duration = Field(description="fail when the last heartbeat is older than this (the job's period plus slack)")
    token: SecretStr | None = Field(
        None, description="bearer token the job must send (default: server.heartbeat_token; never shown)"
    )
    token_file: Path | None = Field(None, description="file holding the token (a mounted secret)")


@dataclass(frozen=True)
class Beat:
    received: float  # time.monotonic()
    status: Status  # what the job said: pass, warn or fail
    output: str


class Heartbeats:
    """The last heartbeat of every heartbeat check, by name."""

    def __init__(self) -> None:
        self._last: dict[str, Beat] = {}
        self.checks: dict[str, HeartbeatCheck] = {}

    def serve(self, checks: Iterable[AnyCheck]) -> None:
        """Take the heartbeats of the heartbeat checks among `checks` (the
        daemon's, after a start or a reload); forget those of checks gone."""
        self.checks = {check.name: check for check in checks if isinstance(check, HeartbeatCheck)}
        for check in self.checks.values():
            check.book = self
        self._last = {name: beat for name, beat in self._last.items() if name in self.checks}

    def record(self, name: str, beat: Beat) -> None:
        self._last[name] = beat

    def last(self, name: str) -> Beat | None:
        return self._last.get(name)


class HeartbeatCheck(Check[HeartbeatOptions]):
    options_model = HeartbeatOptions
    component_type = "component"
    gauges = (Gauge("age", "probed_heartbeat_age_seconds", "Seconds since the last heartbeat arrived."),)

    def __init__(self, name: str, options: HeartbeatOptions) -> None:
        super().__init__(name, options)
        self.target = f"/heartbeat/{name}"
        # A book of its own until the daemon hands over the one its web server
        # writes (`probed check` receives no heartbeats).
        self.book = Heartbeats()
        self.since = time.monotonic()  # the ttl of the first heartbeat counts from here

    async def run(self) -> Outcome:
        if self.options.token is None:  # every heartbeat is refused: say so now, not after a ttl
            raise CheckFailed(
                f"{self.target}: no token to accept heartbeats with (set token or server.heartbeat_token)"
            )
        now = time.monotonic()
        ttl = self.options.ttl
        beat = self.book.last(self.name)
        if beat is None:
            waited = now - self.since
            if waited > ttl:
                message = f"{self.target}: no heartbeat in the {span(waited)} since the check started (ttl {span(ttl)})"
                raise CheckFailed(message, Reason.UNEXPECTED)
            return Outcome(Status.PASS, f"{self.target}: no heartbeat yet, {span(ttl - waited)} of the first ttl left")
        age = now - beat.received
        observed: Observed = {"age": Observation(round(age, 3), "s")}
        said = f": {beat.output}" if beat.output else ""
        if age > ttl:
            last = f"; the last one said {beat.status.value}{said}"
            message = f"{self.target}: no heartbeat for {span(age)}, over the ttl of {span(ttl)}{last}"
            raise CheckFailed(message, Reason.UNEXPECTED, observed)
        if beat.status is Status.FAIL:
            raise CheckFailed(f"{self.target}: the job reported failure {span(age)} ago{said}", Reason.ERROR, observed)
        return Outcome(beat.status, f"{self.target}: last heartbeat {span(age)} ago{said}", observed)


def parse_report(body: bytes) -> tuple[Status, str]:
    """What a heartbeat says: an empty body is a pass; otherwise a JSON object
    `{"status": "pass" | "warn" | "fail", "output": "..."}`, both keys optional.
    ValueError says what is wrong (a 400 for the job)."""
    if not body.strip():
        return Status.PASS, ""
    try:
        report = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValueError('the body must be empty or a JSON object like {"status": "fail", "output": "..."}') from None
    if not isinstance(report, dict):
        raise ValueError('the body must be a JSON object like {"status": "fail", "output": "..."}')
    unknown = sorted(report.keys() - _REPORT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (expected status, output)")
    status = report.get("status", "pass")
    if status not in ("pass", "warn", "fail"):
        raise ValueError('status must be "pass", "warn" or "fail"')
    output = report.get("output", "")
    if not isinstance(output, str):
        raise ValueError("output must be a string")
    return Status(status), output[:MAX_REPORT_OUTPUT]


def span(seconds: float) -> str:
    """A duration to the second, as probed spells durations: 45s, 12m30s, 1d2h."""
    return format_duration(seconds, 1)
