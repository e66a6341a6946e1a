"""Warn and fail levels on observed numbers: one mechanism for every check type.

Every check may set `levels: {name: {warn_above, fail_above, warn_below,
fail_below}}` on any number it observes; the runner judges them after a run
that passed or warned. Type-specific options such as the disk check's
`warn_free_percent` are spellings of the same thing: each options model maps
them onto levels in `implied_levels()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field, model_validator

from probed.fields import ProbedModel, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status


class Levels(ProbedModel):
    warn_above: float | None = Field(None, description="warn when the value is above this")
    fail_above: float | None = Field(None, description="fail when the value is above this")
    warn_below: float | None = Field(None, description="warn when the value is below this")
    fail_below: float | None = Field(None, description="fail when the value is below this")

    # The reason a crossed fail level gives; a type's own spelling may say more
    # (an expiring certificate is a TLS problem).
    fail_reason: ClassVar[Reason] = Reason.UNEXPECTED

    @model_validator(mode="after")
    def _ordered(self) -> Levels:
        if self.warn_above is not None and self.fail_above is not None and self.warn_above > self.fail_above:
            raise ValueError("warn_above must not be above fail_above")
        if self.warn_below is not None and self.fail_below is not None and self.warn_below < self.fail_below:
            raise ValueError("warn_below must not be below fail_below")
        return self

    @property
    def has_levels(self) -> bool:
        return any(v is not None for v in (self.warn_above, self.fail_above, self.warn_below, self.fail_below))


LevelMap = Mapping[str, Levels]


def apply_levels(target: str, levels: LevelMap, outcome: Outcome, optional: frozenset[str] = frozenset()) -> Outcome:
    """The outcome judged against every level: a fail level crossed raises
    CheckFailed (reason unexpected), a warn level crossed or a level on a
    value this run did not observe turns a pass into a warn. `optional`
    names values that only some targets have (a certificate's days left on
    an http:// URL, the lag of a primary): unobserved, they are not judged."""
    notes = []
    for name, level in levels.items():
        observation = outcome.observed.get(name)
        if observation is None or not _is_number(observation.value):
            if name not in optional:
                notes.append(f"{name} not observed this run, its levels were not judged")
            continue
        note = judge(name, observation, level, outcome.observed, target)
        if note:
            notes.append(note)
    if not notes:
        return outcome
    output = "; ".join([outcome.output, *notes] if outcome.output else [f"{target}: {notes[0]}", *notes[1:]])
    return Outcome(Status.WARN, output, outcome.observed)


def judge(name: str, observation: Observation, levels: Levels, observed: Observed, target: str) -> str | None:
    """Raise CheckFailed past a fail level; return a warning past a warn level."""
    value = float(observation.value)
    said = f"{name} is {show(value, observation.unit)}"
    for bound, above, verdict in (
        (levels.fail_above, True, Status.FAIL),
        (levels.fail_below, False, Status.FAIL),
        (levels.warn_above, True, Status.WARN),
        (levels.warn_below, False, Status.WARN),
    ):
        if bound is None or not (value > bound if above else value < bound):
            continue
        text = f"{said}, {'above' if above else 'below'} the {verdict.value} level of {show(bound, observation.unit)}"
        if verdict is Status.FAIL:
            raise CheckFailed(f"{target}: {text}", levels.fail_reason, observed)
        return text
    return None


def show(value: float, unit: str) -> str:
    """A number as a person reads it, in its observation's unit."""
    if unit == "bytes":
        return _human_bytes(value)
    if unit == "%":
        return f"{value:.4g}%"
    if unit == "s":
        return format_duration(value)
    return f"{value:g}" + (f" {unit}" if unit and unit not in ("ratio", "status") else "")


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:g} B"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
