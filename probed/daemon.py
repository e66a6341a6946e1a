"""The running daemon: the checks, their store and scheduler, and reloading them.

A reload (SIGHUP) reads the config file again. An invalid file changes
nothing: every problem is logged and the daemon keeps its last good config.
A valid one replaces the checks; those whose options did not change keep
their Check object, their history and their cadence, so a reload never makes
a healthy service look pending. New and changed checks run at once, then
spread over their interval again (the scheduler re-phases a burst).

A check whose only change is a secret or the content of a file it names (a
rotated password, token or CA bundle) is rebuilt with the new one and runs
at once, but keeps its verdict and history: a Secret rotated on every
replica at the same moment must not make them all look pending together.

Server settings and peers take effect on reload too, except those bound to
the listening socket (RESTART_ONLY): a reload that changes one says so.

The loop keeps answering probes during a reload: the file is read and
validated in a child process (probed/config_apart.py: in a thread it held
the interpreter's lock against the loop), a new type's driver is imported in
a thread, building the checks runs on the loop a few milliseconds a turn
(probed/turns.py), and the old runs are cancelled and the retired checks
closed 64 at a time.
A reload that finds the file and every file it names as they were loaded
changes nothing. Everything a reload makes (checks, store, peers) is made
before anything running is touched: a valid file whose check cannot be made
(a type's constructor or driver import raising) fails the reload like an
invalid one, and the old checks go on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, SecretStr

from probed.checks import CheckNotMade, create_check, import_drivers
from probed.checks.base import AnyCheck
from probed.checks.errors import exception_text
from probed.checks.push import PushBook
from probed.config import BUILTIN_SOURCE, Config, ConfigError, ServerOptions, saturation_warning
from probed.config_apart import load_config_apart
from probed.exclusions import Exclusions
from probed.groups import GroupStatus
from probed.heap import Heap, acyclic
from probed.lag import LoopLag
from probed.metrics import ConfigLoad
from probed.peers import Peers, new_instance_id
from probed.report import iso_time
from probed.scheduler import Offset, Scheduler, SchedulerLoad, first_run_soon
from probed.secrets import mask_in_logs, redact, secret_values
from probed.store import CheckState, Store, Transition, state_for
from probed.turns import in_turns
from probed.watch import files_of, named_files, snapshot

log = structlog.get_logger("probed.daemon")

# Server settings a reload cannot apply: the socket is bound and its handler made.
RESTART_ONLY = ("listen", "idle_timeout")

Digests = Mapping[Path, str | None]  # a named file's SHA-256, None when unreadable


class Daemon:
    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        on_transition: Transition | None = None,
        initial_offset: Offset = first_run_soon,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.config_load = ConfigLoad(success=True, timestamp=time.time())
        self.loaded_at = self.config_load.timestamp  # of the config in use
        self._on_transition = on_transition
        # The files as the first config was read from them: the watch (probed/watch.py) starts here.
        self.file_digests = file_digests(config)  # of the files the checks were made from
        self.watched = snapshot(self.watched_paths())
        self.checks = [create_check(name, options) for name, options in config.checks.items()]
        mask_in_logs(_all_secrets(config, self.checks))  # in lines that quote other code's objects (probed/logs.py)
        # Written by POST /heartbeat/{name}, read by the push checks; kept across reloads.
        self.pushes = PushBook()
        self.pushes.serve(self.checks)
        # The operators' (POST /health/{group}/exclusions); in memory, kept across reloads.
        self.exclusions = Exclusions(on_change=lambda: self.store.touch())
        self.store = Store(
            self.checks,
            on_transition,
            groups=config.groups,
            peers=config.peers is not None,
            alive=self.alive,
            exclusions=self.exclusions,
        )
        self.scheduler = Scheduler(self.checks, self.store, config.scheduler.max_concurrency, initial_offset)
        self._reloading = asyncio.Lock()
        self._swapping = False  # the old scheduler stops for a new one: no sign of a stuck loop
        self.lag = LoopLag()  # kept across reloads: the loop is the same
        self.heap = Heap(self._quiet, cyclic=lambda: not acyclic(self.checks))
        self.instance = new_instance_id()
        self.peers = self._make_peers(config)
        _warn_if_saturable(config)

    def _make_peers(self, config: Config) -> Peers | None:
        if config.peers is None:
            return None
        return Peers(config.peers, lambda: self.store, config.server.host_port[1], self.instance, _peer_token(config))

    def watched_paths(self) -> list[str]:
        """The config file (when there is one) and the files the config in use
        names, as listed when it was read: no walk over thousands of checks."""
        return list(dict.fromkeys([*([self.config_path] if self.config_path else []), *map(str, self.file_digests)]))

    def _quiet(self) -> bool:
        """Whether the heap may be frozen now (probed/heap.py)."""
        return not self._reloading.locked() and self.scheduler.cyclic_runs == 0

    def alive(self) -> bool:
        return self._swapping or self.scheduler.alive()

    def group_answer(self, name: str) -> GroupStatus | None:
        """A group's answer by its path's name, None for no such group. The
        probes' thread asks this (probed/lane.py): it reads, never changes."""
        store = self.store  # one store: a reload may replace it meanwhile
        return store.group_status(name) if name in store.groups else None

    def drain(self) -> None:
        """The first SIGTERM with server.shutdown_delay: the kinds that drain
        fail at once (probed/groups.py); the checks and the server go on."""
        self.store.drain()
        delay = self.config.server.shutdown_delay
        log.info("probed_draining", shutdown_delay=delay, stops_at=iso_time(time.time() + delay))

    def peer_requests(self) -> dict[str, int]:
        """Requests sent to peers so far, by outcome (answered, unreachable)."""
        return dict(self.peers.requests) if self.peers is not None else {}

    def scheduler_load(self) -> SchedulerLoad:
        return dataclasses.replace(self.scheduler.load(), loop_lag=self.lag.recent_max())

    async def start(self) -> None:
        self.lag.start()
        self.heap.start()
        await self.scheduler.start()
        if self.peers is not None:
            await self.peers.start()

    async def stop(self) -> None:
        if self.peers is not None:
            await self.peers.stop()
        await self.scheduler.stop()
        await self.lag.stop()
        await self.heap.stop()
        self.exclusions.close()
        self.heap.retiring(self.checks)
        await _close(self.checks)

    async def reload(self) -> bool:
        """Load the config file again; True when the new config took effect."""
        async with self._reloading:
            if await asyncio.to_thread(self._as_loaded):
                return self._reloaded_unchanged()
            try:
                config = await load_config_apart(self.config_path)
            except ConfigError as exc:
                return self._reload_failed(exc.problems)
            except Exception as exc:  # a bug in loading must not end the daemon, nor hide the failure
                return self._reload_failed([f"{self.config_path}: {exception_text(exc)}"])
            pending = _needs_restart(config.server, self.config.server)
            config = dataclasses.replace(config, server=_running(config.server, self.config.server))
            try:
                change = await self._prepare(config)
            except _NotPrepared as failed:  # a type's bug (its import, its constructor): the old checks go on
                return self._reload_failed([failed.problem])
            renewed = await self._swap(change)
            self.config = config
            self.config_load = ConfigLoad(success=True, timestamp=time.time())
            self.loaded_at = self.config_load.timestamp
            event = log.warning if pending else log.info
            restart = {"needs_restart": pending} if pending else {}
            event("config_reloaded", config=config.source, checks=len(self.checks), renewed=renewed, **restart)
            _warn_if_saturable(config)
            return True

    def _as_loaded(self) -> bool:
        """Whether the config file and every file it names hold what they held
        when the config in use was read: then a reload has nothing to do."""
        if self.config_path is None or self.config.digest is None:
            return False
        path = Path(self.config_path)
        if not path.is_file():  # a pipe is read once: leave it to the reader
            return False
        if _digest(path) != self.config.digest:
            return False
        return _digests(self.file_digests) == self.file_digests

    def _reloaded_unchanged(self) -> bool:
        self.config_load = ConfigLoad(success=True, timestamp=time.time())
        log.info("config_reloaded", config=self.config.source, checks=len(self.checks), renewed=[], unchanged=True)
        return True

    def _reload_failed(self, problems: list[str]) -> bool:
        self.config_load = ConfigLoad(success=False, timestamp=time.time())
        log.error(
            "config_reload_failed",
            file=self.config_path or BUILTIN_SOURCE,
            problems=problems,
            kept=f"the config loaded at {iso_time(self.loaded_at, 'seconds')}",
        )
        return False

    async def _prepare(self, config: Config) -> _Change:
        """Everything a reload makes, made before anything running is touched:
        a failure here (raised as _NotPrepared, the new checks closed) leaves
        the daemon as it was."""
        made: list[AnyCheck] = []  # the new checks built so far: closed if the reload fails
        try:
            paths = await _named_files(config)
            digests = await asyncio.to_thread(_digests, paths)
            kept, renewed = await _unchanged(self.checks, config, self.file_digests, digests)
            await asyncio.to_thread(import_drivers, {options.type for options in config.checks.values()})
            checks = await _build_checks(config, kept, made)
            # Masked from now on: early, or after all in a reload that fails, only secrets are masked.
            mask_in_logs(await _secrets_in_turns(config, checks))
            carried = {name: self.store.checks[name] for name in [*kept, *renewed]}
            store = Store(
                checks,
                self._on_transition,
                await _states_in_turns(checks, carried),
                groups=config.groups,
                latched=self.store.latched(),  # startup succeeds once, for good
                peers=config.peers is not None,
                alive=self.alive,
                draining=self.store.draining,  # a reload while shutting down drains on
                exclusions=self.exclusions,
            )
            peers_change = (config.peers, _peer_token(config)) != (self.config.peers, _peer_token(self.config))
            peers = self._make_peers(config) if peers_change else self.peers
        except Exception as exc:
            await _close(made)
            if isinstance(exc, CheckNotMade):
                raise _NotPrepared(exc.problem) from exc
            problem = f"{self.config_path or BUILTIN_SOURCE}: {exception_text(exc)}"
            raise _NotPrepared(redact(problem, _all_secrets(config))) from exc
        if config.peers != self.config.peers:
            for state in carried.values():
                state.fleet = None  # judged afresh: what other peers say, or that there are none
        return _Change(config, digests, kept, renewed, checks, store, peers)

    async def _swap(self, change: _Change) -> list[str]:
        """Stop the old checks, start the new (see the module doc); the names of those renewed."""
        store, checks, kept = change.store, change.checks, change.kept

        def next_run(check: AnyCheck) -> float:
            """Kept checks go on at their cadence; new and changed ones run now."""
            finished = store.checks[check.name].last_finished if check.name in kept else None
            if finished is None:
                return 0.0
            return max(0.0, float(check.options.interval) - (time.monotonic() - finished))

        self._swapping = True  # stopping takes many turns of the loop, probes answered between them
        try:
            await self.scheduler.stop()
            retired = [check for check in self.checks if check.name not in kept]
            self.heap.retiring(retired)
            draining = self.store.draining  # a SIGTERM during the awaits since `store` was made
            self.checks, self.store, self.file_digests = checks, store, change.digests
            if draining and not store.draining:
                store.drain()
            self.exclusions.keep({name: group.members for name, group in store.groups.items()})
            self.pushes.serve(checks)
            late_runs = self.scheduler.load().late_runs
            self.scheduler = Scheduler(
                checks, store, change.config.scheduler.max_concurrency, next_run, phase=None, late_runs=late_runs
            )
            await self.scheduler.start()
        finally:
            self._swapping = False
        await self._swap_peers(change.peers)
        await _close(retired)
        return change.renewed

    async def _swap_peers(self, peers: Peers | None) -> None:
        """The new peers, when what they ask or how they authenticate changed."""
        if peers is self.peers:
            return
        old, self.peers = self.peers, peers
        if old is not None:
            await old.stop()
        if peers is not None:
            if old is not None:
                peers.requests = old.requests  # a counter: it goes on across reloads
            await peers.start()


