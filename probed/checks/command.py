"""command: run a program (argv, no shell) and judge it the Nagios plugin way.

Exit 0 passes, 1 warns, 2 fails, anything else (3 is UNKNOWN) fails with
reason error. The first line of output is the check's output; the
performance data after `|` become observed values.

A run must leave nothing behind: the program starts in a session of its own,
and when it exits or times out its whole process group is killed (and, where
probed is PID 1, the orphans it is handed are reaped). Output is
read as it comes (a full pipe would block the program) and kept up to a
bound. At most one run of a check is in flight: while a previous run has not
ended (its process cannot be killed, or a process that left its group still
holds its output open), the next run fails at once instead of starting
another process, so one misbehaving command cannot fill the process table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from probed.checks.base import Check, CheckOptions, Gauge
from probed.fields import ByteSize, format_duration
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import SENSITIVE_NAME

# The whole environment of the program, besides `env` and `secret_env`: what
# probed itself runs with (its tokens, its cloud credentials) stays private.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# label=value[UOM];warn;crit;min;max, the label quoted when it has spaces ('' is a quote).
_PERF_ITEM = re.compile(r"('(?:[^']|'')*'|[^\s'=]+)=(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)([A-Za-z%]*)(?:;\S*)?")
_UNITS = {
    "s": (1.0, "s"),
    "ms": (1e-3, "s"),
    "us": (1e-6, "s"),
    "%": (1.0, "%"),
    "B": (1, "bytes"),
    "KB": (1024, "bytes"),
    "MB": (1024**2, "bytes"),
    "GB": (1024**3, "bytes"),
    "TB": (1024**4, "bytes"),
    "c": (1, "c"),  # a counter
}


class CommandOptions(CheckOptions):
    """The program's own warn/crit levels in its performance data do not judge (its exit
    code does); `levels:` may name any performance data label."""

    type: Literal["command"]
    command: list[str] = Field(
        min_length=1, description="the program and its arguments, e.g. [/usr/lib/nagios/plugins/check_tcp, -H, db]"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment variables added to a minimal one (PATH, LANG); values of names "
        "that look secret (PASSWORD, TOKEN, KEY...) are never shown",
    )
    secret_env: dict[str, SecretStr] = Field(
        default_factory=dict, description="environment variables whose values are secrets (never shown)"
    )
    cwd: Path | None = Field(None, description="working directory (default: probed's)")
    max_output_bytes: ByteSize = Field(
        64 * 1024, description="keep at most this much of stdout and of stderr; the rest is read and discarded"
    )

    @field_validator("command")
    @classmethod
    def _program_named(cls, value: list[str]) -> list[str]:
        if not value[0]:
            raise ValueError("the program (the first item) must not be empty")
        return value

    @field_validator("env", "secret_env")
    @classmethod
    def _env_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value


@dataclass(frozen=True)
class Finished:
    exit_code: int  # negative: killed by that signal
    stdout: str
    stderr: str


class CommandCheck(Check[CommandOptions]):
    options_model = CommandOptions
    component_type = "component"
    gauges = (Gauge("exit_code", "probed_command_exit_code", "Exit code of the command's last run."),)

    def __init__(self, name: str, options: CommandOptions) -> None:
        super().__init__(name, options)
        self.target = options.command[0]  # never the arguments: they may hold a secret
        self._environment = {
            **BASE_ENV,
            **options.env,
            **{key: value.get_secret_value() for key, value in options.secret_env.items()},
        }
        self._in_flight: asyncio.Task[Finished] | None = None
        self._transport: asyncio.SubprocessTransport | None = None  # of the run in flight
        self._closed = False
        self._unreaped: set[int] = set()  # process groups with orphans probed adopted and could not reap yet

    def secrets(self) -> set[str]:
        found = super().secrets()
        found |= {value.get_secret_value() for value in self.options.secret_env.values()}
        found |= {value for key, value in self.options.env.items() if SENSITIVE_NAME.search(key)}
        return found

    async def run(self) -> Outcome:
        if self._in_flight is not None and not self._in_flight.done():
            # A process that cannot be killed, or that left the group and holds the output open.
            raise CheckFailed(f"{self.target}: the previous run has not ended yet", Reason.TIMEOUT)
        self._unreaped = {pgid for pgid in self._unreaped if not _reap_now(pgid)}
        self._in_flight = asyncio.ensure_future(self._execute())
        self._in_flight.add_done_callback(_retrieve)
        # Shielded: when the runner gives up on this run, the run still kills and reaps its processes.
        return judge(await asyncio.shield(self._in_flight), self.target)

    async def _execute(self) -> Finished:
        opts = self.options
        loop = asyncio.get_running_loop()
        try:
            transport, output = await loop.subprocess_exec(
                lambda: _Output(opts.max_output_bytes, loop),
                *opts.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self._environment,
                cwd=opts.cwd,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            raise self._not_started(exc) from None
        self._transport = transport
        if self._closed:  # close() came while the program was starting
            _kill_group(transport.get_pid())
        try:
            exited, _ = await asyncio.wait({output.exited}, timeout=opts.timeout)
            # On a timeout the program still runs; when it exited, children it
            # left behind would hold the pipes open.
            _kill_group(transport.get_pid())
            await output.closed  # unless a process that left the group holds them
            await output.exited
        finally:
            self._transport = None
            transport.close()
        if not await _reap_orphans(transport.get_pid()):
            self._unreaped.add(transport.get_pid())  # one stuck in the kernel: try again next run
        if not exited:
            message = f"{self.target}: timed out after {format_duration(opts.timeout)}, its process group was killed"
            raise CheckFailed(message, Reason.TIMEOUT)
        exit_code = transport.get_returncode()
        assert exit_code is not None  # it exited
        return Finished(exit_code, output.text(1), output.text(2))

    def _not_started(self, exc: OSError) -> CheckFailed:
        cwd = self.options.cwd
        if cwd is not None and exc.filename is not None and Path(exc.filename) == cwd:
            return CheckFailed(f"{self.target}: cannot run in {cwd}: {exc.strerror}")
        return CheckFailed(f"{self.target}: cannot run: {exc.strerror or exc}")

    async def close(self) -> None:
        """Kill a run still in flight (probed stops, or a reload dropped the check)."""
        self._closed = True
        if self._transport is not None:
            _kill_group(self._transport.get_pid())
            self._transport.close()
        if self._in_flight is not None:
            await asyncio.wait({self._in_flight}, timeout=1)


def judge(finished: Finished, target: str) -> Outcome:
    """A finished program's verdict, the Nagios plugin way (the ssh check's
    remote command is judged by it too): 0 pass, 1 warn, 2 fail (unexpected),
    anything else or a signal fail (error); performance data observed."""
    text, perf_data = split_output(finished.stdout)
    text = text or _first_line(finished.stderr)
    observed = parse_perf_data(perf_data)
    observed.setdefault("exit_code", Observation(finished.exit_code))
    code = finished.exit_code
    if code == 0:
        return Outcome(Status.PASS, text or f"{target}: exited 0", observed)
    if code == 1:
        return Outcome(Status.WARN, text or f"{target}: exited 1 (warning)", observed)
    if code == 2:
        raise CheckFailed(text or f"{target}: exited 2 (critical)", Reason.UNEXPECTED, observed)
    if code < 0:
        said = f"{target}: killed by {signal.Signals(-code).name}"
        raise CheckFailed(f"{said}: {text}" if text else said, Reason.ERROR, observed)
    raise CheckFailed(f"{text} (exit code {code})" if text else f"{target}: exited {code}", Reason.ERROR, observed)


class _Output(asyncio.SubprocessProtocol):
    """A program's stdout (1) and stderr (2) as they come: the first `limit`
    bytes of each are kept, the rest dropped, so the program never blocks on
    a full pipe and a flood costs no memory."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        self.limit = limit
        self.kept = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # both pipes ended
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        kept = self.kept[fd]
        if len(kept) < self.limit:
            kept += data[: self.limit - len(kept)]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def text(self, fd: int) -> str:
        return self.kept[fd].decode(errors="replace")


