"""The vocabulary every part of probed shares: statuses, reasons, outcomes, results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Status(enum.StrEnum):
    """A verdict. The order of severity is pass < warn < fail."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


class Reason(enum.StrEnum):
    """Why a check failed: a small fixed set that alerts can match on."""

    TIMEOUT = "timeout"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    AUTH = "auth"
    UNEXPECTED = "unexpected"  # the dependency answered, but not as expected
    ERROR = "error"  # anything else
    # Published-verdict states, never raised by a check:
    STALE = "stale"  # no run completed for too long: the scheduler is stuck
    PENDING = "pending"  # the first run has not completed yet
    DEPENDENCY = "dependency"  # not run: a check it depends on fails


class Fleet(enum.StrEnum):
    """What the peers say about a failing shared check (see probed/peers.py)."""

    NO_PEERS = "no-peers"  # no peers configured: readiness ignores the check
    ASKING = "asking"  # waiting for peers fresher than the local failure
    SHARED_OUTAGE = "shared-outage"  # more than the quorum of replicas see it failing
    LOCAL_FAULT = "local-fault"  # the others reach it (a tie included): this one is cut off
    ALONE = "alone"  # no peer answered: the `alone` policy decides


@dataclass(frozen=True)
class FleetPeers:
    """Whom a fleet verdict heard, each peer as host:port: `answered` is
    `counted` (its answer is evidence) plus `not_yet` (no run that tells yet)."""

    counted: tuple[str, ...] = ()
    not_yet: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()

    @property
    def answered(self) -> tuple[str, ...]:
        return self.counted + self.not_yet


ObservedScalar = int | float | str | bool


@dataclass(frozen=True)
class Observation:
    """One value a check observed, with its unit (IETF draft observedUnit)."""

    value: ObservedScalar
    unit: str = ""


Observed = dict[str, Observation]


@dataclass(frozen=True)
class Outcome:
    """What a check returns when it completes: pass or warn, and what it saw.

    The first entry of `observed` is the primary value shown as observedValue.
    """

    status: Status = Status.PASS
    output: str = ""
    observed: Observed = field(default_factory=dict)


class CheckFailed(Exception):
    """Raised by a check to fail with a readable message and a reason."""

    def __init__(self, message: str, reason: Reason = Reason.ERROR, observed: Observed | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.observed: Observed = observed or {}


@dataclass(frozen=True)
class Result:
    """One completed run of one check."""

    status: Status
    started_at: float  # wall clock, seconds since the epoch
    duration: float  # seconds
    output: str = ""
    reason: Reason | None = None  # set when status is fail
    observed: Observed = field(default_factory=dict)
