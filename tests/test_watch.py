"""Reloading when files change (probed/watch.py): real `probed serve`
processes, real files changed the ways the kubelet, an operator and an
editor change them, and real servers whose credentials rotate."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from probed.config import load_config
from probed.daemon import Daemon
from probed.model import Fleet
from tests.support.certificates import issue_certificate
from tests.support.checks import disk_yaml
from tests.support.daemon import wait_for_runs
from tests.support.net import closed_port, free_port, port_open, wait_until
from tests.support.probed import Served, serving
from tests.support.servers.redis import RedisServer


class Mount:
    """A directory as the kubelet writes a ConfigMap or Secret volume: each
    name is a symlink through `..data` to a timestamped directory, and an
    update writes a new directory and swaps `..data` to it with one rename
    (kubernetes/pkg/volume/util/atomic_writer.go)."""

    def __init__(self, directory: Path, files: dict[str, str]) -> None:
        self.directory = directory
        directory.mkdir(parents=True)
        self.update(files)

    def path(self, name: str) -> Path:
        return self.directory / name

    def update(self, files: dict[str, str]) -> None:
        data = self.directory / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        (self.directory / stamp).mkdir()
        for name, text in files.items():
            (self.directory / stamp / name).write_text(text)
        os.symlink(stamp, self.directory / "..data_tmp")
        os.rename(self.directory / "..data_tmp", data)  # the atomic swap
        for name in files:
            if not self.path(name).is_symlink():
                os.symlink(f"..data/{name}", self.path(name))
        if old is not None:
            shutil.rmtree(self.directory / old)


@contextmanager
def watching(config: Path) -> Iterator[Served]:
    """`probed serve` on a config it watches; no traceback in its log."""
    with serving(config) as served:
        yield served
    assert "Traceback" not in served.out + served.err


def listen(port: int, extra: str = "") -> str:
    return f"server: {{listen: '127.0.0.1:{port}'{extra}}}\n"


def entry(body: str, name: str) -> dict[str, Any]:
    """A check's entry in a health+json answer."""
    return dict(json.loads(body)["checks"][name][0])


def check_status(body: str) -> str:
    return str(json.loads(body)["status"])


def test_a_configmap_update_reloads_and_a_broken_one_changes_nothing(tmp_path: Path) -> None:
    port = free_port()
    mount = Mount(tmp_path / "config", {"probed.yaml": listen(port) + f"checks:\n  a: {disk_yaml(tmp_path)}\n"})
    with watching(mount.path("probed.yaml")) as served:
        served.until("/health/ready", lambda status, _: status == 200)
        runs = len(json.loads(served.get("/health/checks/a/history")[1])["runs"])

        broken = listen(port) + "checks:\n  a: {type: disk, path: /, interval: 1s, timeout: 5s}\n"
        mount.update({"probed.yaml": broken})
        served.until("/metrics", lambda _, body: "probed_config_last_load_success 0.0" in body)
        assert served.get("/health/ready")[0] == 200  # the last good config runs on

        mount.update(
            {"probed.yaml": listen(port) + f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path)}\n"}
        )
        body = served.until("/health", lambda _, body: '"b"' in body and body.count('"time"') == 2)
        assert check_status(body) == "pass"
        history = json.loads(served.get("/health/checks/a/history")[1])["runs"]
        assert len(history) > runs  # a kept its history: unchanged checks carry on
    [failed] = served.events("config_reload_failed")
    assert failed["problems"] == [
        f"{mount.path('probed.yaml')}:3: checks.a: timeout (5s) must be shorter than interval (1s)"
    ]
    assert [event["files"] for event in served.events("config_files_changed")] == [[str(mount.path("probed.yaml"))]] * 2
    assert len(served.events("config_reloaded")) == 1


