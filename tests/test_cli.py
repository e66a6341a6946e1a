"""The command line, run as a user runs it: a real process, real exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from probed import __version__
from tests.support.checks import NO_LEVELS_YAML
from tests.support.net import closed_port, free_port, http_get
from tests.support.plugins import raising_type
from tests.support.probed import PROBED, mixed_config, run_probed, serving, write_config


def test_version() -> None:
    done = run_probed("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"probed {__version__}"


def test_check_table_and_exit_0_when_only_non_critical_fail(tmp_path: Path) -> None:
    done = run_probed("check", "--config", mixed_config(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "TYPE", "STATUS", "TIME", "REASON", "OUTPUT"]
    assert lines[1].split()[:3] == ["tmp", "disk", "pass"]
    assert lines[2].split()[:4] == ["api", "http", "fail", "(non-critical)"]
    assert "refused" in lines[2]
    assert lines[-1] == "overall: warn"


def test_check_json_output(tmp_path: Path) -> None:
    done = run_probed("check", "--config", mixed_config(tmp_path), "--output", "json")
    assert done.returncode == 0
    report = json.loads(done.stdout)
    assert report["status"] == "warn"
    assert report["checks"]["api"][0]["reason"] == "refused"
    assert report["checks"]["tmp"][0]["status"] == "pass"


def test_check_exit_1_when_a_critical_check_fails(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"checks:\n  api: {{type: http, url: 'http://127.0.0.1:{closed_port()}/'}}\n")
    done = run_probed("check", "--config", config)
    assert done.returncode == 1
    assert "connection refused" in done.stdout


def test_check_selected_names_only(tmp_path: Path) -> None:
    done = run_probed("check", "tmp", "--config", mixed_config(tmp_path), "-o", "json")
    assert done.returncode == 0
    assert list(json.loads(done.stdout)["checks"]) == ["tmp"]


def test_check_unknown_name_is_a_usage_error(tmp_path: Path) -> None:
    done = run_probed("check", "nope", "--config", mixed_config(tmp_path))
    assert done.returncode == 2
    assert done.stderr == "probed: unknown check nope (configured: tmp, api)\n"


def test_config_from_environment_variable(tmp_path: Path) -> None:
    done = run_probed("check", "-o", "json", env={"PROBED_CONFIG": mixed_config(tmp_path)})
    assert set(json.loads(done.stdout)["checks"]) == {"tmp", "api"}


def test_builtin_default_config() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROBED_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "probed", "check", "-o", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode in (0, 1)  # the machine's real root disk decides
    assert list(json.loads(done.stdout)["checks"]) == ["root-disk"]


def test_validate_ok(tmp_path: Path) -> None:
    config = mixed_config(tmp_path)
    done = run_probed("validate", "--config", config)
    assert done.returncode == 0
    assert done.stdout == f"{config}: ok, 2 checks\n"


def test_validate_says_one_check_and_accepts_an_upper_case_log_level() -> None:
    done = run_probed("validate", "--log-level", "INFO")
    assert (done.returncode, done.stdout) == (0, "<built-in default>: ok, 1 check\n"), done.stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_check_says_so_in_one_line(tmp_path: Path, signum: signal.Signals, code: int) -> None:
    with socket.socket() as target:  # accepts, never answers: the check hangs until the signal
        target.bind(("127.0.0.1", 0))
        target.listen(8)
        port = target.getsockname()[1]
        config = write_config(
            tmp_path, f"checks:\n  hang: {{type: http, url: 'http://127.0.0.1:{port}/', timeout: 50s, interval: 60s}}\n"
        )
        check = subprocess.Popen(
            [sys.executable, "-m", "probed", "check", "--config", config],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        target.settimeout(30)
        connection, _ = target.accept()  # the check is running: its request has connected
        check.send_signal(signum)
        out, err = check.communicate(timeout=30)
        connection.close()
    assert check.returncode == code
    assert err == f"probed: interrupted by {signum.name}\n"
    assert out == ""


def test_validate_warns_of_a_schedule_that_cannot_be_kept(tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    checks = "".join(f"  c{i}: {{type: disk, path: /, interval: 1s, timeout: 900ms}}\n" for i in range(3))
    config.write_text(f"scheduler: {{max_concurrency: 2}}\nchecks:\n{checks}")
    done = run_probed("validate", "--config", str(config))
    assert done.returncode == 0  # valid: it may well be fine while targets answer
    assert done.stdout == f"{config}: ok, 3 checks\n"
    assert done.stderr == (
        f"{config}: warning: scheduler.max_concurrency 2 is below the 3 runs at once the checks need when "
        "their targets hang (the sum of timeout / interval): runs would start late\n"
    )


def test_missing_config_file_is_one_line_exit_2(tmp_path: Path) -> None:
    done = run_probed("check", "--config", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert done.stderr == f"{tmp_path / 'nope.yaml'}: cannot read config file: No such file or directory\n"


def test_usage_error_is_one_line_exit_2() -> None:
    done = run_probed("check", "--output", "xml")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "invalid choice: 'xml'" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_answers_then_stops_on_sigterm_within_two_seconds(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{port}'}}\n"
        f"checks:\n  tmp: {{type: disk, path: '{tmp_path}', interval: 1s, timeout: 500ms, {NO_LEVELS_YAML}}}\n",
    )
    with serving(config, until="ready") as served:
        assert json.loads(http_get(f"{served.base}/health/ready")[1])["status"] == "pass"
        started = time.monotonic()
        code = served.stop()
        assert time.monotonic() - started < 2.0
        assert code == 0
    events = [event["event"] for event in served.events()]
    assert events[0] == "probed_started"
    assert "check_status_changed" in events
    assert events[-3:] == ["signal_received", "probed_stopping", "probed_stopped"]
    assert served.err == ""


def test_serve_on_a_taken_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(
            tmp_path, f"server: {{listen: '127.0.0.1:{port}'}}\nchecks:\n  r: {{type: disk, path: /}}\n"
        )
        done = run_probed("serve", "--config", config, timeout=30)
    assert done.returncode == 1
    assert done.stderr == f"probed: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_serve_on_a_privileged_port_without_the_right_says_so(tmp_path: Path) -> None:
    """Without CAP_NET_BIND_SERVICE (dropped by setpriv when the tests run as root)."""
    first = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if first == 0:
        pytest.skip("every port is unprivileged on this machine")
    port = first - 1
    config = write_config(tmp_path, f"server: {{listen: '127.0.0.1:{port}'}}\nchecks:\n  r: {{type: disk, path: /}}\n")
    unprivileged = ["setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service"]
    done = subprocess.run(
        [*(unprivileged if os.geteuid() == 0 else []), *PROBED, "serve", "--config", config],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"probed: cannot listen on 127.0.0.1:{port}: Permission denied"
        " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)\n",
    )


def test_serve_on_a_host_that_does_not_resolve_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "server: {listen: 'no-such-host.invalid:8080'}\nchecks:\n  r: {type: disk, path: /}\n"
    )
    done = run_probed("serve", "--config", config, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("probed: cannot listen on no-such-host.invalid:8080: "), done.stderr
    assert done.stderr.count("\n") == 1 and "Unknown error" not in done.stderr  # a gaierror's errno is no errno


@pytest.mark.parametrize("command", ["serve", "check"])
def test_a_check_that_cannot_be_made_is_one_line_not_a_listening_problem(tmp_path: Path, command: str) -> None:
    """An OSError from a check type's constructor is the check's problem, not the socket's."""
    site = raising_type(tmp_path, "PermissionError")
    password = "cli-secret-9c2a"
    config = write_config(
        tmp_path,
        f"server: {{listen: '127.0.0.1:{free_port()}'}}\n"
        f"checks:\n  b: {{type: exploding, dsn: 'postgresql://probe:{password}@db.example/app'}}\n",
    )
    done = run_probed(command, "--config", config, env={"PYTHONPATH": str(site)})
    assert (done.returncode, done.stderr) == (
        2,
        "probed: checks.b: cannot be made: PermissionError: constructor exploded on postgresql://probe:***@db.example/app\n",
    )


