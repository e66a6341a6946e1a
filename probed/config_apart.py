"""A running daemon's reload reads its config file in a child process.

Reading and validating a config of 2,000 checks takes 1.5 to 3 s of CPU.
In a thread of the daemon it held the interpreter's lock against the event
loop, and probes took up to half a second while it ran (docs/benchmarks.md,
"Probes at 2,000 checks"). A child holds no lock of ours: it reads the file
as `probed` would at start (the same environment, working directory and
files), and the loop only unpickles what it sends, a few checks a turn.

    python -m probed.config_apart PATH    -> one pickle on stdout

The child is ours and runs our code, so its pickle is trusted. When no child
can be started (a pids limit), the reload reads the file in a thread, as
before, and says so in the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import signal
import sys
from typing import Any

from probed.config import Config, ConfigError, load_config
from probed.environ import USER_ENVIRON
from probed.turns import in_turns

# A file on a dead network mount blocks its reader forever: a reload gives up then.
READ_TIMEOUT = 60.0

_CHECKS = "checks"
_PROBLEMS = "problems"


async def load_config_apart(path: str | None, timeout: float = READ_TIMEOUT) -> Config:
    """load_config(path) read in a child process; ConfigError as load_config raises it."""
    if path is None:  # the built-in default: a few checks, nothing to read
        return load_config(None)
    try:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probed.config_apart",
            path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # a child that dies says nothing a user needs to read
            env=dict(USER_ENVIRON),  # as at start: not what probed set for its drivers (probed/environ.py)
        )
    except OSError as exc:
        import structlog

        structlog.get_logger("probed.daemon").warning(
            "config_read_in_thread", config=path, problem=f"cannot start a reader process: {exc.strerror or exc}"
        )
        return await asyncio.to_thread(load_config, path)
    try:
        sent, _ = await asyncio.wait_for(child.communicate(), timeout)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise ConfigError([f"{path}: reading the config file took over {timeout:g} s (a hung filesystem?)"]) from None
    finally:
        if child.returncode is None:  # cancelled: the reader must not outlive its reload
            child.kill()
    if child.returncode != 0 or not sent:
        raise ConfigError([f"{path}: the config reader {_ended(child.returncode)}"])
    return await _received(sent)


def _ended(code: int | None) -> str:
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code} and sent nothing"


async def _received(sent: bytes) -> Config:
    kind, *body = pickle.loads(sent)
    if kind == _PROBLEMS:
        raise ConfigError(body[0])
    rest, pickled = body
    assert isinstance(rest, Config)
    checks: dict[str, Any] = {}
    async for name, options in in_turns(pickled):
        checks[name] = pickle.loads(options)
    return dataclasses.replace(rest, checks=checks)


def _read(path: str) -> tuple[Any, ...]:
    """What the child sends: the config, each check's options pickled on
    their own (the parent unpickles them a few a turn), or the problems."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        return (_PROBLEMS, exc.problems)
    except Exception as exc:  # a bug in loading reads as a failed reload, never a traceback
        from probed.checks.errors import exception_text

        return (_PROBLEMS, [f"{path}: {exception_text(exc)}"])
    pickled = [(name, pickle.dumps(options)) for name, options in config.checks.items()]
    return (_CHECKS, dataclasses.replace(config, checks={}), pickled)


def main() -> None:
    sys.stdout.buffer.write(pickle.dumps(_read(sys.argv[1]), protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    main()
