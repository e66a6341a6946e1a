"""heartbeat: a push check. A job (a cron job, a batch worker) says "I ran"
with `POST /heartbeat/{name}`; the check fails when no heartbeat arrived
within `ttl`, or when the last one said the job failed.

Receiving the heartbeat is probed/checks/push.py's: the web handler writes
it into the daemon's book and the check reads it on its next run. The book
outlives config reloads, so a reload loses no heartbeat. It does not outlive
probed: after a start (or the reload that adds the check) the ttl counts
from then, which gives the job one ttl of grace.
"""

from __future__ import annotations

import json
import time
from typing import Literal

from pydantic import Field

from probed.checks.base import Gauge
from probed.checks.push import PushCheck, PushOptions
from probed.fields import Duration, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

MAX_REPORT_OUTPUT = 1000  # characters of the job's output kept (the verdict shows 500)
_REPORT_KEYS = {"status", "output"}


class HeartbeatOptions(PushOptions):
    """The bearer token is the check's own `token`, else the server-wide
    `server.heartbeat_token` (the config loader fills it in)."""

    type: Literal["heartbeat"]
    optional_levels = frozenset({"age"})  # no heartbeat yet: no age to judge
    token_setting = "heartbeat_token"
    ttl: Duration = Field(description="fail when the last heartbeat is older than this (the job's period plus slack)")


class HeartbeatCheck(PushCheck[HeartbeatOptions]):
    options_model = HeartbeatOptions
    acyclic = True
    component_type = "component"
    gauges = (Gauge("age", "probed_heartbeat_age_seconds", "Seconds since the last heartbeat arrived."),)
    max_push_bytes = 64 * 1024

    @classmethod
    def parse_push(cls, body: bytes) -> tuple[Status, str]:
        """What a heartbeat says: an empty body is a pass; otherwise a JSON object
        `{"status": "pass" | "warn" | "fail", "output": "..."}`, both keys optional.
        ValueError says what is wrong (a 400 for the job)."""
        if not body.strip():
            return Status.PASS, ""
        try:
            report = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ValueError(
                'the body must be empty or a JSON object like {"status": "fail", "output": "..."}'
            ) from None
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

    async def run(self) -> Outcome:
        if self.options.token is None:  # every heartbeat is refused: say so now, not after a ttl
            raise CheckFailed(
                f"{self.target}: no token to accept heartbeats with (set token or server.heartbeat_token)"
            )
        now = time.monotonic()
        ttl = self.options.ttl
        beat = self.last_push()
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


def span(seconds: float) -> str:
    """A duration to the second, as probed spells durations: 45s, 12m30s, 1d2h."""
    return format_duration(seconds, 1)
