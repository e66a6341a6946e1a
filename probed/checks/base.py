"""The check contract: options every type shares, and the class every type extends."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import Field, model_validator

from probed.checks.errors import described_failure
from probed.checks.levels import LevelMap, Levels
from probed.fields import Duration, ProbedModel, format_duration
from probed.model import CheckFailed, Outcome
from probed.secrets import secret_values

DEFAULT_TIMEOUT = 3.0  # seconds, or 80% of the interval when that is shorter


class CommonOptions(ProbedModel):
    """Options every check has; `defaults:` in the config sets them for all checks."""

    interval: Duration = Field(10.0, description="how often the check runs")
    timeout: Duration = Field(
        DEFAULT_TIMEOUT,
        description="a run that takes longer fails with reason timeout (default 3s, or 80% of a shorter interval)",
    )
    failure_threshold: int = Field(1, ge=1, description="consecutive failures before the verdict turns to fail")
    success_threshold: int = Field(1, ge=1, description="consecutive successes before a failed verdict turns back")
    critical: bool = Field(True, description="false: a failure makes the overall status warn, never fail")
    warn_latency: Duration | None = Field(None, description="a run slower than this warns")
    fail_latency: Duration | None = Field(None, description="a run slower than this fails")
    levels: dict[str, Levels] = Field(
        default_factory=dict,
        description="warn/fail levels on any number the check observes, e.g. {query_time: {warn_above: 0.2}}",
    )
    scope: Literal["local", "shared"] = Field(
        "local",
        description="shared: every replica uses this dependency; when it fails here, the peers "
        "tell a shared outage (readiness stays up) from a local fault (readiness fails)",
    )
    depends_on: tuple[str, ...] = Field(
        (), description="checks this one needs: while one of them fails, this one is not run (reason dependency)"
    )
    phase: Duration | None = Field(
        None,
        description="where in each interval the runs after the first start, counted from the wall clock's "
        "multiples of the interval (default: a random point, so checks do not run together)",
    )

    @model_validator(mode="after")
    def _timeout_shorter_than_interval(self) -> CommonOptions:
        if "timeout" not in self.model_fields_set:
            # The default adapts to what the user wrote: `interval: 1s` alone is valid.
            object.__setattr__(self, "timeout", min(DEFAULT_TIMEOUT, self.interval * 0.8))
        if self.timeout >= self.interval:
            raise ValueError(
                f"timeout ({format_duration(self.timeout)}) must be shorter than "
                f"interval ({format_duration(self.interval)})"
            )
        if self.phase is not None and self.phase >= self.interval:
            raise ValueError(
                f"phase ({format_duration(self.phase)}) must be shorter than "
                f"interval ({format_duration(self.interval)})"
            )
        if self.warn_latency and self.fail_latency and self.warn_latency >= self.fail_latency:
            raise ValueError("warn_latency must be lower than fail_latency")
        for name, levels in self.levels.items():
            if not levels.has_levels:
                raise ValueError(f"levels: {name} has no warn_/fail_ level")
        return self


class CheckOptions(CommonOptions):
    """Base of every type's options; each type narrows `type` to a Literal."""

    type: str

    # Implied levels on values only some targets have: not judged when unobserved.
    optional_levels: ClassVar[frozenset[str]] = frozenset()

    def implied_levels(self) -> dict[str, Levels]:
        """Levels spelled as type-specific options (the disk check's
        warn_free_percent, ...); `levels:` entries of the same name win."""
        return {}

    def all_levels(self) -> LevelMap:
        return {**self.implied_levels(), **self.levels}


@dataclass(frozen=True)
class Gauge:
    """A Prometheus gauge exporting one observed value, labelled by check and type.

    Several Gauges may share a name when their labels tell them apart (one
    family, a series each: an http check's phases)."""

    observed: str  # the key in Outcome.observed
    name: str
    help: str
    labels: tuple[tuple[str, str], ...] = ()  # besides check and type


OptionsT = TypeVar("OptionsT", bound=CheckOptions)


class Check(Generic[OptionsT]):
    """One configured check. Subclasses implement `run`; probed's runner times it,
    bounds it by the timeout and turns what it returns or raises into a Result.

    `run` returns an Outcome (pass or warn) or raises CheckFailed with a reason;
    any other exception goes through `describe_error`, once, in the runner.
    The module of a type imports its driver (listed in `requires`) inside the
    methods that use it, so reading and validating options never pays for it;
    create_check imports it, then calls `prepare`, before the first run.
    A check keeps no secret in anything it prints: `secrets()` lists the strings
    the runner masks in every message, as a last line of defence.
    """

    options_model: ClassVar[type[CheckOptions]]
    component_type: ClassVar[str] = "component"  # IETF draft: component, datastore or system
    # Observed values users alert on, each exported as a gauge of its own.
    gauges: ClassVar[tuple[Gauge, ...]] = ()
    # Driver modules this type imports when it runs, and the pip extra that
    # installs them (None: they come with probed itself).
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    # True: no run of this type, by any end, and no closed check of it leaves a
    # reference cycle (tests/test_every_type.py holds each such type to it), so
    # the daemon may freeze the heap while its runs are in flight (probed/heap.py).
    acyclic: ClassVar[bool] = False

    def __init__(self, name: str, options: OptionsT) -> None:
        self.name = name
        self.options = options
        self.target = name  # what the check reaches, for messages; never holds a secret
        self.unprepared: Exception | None = None  # what prepare raised: each run fails with it

    def prepare(self) -> None:
        """Build what every run reuses and what costs CPU: SSL contexts (the
        system's CAs take tens of ms), credentials, client objects, parsed
        options. create_check calls it once, when the check is created (at
        start, and on the loop on reload), and the check keeps it for its
        life: no timed run pays for it, and no run pays for another's.
        Objects bound to a running event loop (an aiohttp session) cannot be
        made here; a run makes them once, from what was prepared.
        """

    @property
    def type(self) -> str:
        return self.options.type

    @functools.cached_property
    def levels(self) -> LevelMap:
        """Every level the runner judges after a run that passed or warned."""
        return self.options.all_levels()

    def exported_gauges(self) -> tuple[Gauge, ...]:
        """The gauges this check exports: its type's, or more when its options
        name observed values of their own (an http check's `observe:`)."""
        return self.gauges

    async def run(self) -> Outcome:
        raise NotImplementedError

    def describe_error(self, exc: Exception) -> CheckFailed:
        """Turn an exception `run` let through into a sentence and a reason.

        Types map their driver's exceptions first and end with this, which
        handles the network errors every client library ends up raising.
        """
        return described_failure(exc, self.target)

    async def close(self) -> None:
        """Release what the check keeps between runs (sessions, connections)."""

    def secrets(self) -> set[str]:
        return secret_values(self.options)

    @functools.cached_property
    def masked(self) -> frozenset[str]:
        """secrets(), computed once: what the runner masks in every output."""
        return frozenset(s for s in self.secrets() if s)


AnyCheck = Check[Any]