def test_probe_exit_codes(tmp_path: Path) -> None:
    from tests.support.apps import app_in_thread, target_app

    with app_in_thread(target_app()) as url:
        assert run_probed("probe", f"{url}/ok").returncode == 0
        assert run_probed("probe", f"{url}/redirect").returncode == 0  # 3xx counts as up, like kubelet
        failed = run_probed("probe", f"{url}/error")
        assert failed.returncode == 1 and failed.stderr == f"probed: {url}/error: answered 500\n"
        slow = run_probed("probe", f"{url}/slow?seconds=5", "--timeout", "0.3")
        assert slow.returncode == 1 and "timed out" in slow.stderr
    refused = run_probed("probe", f"http://127.0.0.1:{closed_port()}/")
    assert refused.returncode == 1 and refused.stderr.endswith("Connection refused\n")
    assert run_probed("probe", "localhost:8080").returncode == 2


def test_probe_without_url_follows_the_listen_address(tmp_path: Path) -> None:
    """A container told to listen elsewhere stays healthy: the default URL is
    /health/live where `probed serve` listens, a wildcard bind reached through loopback."""
    from aiohttp import web

    from tests.support.apps import app_in_thread

    async def live(request: web.Request) -> web.Response:
        return web.Response(text="live")

    app = web.Application()
    app.router.add_get("/health/live", live)
    config = tmp_path / "probed.yaml"
    with app_in_thread(app) as url:
        port = url.rpartition(":")[2]
        assert run_probed("probe", env={"PROBED_LISTEN": f"0.0.0.0:{port}"}).returncode == 0
        config.write_text(f"server:\n  listen: ':{port}'\nchecks: {{}}\n")
        assert run_probed("probe", "--config", str(config)).returncode == 0
        config.write_text("server:\n  listen: ${PROBED_LISTEN:-0.0.0.0:8080}\n")
        env = {"PROBED_CONFIG": str(config), "PROBED_LISTEN": f"127.0.0.1:{port}"}
        assert run_probed("probe", env=env).returncode == 0
        # the config's listen address wins over PROBED_LISTEN, as it does for serve
        config.write_text(f"server:\n  listen: 127.0.0.1:{closed_port()}\n")
        refused = run_probed("probe", env=env)
        assert refused.returncode == 1 and refused.stderr.endswith("Connection refused\n")


