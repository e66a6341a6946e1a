"""A reload reads its config in a child process (probed/config_apart.py), and
a reload of what is already loaded changes nothing."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import pytest

from probed.config import ConfigError, load_config
from probed.config_apart import load_config_apart
from probed.daemon import Daemon
from probed.logs import configure_logging
from tests.support.checks import disk_yaml
from tests.support.daemon import wait_for_runs

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "probed.example.yaml"


def readers_of(path: Path) -> list[int]:
    """Processes reading `path` with probed.config_apart, from /proc."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"probed.config_apart" in command and str(path).encode() in command:
            found.append(int(pid))
    return found


async def test_the_child_reads_every_type_as_the_daemon_would(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENTS_TOKEN", "s3cret")  # the child has the daemon's environment
    expected = load_config(str(EXAMPLE))
    got = await load_config_apart(str(EXAMPLE))
    assert got == expected and dict(got.checks) == dict(expected.checks) and got.digest == expected.digest
    assert len(got.checks) >= 20 and {type(options) for options in got.checks.values()} == {
        type(options) for options in expected.checks.values()
    }
    tokens = [getattr(options, "bearer_token", None) for options in got.checks.values()]
    assert [token.get_secret_value() for token in tokens if token is not None] == ["s3cret"]


async def test_problems_come_back_one_line_each(tmp_path: Path) -> None:
    path = tmp_path / "probed.yaml"
    path.write_text("checks:\n  a: {type: http}\nextra: 1\n")
    with pytest.raises(ConfigError) as raised:
        await load_config_apart(str(path))
    assert raised.value.problems == [
        f"{path}:2: checks.a.url: required key is missing",
        f"{path}:3: extra: unknown key (expected server, scheduler, defaults, groups, peers, checks)",
    ]
    with pytest.raises(ConfigError) as missing:
        await load_config_apart(str(tmp_path / "absent.yaml"))
    assert missing.value.problems == [f"{tmp_path / 'absent.yaml'}: cannot read config file: No such file or directory"]


async def test_a_reader_that_hangs_is_given_up_and_killed(tmp_path: Path) -> None:
    path = tmp_path / "probed.yaml"
    os.mkfifo(path)  # no writer ever: the reader's open() blocks, as on a dead mount
    with pytest.raises(ConfigError) as raised:
        await load_config_apart(str(path), timeout=1.0)
    assert raised.value.problems == [f"{path}: reading the config file took over 1 s (a hung filesystem?)"]
    assert readers_of(path) == []


async def test_without_a_child_the_file_is_read_in_a_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "probed.yaml"
    path.write_text(f"checks:\n  a: {disk_yaml(tmp_path)}\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    log = io.StringIO()  # its own: another test in this worker may have configured logging elsewhere
    configure_logging("json", "info", log)
    config = await load_config_apart(str(path))
    assert list(config.checks) == ["a"]
    assert "config_read_in_thread" in log.getvalue()


async def test_a_reload_of_what_is_loaded_changes_nothing(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("one\n")
    path = tmp_path / "probed.yaml"
    path.write_text(
        f"checks:\n  a: {disk_yaml(tmp_path)}\n"
        f"  b: {{type: http, url: 'http://127.0.0.1:9/', bearer_token_file: {secret}, interval: 1h}}\n"
    )
    daemon = Daemon(load_config(str(path)), str(path), initial_offset=lambda check: 0.0)
    await daemon.start()
    try:
        await wait_for_runs(daemon, ["a", "b"])
        checks, store, scheduler = daemon.checks, daemon.store, daemon.scheduler
        assert await daemon.reload() is True
        # Nothing rebuilt, no run cut short: the same checks, store and schedule.
        assert (daemon.checks, daemon.store, daemon.scheduler) == (checks, store, scheduler)
        assert daemon.checks is checks and daemon.store is store and daemon.scheduler is scheduler

        secret.write_text("two\n")  # a named file changed: b is renewed, a kept
        assert await daemon.reload() is True
        assert daemon.store is not store and daemon.checks[0] is checks[0] and daemon.checks[1] is not checks[1]
        assert daemon.checks[1].options.bearer_token is not None
        assert daemon.checks[1].options.bearer_token.get_secret_value() == "two"

        path.write_text(path.read_text() + f"  c: {disk_yaml(tmp_path)}\n")
        assert await daemon.reload() is True and list(daemon.store.checks) == ["a", "b", "c"]
    finally:
        await daemon.stop()
        await asyncio.sleep(0)
