"""Step 2 of loading a config: `${VAR}` and `${VAR:-default}` from the environment.

Every string value of the read data is substituted (keys are names, never
substituted); `$$` is a literal `$`. A variable that is not set and has no
default is a problem at its value, and that value is unusable: the models are
not asked about it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the standard library alone at run time: `probed probe` substitutes with expand too
    from probed.config_problems import Path_, Problems

_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def substitute(data: Any, environ: Mapping[str, str], problems: Problems, path: Path_ = ()) -> Any:
    """The data with every string value substituted."""
    if isinstance(data, dict):
        return {key: substitute(value, environ, problems, path + (key,)) for key, value in data.items()}
    if isinstance(data, list):
        return [substitute(item, environ, problems, path + (index,)) for index, item in enumerate(data)]
    if isinstance(data, str):
        return _substitute_text(data, environ, problems, path)
    return data


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """The text substituted, and the variables it names that are neither set nor defaulted."""
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, default = match["name"], match["default"]
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return _VARIABLE.sub(replace, text), missing


def _substitute_text(text: str, environ: Mapping[str, str], problems: Problems, path: Path_) -> str | None:
    result, missing = expand(text, environ)
    for match in _VARIABLE.finditer(text):
        name = match["name"]  # None for $$
        if name is not None and name in environ:
            problems.variable_used(name, environ[name])
    if missing:
        problems.unusable.add(path)  # the value is unusable; say why once
    for name in missing:
        hint = f"write ${{{name}:-default}} for a default"
        problems.add_to_value(path, f"environment variable {name} is not set ({hint})")
    if "${" in _VARIABLE.sub("", text):
        problems.add_to_value(path, "malformed ${...}: write ${NAME} or ${NAME:-default}")
    # A value that was only variables and came out empty means "not set".
    if result == "" and _VARIABLE.fullmatch(text):
        return None
    return result
