"""Reload when files change: the config file and every file it names.

A stat poll, once a second, of each path as the checks open it (os.stat
follows symlinks). Kubernetes updates a mounted ConfigMap or Secret by
pointing a `..data` symlink at a new directory; the mounted names are
symlinks through `..data`, so the path they resolve to changes inode at
once, and so do a file deleted and recreated and an editor's
write-then-rename. An inotify watch (watchfiles, inotify) would have to
watch the parent directories and follow the symlink chain to see that, and
misses changes on the network filesystems where mounts also live; a dozen
stat calls a second cost microseconds and no dependency. The poll runs in a
thread of its own, so the event loop is not woken once a second for it.

A change reloads exactly as SIGHUP does (Daemon.reload). The new config may
name other files: they are watched from then on.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import structlog
from pydantic import BaseModel

from probed.config import Config

log = structlog.get_logger("probed.watch")

POLL_INTERVAL = 1.0  # seconds; the kubelet itself syncs mounted volumes about once a minute


class Fingerprint(NamedTuple):
    """What changes when a file's content is replaced, in place or by rename."""

    device: int
    inode: int
    size: int
    modified_ns: int
    changed_ns: int


def fingerprint(path: str | Path) -> Fingerprint | None:
    """The file a path leads to now (through symlinks); None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Fingerprint(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def named_files(config: Config) -> tuple[Path, ...]:
    """Every file the config names: secret, CA, certificate, key and token files."""
    models: list[BaseModel] = [config.server, *config.checks.values()]
    return tuple(dict.fromkeys(path for model in models for path in files_of(model)))


def files_of(model: BaseModel) -> Iterator[Path]:
    """The files one model (a check's options, the server section) names."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name.endswith("_file") and isinstance(value, Path):
            yield value
        elif isinstance(value, BaseModel):
            yield from files_of(value)


def changed(before: dict[str, Fingerprint | None], now: dict[str, Fingerprint | None]) -> list[str]:
    """Paths watched in both polls whose file is another one now (a new path is no change)."""
    return [path for path, seen in now.items() if path in before and before[path] != seen]


def snapshot(paths: Iterable[str]) -> dict[str, Fingerprint | None]:
    return {path: fingerprint(path) for path in paths}


class FileWatch:
    """A thread that polls `paths()` (None: watching is off) and, on a change,
    runs `reload(changed paths)` on the loop and waits for it before the next
    poll. The loop wakes only for a change, and a stat that hangs (a dead
    network mount) holds this thread, never the loop. `seen`: the files as
    they were when the running config was read."""

    def __init__(
        self,
        paths: Callable[[], list[str] | None],
        reload: Callable[[list[str]], Coroutine[Any, Any, object]],
        seen: dict[str, Fingerprint | None],
        loop: asyncio.AbstractEventLoop,
        interval: float = POLL_INTERVAL,
    ) -> None:
        self._paths, self._reload, self._seen, self._loop = paths, reload, dict(seen), loop
        self.interval = interval
        self._stopping = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="probed-watch", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()  # not joined: a thread stuck in a hung stat ends with the process

    def _run(self) -> None:
        before = self._seen
        while not self._stopping.wait(self.interval):
            listed = self._paths()
            if listed is None:
                before = {}  # turned on again later: a fresh look, no reload for what changed meanwhile
                continue
            now = snapshot(listed)
            moved = changed(before, now)
            before = now
            if not moved:
                continue
            try:
                asyncio.run_coroutine_threadsafe(self._reload(moved), self._loop).result()
            except Exception:  # the loop is closing, or a bug in reloading (that must not end the watch)
                if self._loop.is_closed():
                    return
                log.exception("config_watch_reload_failed")
            # Files the new config names: as they are now, just after it read them.
            before |= snapshot(path for path in self._paths() or () if path not in before)
