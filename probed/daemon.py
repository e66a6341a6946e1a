"""The running daemon: the checks, their store and scheduler, and reloading them.

A reload (SIGHUP) reads the config file again. An invalid file changes
nothing: every problem is logged and the daemon keeps its last good config.
A valid one replaces the checks; those whose options did not change keep
their Check object, their history and their cadence, so a reload never makes
a healthy service look pending. New and changed checks run at once, then
spread over their interval again (the scheduler re-phases a burst).

The loop keeps answering probes during a reload: reading and validating the
file and building the new checks (which may import a driver) run in a
thread; only swapping the scheduler runs on the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import gc
import time

import structlog

from probed.checks import create_check
from probed.checks.base import AnyCheck
from probed.checks.errors import exception_text
from probed.checks.heartbeat import Heartbeats
from probed.config import BUILTIN_SOURCE, Config, ConfigError, load_config, saturation_warning
from probed.lag import LoopLag
from probed.metrics import ConfigLoad
from probed.peers import Peers, new_instance_id
from probed.scheduler import Offset, Scheduler, SchedulerLoad, first_run_soon
from probed.store import STARTUP, Store, Transition

log = structlog.get_logger("probed.daemon")


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
        self.checks = [create_check(name, options) for name, options in config.checks.items()]
        # Written by POST /heartbeat/{name}, read by the heartbeat checks; kept across reloads.
        self.heartbeats = Heartbeats()
        self.heartbeats.serve(self.checks)
        self.store = Store(self.checks, on_transition, groups=config.groups, peers=config.peers is not None)
        self.scheduler = Scheduler(self.checks, self.store, config.scheduler.max_concurrency, initial_offset)
        self._reloading = asyncio.Lock()
        self.lag = LoopLag()  # kept across reloads: the loop is the same
        self.instance = new_instance_id()
        self.peers: Peers | None = None
        if config.peers is not None:  # peers, like server settings, take effect on restart
            token = (
                config.server.token.get_secret_value()
                if config.server.details == "token" and config.server.token
                else None
            )
            self.peers = Peers(config.peers, lambda: self.store, config.server.host_port[1], self.instance, token)
        _warn_if_saturable(config)

    def alive(self) -> bool:
        return self.scheduler.alive()

    def peer_requests(self) -> dict[str, int]:
        """Requests sent to peers so far, by outcome (answered, unreachable)."""
        return dict(self.peers.requests) if self.peers is not None else {}

    def scheduler_load(self) -> SchedulerLoad:
        return dataclasses.replace(self.scheduler.load(), loop_lag=self.lag.recent_max())

    async def start(self) -> None:
        self.lag.start()
        await self.scheduler.start()
        if self.peers is not None:
            await self.peers.start()

    async def stop(self) -> None:
        if self.peers is not None:
            await self.peers.stop()
        await self.scheduler.stop()
        await self.lag.stop()
        await _close(self.checks)

    async def reload(self) -> bool:
        """Load the config file again; True when the new config took effect."""
        async with self._reloading:
            try:
                config = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as exc:
                return self._reload_failed(exc.problems)
            except Exception as exc:  # a bug in loading must not end the daemon, nor hide the failure
                return self._reload_failed([f"{self.config_path}: {exception_text(exc)}"])
            if config.server != self.config.server:
                log.warning("config_server_not_reloaded", reason="server settings take effect on restart")
            if config.peers != self.config.peers:
                log.warning("config_peers_not_reloaded", reason="peers settings take effect on restart")
            config = dataclasses.replace(config, peers=self.config.peers)
            await self._replace_checks(config)
            self.config = dataclasses.replace(config, server=self.config.server)
            self.config_load = ConfigLoad(success=True, timestamp=time.time())
            self.loaded_at = self.config_load.timestamp
            log.info("config_reloaded", config=config.source, checks=len(self.checks))
            _warn_if_saturable(config)
            return True

    def _reload_failed(self, problems: list[str]) -> bool:
        self.config_load = ConfigLoad(success=False, timestamp=time.time())
        log.error(
            "config_reload_failed",
            file=self.config_path or BUILTIN_SOURCE,
            problems=problems,
            kept=f"the config loaded at {_iso(self.loaded_at)}",
        )
        return False

    async def _replace_checks(self, config: Config) -> None:
        kept = {check.name: check for check in self.checks if config.checks.get(check.name) == check.options}
        checks = await asyncio.to_thread(_build_checks, config, kept)
        store = Store(
            checks,
            self._on_transition,
            {name: self.store.checks[name] for name in kept},
            groups=config.groups,
            started=self.store.groups[STARTUP].latched,  # startup succeeds once, for good
            peers=self.config.peers is not None,
        )

        def next_run(check: AnyCheck) -> float:
            """Kept checks go on at their cadence; new and changed ones run now."""
            finished = store.checks[check.name].last_finished if check.name in kept else None
            if finished is None:
                return 0.0
            return max(0.0, float(check.options.interval) - (time.monotonic() - finished))

        await self.scheduler.stop()
        retired = [check for check in self.checks if check.name not in kept]
        self.checks, self.store = checks, store
        self.heartbeats.serve(checks)
        late_runs = self.scheduler.load().late_runs
        self.scheduler = Scheduler(
            checks, store, config.scheduler.max_concurrency, next_run, phase=None, late_runs=late_runs
        )
        await self.scheduler.start()
        await _close(retired)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def freeze_what_lives_forever() -> None:
    """Take modules, drivers' loaded data and the config out of the garbage
    collector's sight, before any check exists (`probed serve` calls it
    before making its Daemon): a full collection then walks only checks and
    their runs, and its pause on the loop stays short.

    Checks are not frozen: a reload retires them, and a frozen object in a
    reference cycle (a check and its client session) is never collected.
    """
    gc.collect()  # before serving: the one full collection that delays no probe
    gc.freeze()


def _build_checks(config: Config, kept: dict[str, AnyCheck]) -> list[AnyCheck]:
    return [kept.get(name) or create_check(name, options) for name, options in config.checks.items()]


def _warn_if_saturable(config: Config) -> None:
    warning = saturation_warning(config.checks.values(), config.scheduler.max_concurrency)
    if warning:
        log.warning("scheduler_may_saturate", config=config.source, problem=warning)


async def _close(checks: list[AnyCheck]) -> None:
    await asyncio.gather(*(check.close() for check in checks), return_exceptions=True)