@dataclass(frozen=True)
class _Change:
    """What a reload swaps in, all made before the swap."""

    config: Config
    digests: dict[Path, str | None]
    kept: dict[str, AnyCheck]
    renewed: list[str]
    checks: list[AnyCheck]
    store: Store
    peers: Peers | None


class _NotPrepared(Exception):
    """A reload that failed before anything was swapped; `problem` says why, secrets masked."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


async def _states_in_turns(checks: Sequence[AnyCheck], carried: dict[str, CheckState]) -> dict[str, CheckState]:
    """The carried states and the new checks' own, made a few a turn (80 µs
    each: made by the store at once, 2,000 held the loop for a tenth of a second)."""
    states = dict(carried)
    async for check in in_turns(checks):
        if check.name not in states:
            states[check.name] = state_for(check)
    return states


async def _secrets_in_turns(config: Config, checks: Sequence[AnyCheck]) -> set[str]:
    """_all_secrets on the loop, a few checks a turn (thousands of option trees)."""
    found = _all_secrets(dataclasses.replace(config, checks={}))
    async for options in in_turns(config.checks.values()):
        found |= secret_values(options)
    async for check in in_turns(checks):
        found |= check.masked
    return found


def _all_secrets(config: Config, checks: Sequence[AnyCheck] = ()) -> set[str]:
    """Every secret of the config (and those the checks derive from theirs):
    an exception's text may quote one (a DSN)."""
    found = secret_values(config.server)
    if config.peers is not None:
        found |= secret_values(config.peers)
    for options in config.checks.values():
        found |= secret_values(options)
    for check in checks:
        found |= check.masked
    return found


