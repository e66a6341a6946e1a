"""Reloading the config (SIGHUP): a bad file changes nothing, a good one keeps
what did not change."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
import weakref
from pathlib import Path

from probed.config import load_config
from probed.daemon import Daemon
from probed.model import Status
from tests.support.checks import disk_yaml
from tests.support.daemon import wait_for_runs
from tests.support.net import free_port, poll
from tests.support.plugins import raising_type
from tests.support.probed import serving


async def test_bad_config_changes_nothing_good_config_keeps_unchanged_checks(tmp_path: Path) -> None:
    path = tmp_path / "probed.yaml"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path)}\n")
    daemon = Daemon(load_config(str(path)), str(path), initial_offset=lambda check: 0.0)
    await daemon.start()
    try:
        await wait_for_runs(daemon, ["a", "b"])
        store, check_a, state_a = daemon.store, daemon.checks[0], daemon.store.checks["a"]

        path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  c: {{type: disk, pathh: /}}\n")
        assert (await daemon.reload(), daemon.config_load.success) == (False, False)
        assert daemon.store is store and set(store.checks) == {"a", "b"}  # the last good config runs on
        assert daemon.alive()

        path.write_text(
            f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path, critical='false')}\n"
            f"  c: {disk_yaml(tmp_path)}\n"
        )
        assert await daemon.reload() is True
        assert daemon.config_load.success is True
        assert list(daemon.store.checks) == ["a", "b", "c"]
        assert daemon.checks[0] is check_a and daemon.store.checks["a"] is state_a  # unchanged: history kept
        assert daemon.store.checks["a"].effective is Status.PASS  # never pending again
        assert daemon.store.checks["b"].critical is False  # changed: new options
        # c has not run yet: readiness is honest about it; startup passed before the reload: it stays passed
        assert (daemon.store.ready, daemon.store.group_status("startup").passing) == (False, True)
        await wait_for_runs(daemon, ["b", "c"])
        assert daemon.store.ready is True
        runs_before = sum(daemon.store.checks["a"].runs.values())
        await asyncio.sleep(1.2)
        assert sum(daemon.store.checks["a"].runs.values()) > runs_before  # a kept its schedule
    finally:
        await daemon.stop()


def test_sighup_reloads_a_running_daemon(tmp_path: Path) -> None:
    port = free_port()
    path = tmp_path / "probed.yaml"
    header = f"server: {{listen: '127.0.0.1:{port}', watch_files: false}}\n"  # SIGHUP only
    path.write_text(header + f"checks:\n  a: {disk_yaml(tmp_path)}\n")
    with serving(path, until="ready") as served:
        base = served.base
        # A YAML tag used to crash the reload with a traceback quoting the line.
        path.write_text(
            header + "checks:\n  a: {type: disk, path: /, interval: 1s, timeout: 5s}\n"
            "  b: {type: http, url: !vault vault-secret-ref}\n"
        )
        served.signal(signal.SIGHUP)
        poll(f"{base}/metrics", lambda _, body: "probed_config_last_load_success 0.0" in body)
        assert poll(f"{base}/health/ready", lambda *_: True)[0] == 200  # still serving the last good config

        path.write_text(header + f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path)}\n")
        served.signal(signal.SIGHUP)
        _, body = poll(f"{base}/health", lambda _, body: '"b"' in body and body.count('"time"') == 2)
        assert json.loads(body)["status"] == "pass"
        assert "probed_config_last_load_success 1.0" in poll(f"{base}/metrics", lambda *_: True)[1]
    out, err, events = served.out, served.err, served.events()
    [failed] = [e for e in events if e["event"] == "config_reload_failed"]
    assert failed["problems"] == [
        f"{path}:3: checks.a: timeout (5s) must be shorter than interval (1s)",
        f"{path}:4: checks.b.url: unsupported YAML tag '!vault' "
        "(write plain values; secrets come from ${VAR} or *_file)",
    ]
    assert failed["file"] == str(path) and failed["kept"].startswith("the config loaded at 20")
    assert "vault-secret-ref" not in out + err and "Traceback" not in out + err
    assert [e["event"] for e in events].count("config_reloaded") == 1


def test_a_reload_whose_check_cannot_be_made_fails_and_keeps_the_old_checks(tmp_path: Path) -> None:
    """A check type whose constructor raises (a third-party type's bug) is not a
    ConfigError: the file is valid. The reload must still say it failed and
    keep every old check running, with no traceback and no secret."""
    site = raising_type(tmp_path, "RuntimeError")
    password = "reload-secret-4d8e"
    path = tmp_path / "probed.yaml"
    header = f"server: {{listen: '127.0.0.1:{free_port()}', watch_files: false}}\n"  # SIGHUP only
    path.write_text(header + f"checks:\n  a: {disk_yaml(tmp_path)}\n")
    with serving(path, until="ready", env={"PYTHONPATH": str(site)}) as served:
        path.write_text(
            header + f"checks:\n  a: {disk_yaml(tmp_path)}\n"
            f"  b: {{type: exploding, dsn: 'postgresql://probe:{password}@db.example:5432/app'}}\n"
        )
        served.signal(signal.SIGHUP)
        served.until("/metrics", lambda _, body: "probed_config_last_load_success 0.0" in body)
        runs = served.until("/health", lambda *_: True)
        assert list(json.loads(runs)["checks"]) == ["a"]  # the old checks, and only them
        first = json.loads(runs)["checks"]["a"][0]["time"]
        served.until("/health", lambda _, body: json.loads(body)["checks"]["a"][0]["time"] != first)  # a runs on
        assert served.get("/health/live")[0] == 200 and served.get("/health/ready")[0] == 200

        path.write_text(header + f"checks:\n  a: {disk_yaml(tmp_path)}\n  c: {disk_yaml(tmp_path)}\n")
        served.signal(signal.SIGHUP)  # the next good file takes effect as ever
        served.until("/health", lambda _, body: '"c"' in body)
        assert "probed_config_last_load_success 1.0" in served.get("/metrics")[1]
    out, err = served.out, served.err
    [failed] = served.events("config_reload_failed")
    assert failed["problems"] == [
        "checks.b: cannot be made: RuntimeError: constructor exploded on postgresql://probe:***@db.example:5432/app"
    ]
    assert len(served.events("config_reloaded")) == 1
    assert password not in out + err and "Traceback" not in out + err


async def test_a_reload_leaves_nothing_behind(tmp_path: Path) -> None:
    # Whatever a reload replaces (the store, the scheduler, the config, the
    # checks whose options changed, with their client sessions) must be
    # collectable once the reload is done: a soak grew by megabytes a reload.
    path = tmp_path / "probed.yaml"
    web = "{type: http, url: 'http://127.0.0.1:9/%s', interval: 1s, timeout: 500ms}"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  web: {web % 'one'}\n")
    daemon = Daemon(load_config(str(path)), str(path), initial_offset=lambda check: 0.0)
    await daemon.start()
    try:
        await wait_for_runs(daemon, ["a", "web"])
        replaced = [daemon.store, daemon.scheduler, daemon.config, daemon.checks[1]]
        refs = [weakref.ref(thing) for thing in replaced]
        del replaced
        path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n  web: {web % 'two'}\n")
        assert await daemon.reload() is True
        await wait_for_runs(daemon, ["web"])
        gc.collect()
        assert [ref() for ref in refs] == [None, None, None, None]
    finally:
        await daemon.stop()


async def test_the_loop_keeps_running_while_a_reload_reads_the_file(tmp_path: Path) -> None:
    # The config file is a FIFO whose writer waits for a sign of life from the
    # event loop: a reload that read the file on the loop would never give one.
    path = tmp_path / "probed.yaml"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n")
    daemon = Daemon(load_config(str(path)), str(path))
    path.unlink()
    os.mkfifo(path)
    loop_ran, seen = threading.Event(), []

    def writer() -> None:
        seen.append(loop_ran.wait(10))  # False: the loop stayed blocked in the reload
        with open(path, "w") as fifo:
            fifo.write(f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path)}\n")

    thread = threading.Thread(target=writer)
    thread.start()
    await daemon.start()
    try:
        reload = asyncio.ensure_future(daemon.reload())
        await asyncio.sleep(0.05)
        loop_ran.set()
        assert await reload is True and list(daemon.store.checks) == ["a", "b"]
        thread.join(10)
        assert seen == [True]
    finally:
        await daemon.stop()