def _kill_group(pid: int) -> None:
    # The group is the program's own session (start_new_session): pgid == pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):  # everyone in it has exited
        os.killpg(pid, signal.SIGKILL)


async def _reap_orphans(pgid: int) -> bool:
    """Reap the killed group's processes that were handed to probed; True when
    none is left. When probed is PID 1 (a container without an init) the
    children of a killed program become probed's own and would stay zombies
    for good, one set per run. Called once the program itself was reaped
    (asyncio's watcher waits for it), so only those orphans can match; they
    may take a moment to die. Anywhere else none is probed's: one call."""
    for _ in range(100):
        if _reap_now(pgid):
            return True
        await asyncio.sleep(0.01)
    return False


def _reap_now(pgid: int) -> bool:
    """Reap what of the group has exited; True when none of it is probed's any more."""
    try:
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        return True
    return False


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Take a result nobody awaits any more (the runner gave up), so nothing logs it as lost."""
    if not future.cancelled():
        future.exception()


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0].strip()


def split_output(stdout: str) -> tuple[str, str]:
    """A plugin's first line without its performance data, and all the
    performance data: after `|` on the first line, and after the first `|`
    in the lines that follow (the Nagios plugin output format)."""
    first, _, rest = stdout.strip().partition("\n")
    text, _, perf = first.partition("|")
    _, bar, more = rest.partition("|")
    return text.strip(), f"{perf} {more}" if bar else perf


def parse_perf_data(perf: str) -> Observed:
    """`time=0.012s;1;2;0 'free /'=80%` -> {time: 0.012 s, free /: 80 %}; bytes
    and seconds in base units; undetermined values (U) are left out."""
    observed: Observed = {}
    for match in _PERF_ITEM.finditer(perf):
        label, number, unit = match.groups()
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        try:
            value = float(number)
        except ValueError:
            continue
        factor, base_unit = _UNITS.get(unit, (1, unit))
        scaled = value * factor
        shown: int | float = int(scaled) if scaled.is_integer() and base_unit in ("bytes", "c", "") else scaled
        observed.setdefault(label, Observation(shown, base_unit))
    return observed
