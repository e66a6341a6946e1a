"""probed's environment as the user gave it, without what probed set for its drivers.

gRPC's C core is configured only through the environment (GRPC_VERBOSITY,
GRPC_TRACE, read when it starts), so probed/checks/grpc.py sets them in
probed's own process unless the user did. They are probed's, not the
user's: `${GRPC_VERBOSITY:-ERROR}` in the config (say, in a `command`
check's `env`, for a gRPC tool it runs) reads what the user set, on the
first load and on a reload after grpc was imported alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

_OURS: dict[str, str] = {}  # name -> the value probed set


def set_for_drivers(name: str, value: str) -> None:
    """Set `name` in probed's environment, for a driver to read, unless the user set it."""
    if name not in os.environ:
        os.environ[name] = value
        _OURS[name] = value


class UserEnviron(Mapping[str, str]):
    """os.environ, read live, without the variables probed set for its drivers
    (one the user sets later, to another value, is the user's)."""

    def __getitem__(self, name: str) -> str:
        value = os.environ[name]
        if _OURS.get(name) == value:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name, value in os.environ.items() if _OURS.get(name) != value)

    def __len__(self) -> int:
        return sum(1 for _ in self)


USER_ENVIRON = UserEnviron()