@pytest.fixture
def redis_auth(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", password="first-password")
    server.start()
    yield server
    server.stop()


def test_a_rotated_secret_is_used_by_the_next_run_and_the_check_keeps_its_history(
    tmp_path: Path, redis_auth: RedisServer
) -> None:
    port = free_port()
    secret = Mount(tmp_path / "secret", {"password": "first-password\n"})
    config = tmp_path / "probed.yaml"
    cache = f"{{type: redis, url: 'redis://127.0.0.1:{redis_auth.port}/0', password_file: '{secret.path('password')}'"
    config.write_text(listen(port) + f"checks:\n  cache: {cache}, interval: 1s, timeout: 900ms}}\n")
    with watching(config) as served:
        served.until("/health/checks/cache", lambda status, _: status == 200)
        redis.Redis(port=redis_auth.port, password="first-password").config_set("requirepass", "second-password")
        served.until("/health/checks/cache", lambda status, _: status == 503)  # the old password is refused

        secret.update({"password": "second-password\n"})
        served.until("/health/checks/cache", lambda status, _: status == 200)
        runs = json.loads(served.get("/health/checks/cache/history")[1])["runs"]
        assert {"pass", "fail"} <= {run["status"] for run in runs}  # the history from before the rotation
    [reloaded] = served.events("config_reloaded")
    assert reloaded["renewed"] == ["cache"]
    assert served.events("config_files_changed")[0]["files"] == [str(secret.path("password"))]
    assert "first-password" not in served.out + served.err and "second-password" not in served.out + served.err


def test_a_token_file_deleted_then_recreated_changes_the_token(tmp_path: Path) -> None:
    port = free_port()
    token = tmp_path / "token"
    token.write_text("old-token-value\n")
    config = tmp_path / "probed.yaml"
    config.write_text(
        listen(port, f", details: token, token_file: '{token}'") + f"checks:\n  a: {disk_yaml(tmp_path)}\n"
    )
    with watching(config) as served:
        served.until("/health", lambda status, _: status == 200, token="old-token-value")
        token.unlink()
        served.until("/metrics", lambda _, body: "probed_config_last_load_success 0.0" in body)
        assert served.get("/health", token="old-token-value")[0] == 200  # the last good config's token

        token.write_text("new-token-value\n")
        served.until("/health", lambda status, _: status == 200, token="new-token-value")
        assert served.get("/health", token="old-token-value")[0] == 401
    [failed] = served.events("config_reload_failed")
    assert failed["problems"] == [f"{config}:1: server.token_file: cannot read {token}: No such file or directory"]
    assert "old-token-value" not in served.out + served.err and "new-token-value" not in served.out + served.err


def write_then_rename(path: Path, text: str) -> None:
    """As vim and most editors save: a new file beside it, renamed over it."""
    temporary = path.with_name(f".{path.name}.swp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_an_editors_save_applies_details_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    port, other = free_port(), free_port()
    config = tmp_path / "probed.yaml"
    checks = f"checks:\n  a: {disk_yaml(tmp_path)}\n"
    config.write_text(listen(port) + checks)
    with watching(config) as served:
        served.until("/health/ready", lambda status, _: status == 200)
        assert served.get("/health", token="anything")[0] == 200  # details: public looks at no token
        write_then_rename(config, listen(other, ", details: token, token: a-token-for-details") + checks)
        served.until("/health", lambda status, _: status == 401, token="anything")
        assert served.get("/health", token="a-token-for-details")[0] == 200
        assert not port_open(other)  # listening moves on restart only
    [reloaded] = served.events("config_reloaded")
    assert reloaded["level"] == "warning" and reloaded["needs_restart"] == ["server.listen"]


def test_watch_files_false_leaves_reloading_to_sighup(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "probed.yaml"
    header = listen(port, ", watch_files: false")
    config.write_text(header + f"checks:\n  a: {disk_yaml(tmp_path)}\n")
    with watching(config) as served:
        served.until("/health/ready", lambda status, _: status == 200)
        write_then_rename(config, header + f"checks:\n  a: {disk_yaml(tmp_path)}\n  b: {disk_yaml(tmp_path)}\n")
        time.sleep(3)  # three polls' worth: a watching probed would have reloaded
        assert '"b"' not in served.get("/health")[1]
        served.signal(signal.SIGHUP)
        served.until("/health", lambda _, body: '"b"' in body)
    assert served.events("config_files_changed") == []


def openssl_server(certificate: Path, key: Path, port: int) -> subprocess.Popen[bytes]:
    """`openssl s_server -www`: HTTPS that answers GET / with 200."""
    args = ["openssl", "s_server", "-quiet", "-www", "-accept", str(port), "-cert", str(certificate)]
    return subprocess.Popen([*args, "-key", str(key)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_new_ca_bundle_renews_the_check_whose_options_did_not_change(tmp_path: Path) -> None:
    old_ca = issue_certificate(tmp_path, "old CA", ca=True)
    new_ca = issue_certificate(tmp_path, "new CA", ca=True)
    server_certificate = issue_certificate(tmp_path, "localhost", issuer=new_ca)
    target = free_port()
    server = openssl_server(server_certificate.cert_file, server_certificate.key_file, target)
    port = free_port()
    try:
        wait_until(lambda: port_open(target), "openssl s_server")
        bundle = Mount(tmp_path / "ca", {"ca.crt": old_ca.cert_file.read_text()})
        config = tmp_path / "probed.yaml"
        web = f"{{type: http, url: 'https://localhost:{target}/', ca_file: '{bundle.path('ca.crt')}'"
        config.write_text(listen(port) + f"checks:\n  web: {web}, interval: 1s, timeout: 900ms}}\n")
        with watching(config) as served:
            body = served.until("/health/checks/web", lambda status, body: status == 503 and '"time"' in body)
            assert entry(body, "web")["reason"] == "tls"  # the server's CA is not the bundle's
            bundle.update({"ca.crt": new_ca.cert_file.read_text()})
            served.until("/health/checks/web", lambda status, _: status == 200)
    finally:
        server.terminate()
        server.wait(10)
    [reloaded] = served.events("config_reloaded")
    assert reloaded["renewed"] == ["web"]


async def test_peers_take_effect_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "probed.yaml"
    shared = f"{{type: tcp, host: 127.0.0.1, port: {closed_port()}, scope: shared, interval: 1s, timeout: 500ms}}"
    path.write_text(f"checks:\n  db: {shared}\n")
    daemon = Daemon(load_config(str(path)), str(path), initial_offset=lambda check: 0.0)

    def fleet() -> Fleet | None:
        return daemon.store.checks["db"].fleet

    await daemon.start()
    try:
        await wait_for_runs(daemon, ["db"])
        before = daemon.peers
        assert before is None and fleet() is Fleet.NO_PEERS
        path.write_text(f"peers: {{static: ['127.0.0.1:{closed_port()}']}}\nchecks:\n  db: {shared}\n")
        assert await daemon.reload() is True
        assert daemon.peers is not before
        for _ in range(100):  # the new peers ask, find nobody, and say so
            if fleet() is Fleet.ALONE:
                break
            await asyncio.sleep(0.05)
        assert fleet() is Fleet.ALONE
        assert daemon.peer_requests()["unreachable"] >= 1
    finally:
        await daemon.stop()
