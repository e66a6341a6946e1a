"""Field types and the base model shared by every part of the configuration."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any, zero: bool = False) -> float:
    """'500ms', '10s', '1m', '1h' or a plain number of seconds -> seconds;
    `zero`: 0 is allowed too (a delay that may be none)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} (use 500ms, 10s, 1m or seconds)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"invalid duration {value!r} (use 500ms, 10s, 1m or seconds)")
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        bound = "0 or more" if zero else "positive"
        raise ValueError(f"duration must be {bound} and finite, got {value!r}")
    return seconds


def parse_delay(value: Any) -> float:
    return parse_duration(value, zero=True)


def format_duration(seconds: float, precision: float = 0) -> str:
    """How probed writes a span of time, wherever a person reads one (messages,
    check outputs, the text table, the status page): 500ms, 1.5s, 45s, 12m30s,
    2h, 3d4h. Below a minute as exact as the value (an option reads as it was
    written, in the units parse_duration reads); from a minute on in whole
    seconds, the two largest units. `precision`: what is worth showing of a
    measured value (0.001: to the millisecond, 1: to the second)."""
    if precision == 0.001 and seconds < 0.9995:
        # The status page writes one per run it shows: whole milliseconds, formatted
        # as an int (a third of what :g costs).
        return f"{round(seconds * 1000)}ms"
    if precision:
        seconds = round(seconds / precision) * precision
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    size, unit, part, part_unit = next(compound for compound in _COMPOUND if whole >= compound[0])
    count, rest = whole // size, whole % size // part
    return f"{count}{unit}{rest}{part_unit}" if rest else f"{count}{unit}"


_COMPOUND = ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s"))  # size, unit, next unit


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DURATION.pattern},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "a duration: 500ms, 10s, 1m, 1h or a number of seconds",
        }
    ),
]

Delay = Annotated[  # a Duration that may be 0: none
    float,
    BeforeValidator(parse_delay),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": _DURATION.pattern}, {"type": "number", "minimum": 0}],
            "description": "a duration: 0, 500ms, 10s, 1m, 1h or a number of seconds",
        }
    ),
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKMGTP]i?B?|B)?\s*$")
_SIZE_FACTORS = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15}


def parse_size(value: Any) -> int:
    """'500MB', '10GiB', '1.5G' or a plain number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r} (use 500MB, 10GiB or bytes)")
    if isinstance(value, (int, float)):
        size = float(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"invalid size {value!r} (use 500MB, 10GiB or bytes)")
        size = float(match[1])
        unit = match[2] or "B"
        if unit != "B":
            base = 1024.0 if "i" in unit else 1000.0
            size *= base ** ("kmgtp".index(unit[0].lower()) + 1)
    if not math.isfinite(size) or size < 0:
        raise ValueError(f"size must be finite and not negative, got {value!r}")
    return int(size)


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": _SIZE.pattern}, {"type": "integer", "minimum": 0}],
            "description": "a size: 500MB, 10GiB or a number of bytes",
        }
    ),
]

Percent = Annotated[float, Field(ge=0, le=100)]


def compiled_regex(value: str) -> str:
    """A regular expression that compiles, kept as text (the options stay plain data)."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(compiled_regex)]


class ProbedModel(BaseModel):
    """Strict, immutable config model: unknown keys are errors, never ignored.

    A secret field `x: SecretStr | None` may be paired with `x_file: Path | None`;
    the file's content (without the trailing newline) then becomes `x`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _read_secret_files(self) -> ProbedModel:
        for name in type(self).model_fields:
            if not name.endswith("_file"):
                continue
            secret = name.removesuffix("_file")
            path = getattr(self, name)
            if secret not in type(self).model_fields or path is None:
                continue
            if getattr(self, secret) is not None:
                raise ValueError(f"give {secret} or {name}, not both")
            object.__setattr__(self, secret, SecretStr(read_secret_file(name, path)))
        return self


MAX_SECRET_FILE_BYTES = 65536


def read_secret_file(key: str, path: Path) -> str:
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)  # bounded: a mistaken /dev/zero must end too
        if len(data) > MAX_SECRET_FILE_BYTES:
            raise ValueError(f"{key}: {path} is larger than {MAX_SECRET_FILE_BYTES} bytes, not a secret")
        return data.decode("utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None
