"""Push: the capability of a check type that is told, rather than going out
to look. Something outside (a cron job, a batch worker) sends
`POST /heartbeat/{name}`; the web layer checks the bearer token, the size and
the body, and writes what it said into the daemon's one `PushBook`; the check
reads it there on its next run, neither awaiting anything.

A type receives pushes by extending `PushCheck` (its options extend
`PushOptions`) and saying, in class attributes, the largest body it takes
(`max_push_bytes`), how a body reads (`parse_push`) and which server setting
its token defaults to (`token_setting`); the config
loader, the daemon and the web layer name no type. The book outlives config
reloads, so a reload loses no push; it does not outlive probed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, Field, SecretStr

from probed.checks.base import AnyCheck, Check, CheckOptions
from probed.model import Status


class PushOptions(CheckOptions):
    """The bearer token is the check's own `token`, else the server setting
    named by `token_setting` (the config loader fills it in)."""

    token_setting: ClassVar[str]  # the ServerOptions field a missing token defaults to
    token: SecretStr | None = Field(
        None, description="bearer token the job must send (default: server.heartbeat_token; never shown)"
    )
    token_file: Path | None = Field(None, description="file holding the token (a mounted secret)")


@dataclass(frozen=True)
class Push:
    received: float  # time.monotonic()
    status: Status  # what the sender said: pass, warn or fail
    output: str


PushOptionsT = TypeVar("PushOptionsT", bound=PushOptions)


class PushCheck(Check[PushOptionsT]):
    """A check that reads the last push it received."""

    max_push_bytes: ClassVar[int]  # a larger body is refused with 413

    def __init__(self, name: str, options: PushOptionsT) -> None:
        super().__init__(name, options)
        self.target = f"/heartbeat/{name}"
        # A book of its own until the daemon hands over the one its web server
        # writes (`probed check` receives no pushes).
        self.book = PushBook()
        self.since = time.monotonic()  # the wait for the first push counts from here

    @classmethod
    def parse_push(cls, body: bytes) -> tuple[Status, str]:
        """What a push says; ValueError says what is wrong (a 400 for the sender)."""
        raise NotImplementedError

    def last_push(self) -> Push | None:
        return self.book.last(self.name)


AnyPushCheck = PushCheck[Any]


class PushBook:
    """The last push of every check that receives pushes, by name."""

    def __init__(self) -> None:
        self._last: dict[str, Push] = {}
        self.checks: dict[str, AnyPushCheck] = {}

    def serve(self, checks: Iterable[AnyCheck]) -> None:
        """Take the pushes of the push checks among `checks` (the daemon's,
        after a start or a reload); forget those of checks gone."""
        self.checks = {check.name: check for check in checks if isinstance(check, PushCheck)}
        for check in self.checks.values():
            check.book = self
        self._last = {name: push for name, push in self._last.items() if name in self.checks}

    def record(self, name: str, push: Push) -> None:
        self._last[name] = push

    def last(self, name: str) -> Push | None:
        return self._last.get(name)


def with_token_default(options: CheckOptions, server: BaseModel) -> CheckOptions:
    """A push check without a token of its own takes the server setting its
    options name; any other check is left as it is."""
    if not isinstance(options, PushOptions) or options.token is not None:
        return options
    token: SecretStr | None = getattr(server, options.token_setting)
    return options if token is None else options.model_copy(update={"token": token})