def test_probe_of_a_server_that_is_not_http(tmp_path: Path) -> None:
    """probe reads the status line itself: what is not one is a failure, said in one line."""
    import socket
    import threading

    for reply, message in (
        (b"", "closed the connection without an HTTP answer"),
        (b"SSH-2.0\r\n", "answered, but not in HTTP"),
    ):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()

            def answer(listener: socket.socket = listener, reply: bytes = reply) -> None:
                connection, _ = listener.accept()
                with connection:
                    connection.recv(1024)
                    connection.sendall(reply)

            thread = threading.Thread(target=answer)
            thread.start()
            url = f"http://127.0.0.1:{listener.getsockname()[1]}/health/live"
            done = run_probed("probe", url)
            thread.join(10)
        assert done.returncode == 1 and done.stderr == f"probed: {url}: {message}\n"


def test_probe_reaches_a_wildcard_bind_through_loopback() -> None:
    from probed.probe import loopback_host_port

    assert loopback_host_port("0.0.0.0:8080") == "127.0.0.1:8080"
    assert loopback_host_port(":9000") == "127.0.0.1:9000"
    assert loopback_host_port("[::]:9000") == "[::1]:9000"
    assert loopback_host_port("[fd00::5]:80") == "[fd00::5]:80"
    assert loopback_host_port("probed.internal:8080") == "probed.internal:8080"


def test_probe_without_url_and_an_unusable_config_is_a_usage_error(tmp_path: Path) -> None:
    missing = run_probed("probe", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"probed: {tmp_path / 'nope.yaml'}: cannot read the listen address")
    config = tmp_path / "probed.yaml"
    config.write_text("server:\n  listen: ${NO_SUCH_VARIABLE_HERE}\n")
    unset = run_probed("probe", "--config", str(config))
    assert unset.returncode == 2
    assert unset.stderr == f"probed: {config}: server.listen: environment variable NO_SUCH_VARIABLE_HERE is not set\n"