def _needs_restart(new: ServerOptions, old: ServerOptions) -> list[str]:
    return [f"server.{key}" for key in RESTART_ONLY if getattr(new, key) != getattr(old, key)]


def _running(new: ServerOptions, old: ServerOptions) -> ServerOptions:
    """The new server settings, but those that need a restart as they run."""
    return new.model_copy(update={key: getattr(old, key) for key in RESTART_ONLY})


def _peer_token(config: Config) -> str | None:
    server = config.server
    return server.token.get_secret_value() if server.details == "token" and server.token else None


def file_digests(config: Config) -> dict[Path, str | None]:
    return _digests(named_files(config))


async def _named_files(config: Config) -> list[Path]:
    """named_files on the loop, a few checks a turn: walking 2,000 checks'
    options in a thread held the loop's lock for a tenth of a second."""
    found: dict[Path, None] = {}
    async for model in in_turns([config.server, *config.checks.values()]):
        found.update(dict.fromkeys(files_of(model)))
    return list(found)


def _digests(paths: Iterable[Path]) -> dict[Path, str | None]:
    return {path: _digest(path) for path in paths}


def _digest(path: Path) -> str | None:
    try:
        with open(path, "rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


async def _unchanged(
    checks: list[AnyCheck], config: Config, before: Digests, after: Digests
) -> tuple[dict[str, AnyCheck], list[str]]:
    """Checks to keep as they are, and the names of those to renew: rebuilt,
    their state kept, because only secrets or named files' contents changed.
    On the loop, a few a turn (comparing masked options is 0.1 ms a check)."""
    kept: dict[str, AnyCheck] = {}
    renewed: list[str] = []
    async for check in in_turns(checks):
        options = config.checks.get(check.name)
        if options is None:
            continue
        files = files_of(options)
        if options == check.options and all(before.get(path) == after.get(path) for path in files):
            kept[check.name] = check
        elif _public(options) == _public(check.options):
            renewed.append(check.name)
    return kept, renewed


def _public(value: Any) -> Any:
    """Options as comparable data with every secret masked."""
    if isinstance(value, SecretStr):
        return "***"
    if isinstance(value, BaseModel):
        return {name: _public(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, (list, tuple)):
        return [_public(item) for item in value]
    if isinstance(value, dict):
        return {key: _public(item) for key, item in value.items()}
    return value


def freeze_what_lives_forever() -> None:
    """Take modules, drivers' loaded data, the config and the checks just made
    out of the garbage collector's sight, before anything runs (`probed serve`
    calls it once its Daemon is made); from then on the daemon's Heap
    (probed/heap.py) freezes what the runs build, where that is safe, and
    thaws before retiring a check that may leave a cycle."""
    gc.collect()  # before serving: the one full collection that delays no probe
    gc.freeze()


async def _build_checks(config: Config, kept: dict[str, AnyCheck], made: list[AnyCheck]) -> list[AnyCheck]:
    """The reload's checks: those kept, the others made (and added to `made` as
    they are). On the loop, a few a turn: in a thread, building held the lock
    the loop waits for."""
    checks = []
    async for name, options in in_turns(config.checks.items()):
        check = kept.get(name)
        if check is None:
            check = create_check(name, options)
            made.append(check)
        checks.append(check)
    return checks


def _warn_if_saturable(config: Config) -> None:
    warning = saturation_warning(config.checks.values(), config.scheduler.max_concurrency)
    if warning:
        log.warning("scheduler_may_saturate", config=config.source, problem=warning)


CLOSE_SLICE = 64  # checks closed per turn of the loop: a reload retiring thousands holds no probe for long


async def _close(checks: list[AnyCheck]) -> None:
    for start in range(0, len(checks), CLOSE_SLICE):
        chunk = checks[start : start + CLOSE_SLICE]
        await asyncio.gather(*(check.close() for check in chunk), return_exceptions=True)
