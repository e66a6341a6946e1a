"""Warn and fail levels on one observed number, shared by the kinds that read numbers."""

from __future__ import annotations

from pydantic import Field, model_validator

from probed.fields import ProbedModel
from probed.model import CheckFailed, Observed, Reason


class Levels(ProbedModel):
    warn_above: float | None = Field(None, description="warn when the value is above this")
    fail_above: float | None = Field(None, description="fail when the value is above this")
    warn_below: float | None = Field(None, description="warn when the value is below this")
    fail_below: float | None = Field(None, description="fail when the value is below this")

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


def judge(name: str, value: float, levels: Levels, observed: Observed) -> str | None:
    """Raise CheckFailed past a fail level; return a warning past a warn level."""
    said = f"{name} is {value:g}"
    if levels.fail_above is not None and value > levels.fail_above:
        raise CheckFailed(f"{said}, above the fail level of {levels.fail_above:g}", Reason.UNEXPECTED, observed)
    if levels.fail_below is not None and value < levels.fail_below:
        raise CheckFailed(f"{said}, below the fail level of {levels.fail_below:g}", Reason.UNEXPECTED, observed)
    if levels.warn_above is not None and value > levels.warn_above:
        return f"{said}, above the warn level of {levels.warn_above:g}"
    if levels.warn_below is not None and value < levels.warn_below:
        return f"{said}, below the warn level of {levels.warn_below:g}"
    return None
