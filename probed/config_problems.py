"""What the three steps of loading a config report: one line per problem, with its place.

Reading the YAML, substituting the environment and building the models each
add to one `Problems`; it knows the line of every key and list item (the
reader records them) and lists the problems as the user reads the file: by
line, and on one line in the order the reader met them, a later step's problem
where the reader met its value, the models' problems last.
"""

from __future__ import annotations

import re

from probed.secrets import SENSITIVE_NAME, redact

Path_ = tuple[str | int, ...]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_SHOWN = 80


class Problems:
    """Every problem of one config file so far, with the places they refer to."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[Path_, int] = {}  # the line of every key and list item
        self.unusable: set[Path_] = set()  # places whose value is unusable and already has a problem
        self.secrets: set[str] = set()  # the config's secret values, masked in every problem
        self._met: dict[Path_, int] = {}  # when the reader met each value
        self._clock = 0  # counts the values met and the problems found, in reading order
        self._found: list[tuple[int, int, str]] = []  # (line, when, text)

    def __bool__(self) -> bool:
        return bool(self._found)

    def variable_used(self, name: str, value: str) -> None:
        """`${name}` was substituted with value: a secret's value (by the variable's
        name, e.g. DB_PASSWORD) is masked in every problem, wherever it lands."""
        if value and SENSITIVE_NAME.search(name):
            self.secrets.add(value)

    def met(self, path: Path_) -> None:
        """The reader has come to the value at path."""
        self._clock += 1
        self._met[path] = self._clock

    def add(self, path: Path_, message: str, line: int | None = None) -> None:
        """A problem at path (on its line unless given), found now."""
        self._clock += 1
        self._append(path, message, line, self._clock)

    def add_to_value(self, path: Path_, message: str) -> None:
        """A problem found after reading in the value at path: listed where the reader met it."""
        self._append(path, message, None, self._met.get(path, 0))

    def listed(self) -> list[str]:
        # Masked last, once every secret of the file is known: a secret pasted
        # into the wrong field is echoed by that field's error otherwise.
        return [redact(text, self.secrets) for _, _, text in sorted(self._found, key=lambda p: p[:2])]

    def _append(self, path: Path_, message: str, line: int | None, when: int) -> None:
        line = line or self._line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        place = f"{_dotted(path)}: " if path else ""
        self._found.append((line or 0, when, _one_line(f"{where}: {place}{message}")))

    def _line_of(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


def shown(value: object) -> str:
    """A value as an error message may echo it: quoted, and short."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 4] + "...'"


def _one_line(text: str) -> str:
    """Problems are one line each: escape line breaks and control characters."""
    return _CONTROL.sub(lambda match: repr(match[0])[1:-1], text)


def _dotted(path: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else _short_key(p) for p in path).replace(".[", "[")


def _short_key(key: str) -> str:
    if not key or key != key.strip():
        return repr(key)  # an empty or blank key stays visible
    return key if len(key) <= 64 else key[:61] + "..."
