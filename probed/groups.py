"""Groups: the table of group kinds, and a group's aggregate.

A kind says how a group weighs its checks, whether it latches (passed once,
passed for good), whether it needs the scheduler alive, whether it drains
(fails while probed shuts down), and which checks it holds when the config
lists none. `ready`, `startup` and `live` are kinds,
each with a route of its own; any other configured name is a plain group.
Nothing outside this table compares a group's name: the config fills its
defaults from it, the store builds its groups from it, and the store's
`group_status` is the one place a group's answer is decided.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from probed.model import Status

if TYPE_CHECKING:
    from probed.store import CheckState

Weigh = Callable[["CheckState"], "Status | None"]  # what one check contributes to a group (None: nothing)
# A kind's members when the config lists none: from the critical checks and the groups filled before it.
DefaultMembers = Callable[[tuple[str, ...], Mapping[str, tuple[str, ...]]], tuple[str, ...]]


def weigh_overall(state: CheckState) -> Status | None:
    """The worst critical verdict counts (pending as fail); a failing
    non-critical check, or a shared outage, makes it warn, never fail."""
    verdict = state.effective
    if verdict is Status.FAIL and (not state.critical or state.shared_outage):
        return Status.WARN
    if state.critical:
        return verdict or Status.FAIL
    return verdict


def weigh_ready(state: CheckState) -> Status | None:
    """As overall, except that a failing shared check gates only a local fault."""
    if state.effective is Status.FAIL and state.readiness_ignores_failure:
        return Status.WARN
    return weigh_overall(state)


def weigh_startup(state: CheckState) -> Status | None:
    """Startup waits until every check has published pass or warn once."""
    return Status.PASS if state.passed_once else Status.FAIL


def _critical(critical: tuple[str, ...], filled: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return critical


def _none(critical: tuple[str, ...], filled: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    return ()


def _same_as(name: str) -> DefaultMembers:
    def members(critical: tuple[str, ...], filled: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        return filled[name]

    return members


@dataclass(frozen=True)
class GroupKind:
    weigh: Weigh
    default: DefaultMembers  # its members when the config lists none
    latches: bool = False  # once it passes, it passes for good (the kubelet stops asking)
    needs_scheduler: bool = False  # fails while the scheduler makes no progress, whatever its checks say
    # Fails from the first SIGTERM on (server.shutdown_delay), so that whatever sends
    # requests by it lets go before probed stops; liveness must not, or the kubelet kills.
    drains: bool = True


READY, STARTUP, LIVE = "ready", "startup", "live"
OVERALL = ""  # the group of every check, what /health answers: a plain group
# In this order: startup's default follows ready's members, configured or not.
KINDS: dict[str, GroupKind] = {
    READY: GroupKind(weigh_ready, _critical),
    STARTUP: GroupKind(weigh_startup, _same_as(READY), latches=True),
    LIVE: GroupKind(weigh_overall, _none, needs_scheduler=True, drains=False),
}
PLAIN = GroupKind(weigh_overall, _none)  # a configured group of any other name; also the overall status


def kind_of(name: str) -> GroupKind:
    return KINDS.get(name, PLAIN)


def with_defaults(configured: Mapping[str, Sequence[str]], critical: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Every group with its members: the kinds first (configured, or their
    defaults), then the other configured groups, in their order."""
    critical = tuple(critical)
    groups: dict[str, tuple[str, ...]] = {}
    for name, kind in KINDS.items():
        groups[name] = tuple(configured[name]) if name in configured else kind.default(critical, groups)
    groups.update((name, tuple(members)) for name, members in configured.items() if name not in KINDS)
    return groups


class GroupReason(enum.Enum):
    """Why a group does not pass."""

    CHECKS = "checks"  # its checks' verdicts: ?verbose says which, one line each
    SCHEDULER = "scheduler"  # a kind that needs the scheduler, and it makes no progress
    DRAINING = "draining"  # a kind that drains, and probed is shutting down


# What ?verbose says first, after `[-]`, for a reason that is none of the checks.
REASON_LINES = {
    GroupReason.SCHEDULER: "scheduler failed: a check loop died or the watchdog stopped",
    GroupReason.DRAINING: "shutting down: probed answers 503 here until server.shutdown_delay has passed, then stops",
}


class GroupStatus(NamedTuple):
    status: Status
    reason: GroupReason | None  # None: it passes

    @property
    def passing(self) -> bool:
        """pass or warn: 200 from its endpoint."""
        return self.status is not Status.FAIL

    @property
    def note(self) -> str | None:
        """The reason in words when it is none of the checks (?verbose's first line, `output` in JSON)."""
        return REASON_LINES.get(self.reason) if self.reason else None


# Every answer there can be, made once: the probes' fast path allocates nothing.
ANSWERS = {status: GroupStatus(status, None if status is Status.PASS else GroupReason.CHECKS) for status in Status}
SCHEDULER_STOPPED = GroupStatus(Status.FAIL, GroupReason.SCHEDULER)
DRAINING = GroupStatus(Status.FAIL, GroupReason.DRAINING)
EVERY_ANSWER = (*ANSWERS.values(), SCHEDULER_STOPPED, DRAINING)


class Group:
    """A named set of checks and its aggregate, kept up to date per transition."""

    def __init__(self, name: str, members: Sequence[CheckState], kind: GroupKind = PLAIN) -> None:
        self.name = name
        self.kind = kind
        self.members = tuple(state.name for state in members)
        self.weights: dict[str, Status | None] = {state.name: kind.weigh(state) for state in members}
        self._counts: Counter[Status | None] = Counter(self.weights.values())
        self.latched = False
        self.status = Status.FAIL
        self._aggregate()

    def latch(self) -> None:
        """Passed for good (a reload keeps what the old store's group had reached)."""
        self.latched, self.status = True, Status.PASS

    def update(self, state: CheckState) -> bool:
        """Weigh one member again; True when the group's status changed."""
        weight = self.kind.weigh(state)
        before = self.weights[state.name]
        if weight is before:
            return False
        self._counts[before] -= 1
        self._counts[weight] += 1
        self.weights[state.name] = weight
        status = self.status
        self._aggregate()
        return self.status is not status

    def status_without(self, excluded: Iterable[str]) -> Status:
        """The aggregate as if `excluded` were not members (computed: ?exclude=)."""
        if self.latched:
            return self.status
        counts = self._counts.copy()
        for name in set(excluded) & self.weights.keys():
            counts[self.weights[name]] -= 1
        return _worst(counts)

    def _aggregate(self) -> None:
        if self.latched:
            return
        self.status = _worst(self._counts)
        self.latched = self.kind.latches and self.status is not Status.FAIL


def _worst(counts: Counter[Status | None]) -> Status:
    if counts[Status.FAIL] > 0:
        return Status.FAIL
    if counts[Status.WARN] > 0:
        return Status.WARN
    return Status.PASS
