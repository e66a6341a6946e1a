"""probed with its real clients: a real Prometheus scraping it, a real HAProxy
taking an application out of rotation. Both use the example configs in
config/ as the README shows them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import app_in_thread, switch_app
from tests.support.net import free_port, poll
from tests.support.probed import serving, write_config
from tests.support.servers import binary

ROOT = Path(__file__).parent.parent


@pytest.fixture
def dependency() -> Iterator[tuple[str, dict[str, int]]]:
    """A real HTTP dependency the test can turn unhealthy: (url, state)."""
    app, state = switch_app()
    with app_in_thread(app) as url:
        yield url, state


@pytest.fixture
def probed_port(tmp_path: Path, dependency: tuple[str, dict[str, int]]) -> Iterator[int]:
    """probed serve with one critical http check on the dependency; its port."""
    url, _ = dependency
    port = free_port()
    config = write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{port}'}}\n"
        f"checks:\n  api: {{type: http, url: '{url}/health', interval: 500ms, timeout: 400ms}}\n",
    )
    with serving(config, until="ready"):
        yield port


def test_prometheus_scrapes_and_follows_a_flip(
    tmp_path: Path, probed_port: int, dependency: tuple[str, dict[str, int]]
) -> None:
    _, state = dependency
    config_dir = tmp_path / "prometheus"
    config_dir.mkdir()
    example = (ROOT / "config" / "prometheus" / "prometheus.yml").read_text()
    config = example.replace("127.0.0.1:8080", f"127.0.0.1:{probed_port}").replace("15s", "1s")
    (config_dir / "prometheus.yml").write_text(config)
    shutil.copy(ROOT / "config" / "prometheus" / "probed-rules.yml", config_dir)
    port = free_port()
    prometheus = subprocess.Popen(
        [
            binary("prometheus", "prometheus"),
            f"--config.file={config_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def value(query: str) -> str | None:
        _, body = poll(f"{api}/query?query={urllib.parse.quote(query)}", lambda status, _: status == 200)
        result = json.loads(body)["data"]["result"]
        return str(result[0]["value"][1]) if result else None

    try:
        # Prometheus takes a few seconds before its first scrape: poll, never sleep blindly.
        poll(f"{api}/query?query=probed_check_up", lambda _, body: '"check":"api"' in body, seconds=60)
        assert value('probed_check_up{check="api",type="http"}') == "1"
        assert value("probed_ready") == "1"
        assert value('probed_http_status_code{check="api"}') == "200"
        series = json.loads(poll(f"{api}/label/__name__/values", lambda status, _: status == 200)[1])["data"]
        assert {"probed_check_status", "probed_check_duration_seconds_bucket", "probed_build_info"} <= set(series)
        rules = json.loads(poll(f"{api}/rules", lambda status, _: status == 200)[1])["data"]["groups"]
        assert [group["name"] for group in rules] == ["probed", "probed-availability", "probed-availability-long"]

        state["status"] = 500
        poll(f"{api}/query?query=probed_ready", lambda _, body: '"0"]' in body, seconds=30)
        assert value('probed_check_up{check="api",type="http"}') == "0"
        assert value('probed_http_status_code{check="api"}') == "500"
        assert float(value('probed_check_failures_total{check="api",reason="unexpected"}') or 0) >= 1

        state["status"] = 200
        poll(f"{api}/query?query=probed_ready", lambda _, body: '"1"]' in body, seconds=30)
    finally:
        prometheus.send_signal(signal.SIGTERM)
        prometheus.communicate(timeout=20)


def test_haproxy_takes_the_app_out_of_rotation_and_back(
    probed_port: int, dependency: tuple[str, dict[str, int]]
) -> None:
    _, state = dependency
    app, _ = switch_app()
    with app_in_thread(app) as app_url:
        frontend = free_port()
        env = {
            **os.environ,
            "FRONTEND_ADDR": f"127.0.0.1:{frontend}",
            "APP_ADDR": app_url.removeprefix("http://"),
            "PROBED_HOST": "127.0.0.1",
            "PROBED_PORT": str(probed_port),
        }
        config = ROOT / "config" / "haproxy" / "haproxy.cfg"
        checked = subprocess.run(
            [binary("haproxy", "haproxy"), "-c", "-f", str(config)], env=env, capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        haproxy = subprocess.Popen(
            [binary("haproxy", "haproxy"), "-db", "-f", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        site = f"http://127.0.0.1:{frontend}/"
        try:
            _, body = poll(site, lambda status, _: status == 200)
            assert body == "app says hi"

            state["status"] = 500  # the app's critical dependency fails
            status, _ = poll(site, lambda status, _: status == 503, seconds=20)
            assert status == 503

            state["status"] = 200
            _, body = poll(site, lambda status, _: status == 200, seconds=20)
            assert body == "app says hi"
        finally:
            haproxy.send_signal(signal.SIGTERM)
            haproxy.wait(timeout=10)
