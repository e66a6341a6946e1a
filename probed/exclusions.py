"""Operator exclusions: one check out of one group for a bounded time, with a reason.

During an incident an operator takes a check out of readiness without
touching the probe's URL (?exclude= needs a caller that can change it):
POST /health/{group}/exclusions (probed/web.py, behind
server.exclusions_token). The store's `group_status` weighs a group without
its excluded checks, as it does for ?exclude=; the check itself still runs
and shows in /health and /metrics as it is.

An exclusion ends when it expires (a timer on the loop), when DELETE removes
it, when a reload takes the check out of the group, or when probed stops:
they live in memory only. One (group, check) has at most one exclusion; a
second POST replaces it (extends or shortens it, with its own reason).

The table is copied on every change, never changed in place: /metrics
renders in a thread and reads it whole. It is a plain dict, read by the
store's `group_status` on the probes' path: one lookup, no call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

log = structlog.get_logger("probed.exclusions")

MAX_DURATION = 24 * 3600.0  # an exclusion is for an incident, not a way to configure readiness
MIN_DURATION = 5.0  # shorter is a typo (5 for 5m), and would end before the answer is read
MAX_REASON = 200
MAX_BY = 64
MAX_BODY_BYTES = 4096
# Whole numbers of seconds, minutes or hours; the spec (docs/openapi.yaml) writes
# the same set with the bound in the pattern. `$` as the spec's validator reads it.
_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a reason is one line of ?verbose, of the table, of the page

Key = tuple[str, str]  # (group, check)


def exclusion_duration(value: Any) -> float:
    """'30m', '2h', '90s' or a number of seconds, from 5s to 24h."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("duration must be a number of seconds or a string such as 90s, 30m or 2h")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"invalid duration {value!r} (use a whole number of s, m or h: 90s, 30m, 2h)")
        seconds = int(match[1]) * _UNITS[match[2]]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or not MIN_DURATION <= seconds <= MAX_DURATION:
        raise ValueError(f"duration must be at least 5s and at most 24h, got {value!r}")
    return seconds


def one_line(value: str) -> str:
    """Control characters (a newline) as spaces: ?verbose, the table and the page show one line each."""
    return _CONTROL.sub(" ", value)


class ExclusionRequest(BaseModel):
    """The body of POST /health/{group}/exclusions."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    check: str = Field(min_length=1)
    duration: Any  # exclusion_duration reads it: a number, or a string with a unit
    reason: str = Field(min_length=1, max_length=MAX_REASON)
    by: str | None = Field(None, min_length=1, max_length=MAX_BY)  # who asks, for the log and the page

    @field_validator("duration", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return exclusion_duration(value)

    @field_validator("reason", "by")
    @classmethod
    def _single_line(cls, value: str | None) -> str | None:
        return None if value is None else one_line(value)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # Spaces alone say nothing to the next operator; control characters are spaces by now.
        if not value.strip():
            raise ValueError("must not be blank: say why the check is excluded")
        return value


@dataclass(frozen=True)
class Exclusion:
    group: str
    check: str
    reason: str
    by: str | None
    created_at: float  # wall clock
    expires_at: float  # wall clock

    def shown(self, details: bool) -> Exclusion:
        """As the reports show it: the reason and who asked are free text, details like a check's output."""
        return self if details else dataclasses.replace(self, reason="", by=None)


_NONE: Mapping[str, Exclusion] = MappingProxyType({})


class Exclusions:
    """The live exclusions, by group then check; kept by the daemon across reloads."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change  # the daemon bumps the store's version: cached bodies show it
        # group -> check -> exclusion; replaced whole on a change, never changed in place
        self.table: dict[str, dict[str, Exclusion]] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def of(self, group: str) -> Mapping[str, Exclusion]:
        """The group's exclusions by check name (the probes' path: one lookup)."""
        return self.table.get(group, _NONE)

    def all(self) -> list[Exclusion]:
        """Every live exclusion, by group then check."""
        table = self.table
        return [item for group in sorted(table) for _, item in sorted(table[group].items())]

    def add(self, group: str, request: ExclusionRequest, now: float | None = None) -> tuple[Exclusion, bool]:
        """Exclude (or exclude again); the exclusion, and whether it replaced one."""
        now = time.time() if now is None else now
        item = Exclusion(group, request.check, request.reason, request.by, now, now + request.duration)
        key = (group, request.check)
        replaced = self._cancel(key)
        self._timers[key] = asyncio.get_running_loop().call_later(request.duration, self._expire, item)
        self._put(key, item)
        return item, replaced

    def remove(self, group: str, check: str) -> Exclusion | None:
        item = self.of(group).get(check)
        if item is not None:
            self._cancel((group, check))
            self._put((group, check), None)
        return item

    def keep(self, members: Mapping[str, tuple[str, ...]]) -> None:
        """After a reload: end the exclusions whose check is no longer in its group."""
        for item in self.all():
            if item.check not in members.get(item.group, ()):
                self.remove(item.group, item.check)
                log.info("exclusion_ended", group=item.group, check=item.check, why="not in the group after a reload")

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _expire(self, item: Exclusion) -> None:
        if self.of(item.group).get(item.check) is item:
            self._timers.pop((item.group, item.check), None)
            self._put((item.group, item.check), None)
            log.info("exclusion_expired", group=item.group, check=item.check, reason=item.reason)

    def _cancel(self, key: Key) -> bool:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        return timer is not None

    def _put(self, key: Key, item: Exclusion | None) -> None:
        group, check = key
        checks = {name: other for name, other in self.of(group).items() if name != check}
        if item is not None:
            checks[check] = item
        table = {name: other for name, other in self.table.items() if name != group}
        if checks:
            table[group] = checks
        self.table = table
        self.on_change()
