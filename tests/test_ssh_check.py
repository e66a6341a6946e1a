"""ssh check against a real OpenSSH sshd (its own config, host and user keys, port and accounts) and real faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from probed.config import ConfigError, parse_config
from probed.model import Reason, Status
from probed.runner import run_once
from tests.support.checks import check_from, run_check, sockets_after_failing_runs
from tests.support.faults import answering_listener, silent_listener
from tests.support.net import closed_port
from tests.support.servers import PASSWORD
from tests.support.servers.sshd import KEY_PASSPHRASE, SSH_USER, SshdServer

pytest.importorskip("asyncssh", reason="the ssh extra is not installed: pip install 'probed[ssh]'")


def login(server: SshdServer, **more: Any) -> dict[str, Any]:
    """A password login, the host key pinned by known_hosts."""
    return {
        "type": "ssh",
        "host": "127.0.0.1",
        "port": server.port,
        "username": SSH_USER,
        "password": PASSWORD,
        "known_hosts": str(server.known_hosts()),
        **more,
    }


async def test_banner_without_a_login(sshd: SshdServer) -> None:
    result = await run_check({"type": "ssh", "host": "127.0.0.1", "port": sshd.port, "expect_banner": "OpenSSH_"})
    assert result.status is Status.PASS, result.output
    assert result.output.startswith(f"ssh://127.0.0.1:{sshd.port}: SSH-2.0-OpenSSH_")
    assert result.observed["protocol_version"].value == "2.0"
    assert str(result.observed["server_software"].value).startswith("OpenSSH_")
    assert next(iter(result.observed)) == "banner_time"
    mismatch = await run_check(
        {"type": "ssh", "host": "127.0.0.1", "port": sshd.port, "expect_banner": "^SSH-2.0-dropbear"}
    )
    assert mismatch.status is Status.FAIL and mismatch.reason is Reason.UNEXPECTED
    assert "does not match /^SSH-2.0-dropbear/" in mismatch.output


async def test_password_login(sshd: SshdServer, tmp_path: Path) -> None:
    secret = tmp_path / "ssh-password"
    secret.write_text(PASSWORD + "\n")
    options = login(sshd)
    del options["password"]
    result = await run_check({**options, "password_file": str(secret)})
    assert result.status is Status.PASS, result.output
    assert result.output == f"ssh://127.0.0.1:{sshd.port}: logged in as {SSH_USER}"
    assert next(iter(result.observed)) == "login_time"
    assert result.observed["protocol_version"].value == "2.0"


async def test_key_logins_and_host_key_forms(sshd: SshdServer) -> None:
    base = {"type": "ssh", "host": "127.0.0.1", "port": sshd.port, "username": SSH_USER}
    by_key = await run_check({**base, "key_file": str(sshd.user_key), "host_key": sshd.host_key_line()})
    by_fingerprint = await run_check({**base, "key_file": str(sshd.user_key), "host_key": sshd.fingerprint()})
    encrypted = {**base, "key_file": str(sshd.encrypted_user_key), "insecure_ignore_host_key": True}
    with_passphrase = await run_check({**encrypted, "passphrase": KEY_PASSPHRASE})
    wrong_passphrase = await run_check({**encrypted, "passphrase": "not-the-passphrase"})
    assert by_key.status is Status.PASS, by_key.output
    assert by_fingerprint.status is Status.PASS, by_fingerprint.output
    assert with_passphrase.status is Status.PASS, with_passphrase.output
    assert wrong_passphrase.status is Status.FAIL, wrong_passphrase.output
    assert wrong_passphrase.output.startswith(f"ssh://127.0.0.1:{sshd.port}: key_file {sshd.encrypted_user_key}: ")
    assert "not-the-passphrase" not in wrong_passphrase.output


async def test_unknown_host_key_is_auth_and_no_password_is_sent(sshd: SshdServer) -> None:
    logged_before = len(sshd.log())  # the shared server's log holds other tests' logins too
    other = sshd.other_key
    wrong_file = await run_check(login(sshd, known_hosts=str(sshd.known_hosts(other)), password="never-sent-123"))
    options = login(sshd)
    del options["known_hosts"]
    wrong_key = await run_check({**options, "host_key": sshd.host_key_line(other)})
    wrong_fingerprint = await run_check({**options, "host_key": sshd.fingerprint(other)})
    for result in (wrong_file, wrong_key, wrong_fingerprint):
        assert result.status is Status.FAIL and result.reason is Reason.AUTH, result.output
        assert f"host key not trusted: the server's key (ssh-ed25519 {sshd.fingerprint()})" in result.output
    assert wrong_file.output.endswith(f"is not in {sshd.known_hosts(other)}")
    assert wrong_key.output.endswith("is not the configured host_key")
    assert "never-sent-123" not in sshd.log()
    logged = sshd.log()[logged_before:]
    assert f"Failed password for {SSH_USER}" not in logged and "Accepted" not in logged  # no login was tried


async def test_wrong_password_is_auth(sshd: SshdServer) -> None:
    result = await run_check(login(sshd, password="wrong-password-1"))
    assert result.status is Status.FAIL and result.reason is Reason.AUTH
    assert result.output.startswith(f"ssh://127.0.0.1:{sshd.port}: login as {SSH_USER} refused")
    assert "wrong-password-1" not in result.output


@pytest.mark.parametrize(
    ("command", "status", "reason", "output"),
    [
        ("echo 'all good | time=0.5s;1;2'", Status.PASS, None, "all good"),
        ("echo 'disk filling'; exit 1", Status.WARN, None, "disk filling"),
        ("echo 'disk full'; exit 2", Status.FAIL, Reason.UNEXPECTED, "disk full"),
        ("echo 'no idea'; exit 3", Status.FAIL, Reason.ERROR, "no idea (exit code 3)"),
        ("kill -9 $$$$", Status.FAIL, Reason.ERROR, "killed by SIGKILL"),
    ],
)
async def test_command_is_judged_like_the_command_type(
    sshd: SshdServer, command: str, status: Status, reason: Reason | None, output: str
) -> None:
    result = await run_check(login(sshd, command=command))
    assert result.status is status, result.output
    assert result.reason is reason
    assert result.output.endswith(output)
    assert "exit_code" in result.observed and "login_time" in result.observed
    if status is Status.PASS:
        assert result.observed["time"].value == 0.5  # performance data, as type: command reads it


async def test_output_flood_is_bounded(sshd: SshdServer) -> None:
    result = await run_check(login(sshd, command="head -c 5000000 /dev/zero | tr '\\0' x; echo", max_output_bytes=1000))
    assert result.status is Status.PASS, result.output
    assert len(result.output) <= 1000


async def test_refused_and_stopped(own_sshd: SshdServer) -> None:
    port = closed_port()
    refused = await run_check({"type": "ssh", "host": "127.0.0.1", "port": port})
    own_sshd.stop()
    stopped = await run_check(login(own_sshd))
    assert refused.status is Status.FAIL and refused.reason is Reason.REFUSED
    assert refused.output == f"ssh://127.0.0.1:{port}: connection refused"
    assert stopped.reason is Reason.REFUSED, stopped.output


async def test_paused_server_times_out_then_recovers(own_sshd: SshdServer) -> None:
    check = check_from(login(own_sshd, timeout="500ms"))
    banner = check_from({"type": "ssh", "host": "127.0.0.1", "port": own_sshd.port, "timeout": "500ms"})
    try:
        own_sshd.pause()
        try:
            paused = await run_once(check)
            paused_banner = await run_once(banner)
        finally:
            own_sshd.resume()
        again = await run_once(check)
    finally:
        await check.close()
    assert paused.status is Status.FAIL and paused.reason is Reason.TIMEOUT, paused.output
    assert paused_banner.reason is Reason.TIMEOUT, paused_banner.output
    assert again.status is Status.PASS, again.output


async def test_silent_close_at_once_and_garbage() -> None:
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"220 mail.example ESMTP\r\n") as garbage,
        answering_listener(b"SSH-1.5-OldServer\r\n") as ssh1,
    ):
        for options in ({}, {"username": "u", "password": "pw-123456", "insecure_ignore_host_key": True}):

            def run(port: int, timeout: str = "2s", login: dict[str, Any] = options) -> Any:
                return run_check({"type": "ssh", "host": "127.0.0.1", "port": port, "timeout": timeout, **login})

            silent = await run(hanging, "300ms")
            closed = await run(closing)
            nonsense = await run(garbage)
            old = await run(ssh1)
            assert silent.reason is Reason.TIMEOUT, silent.output
            assert closed.reason in (Reason.UNEXPECTED, Reason.ERROR), closed.output  # fast, never a timeout
            assert "closed the connection" in closed.output or "connection reset" in closed.output
            assert nonsense.reason in (Reason.UNEXPECTED, Reason.ERROR), nonsense.output
            assert old.reason is Reason.UNEXPECTED, old.output
        # without a login the check reads the banner itself, and says so plainly
        banner_closed = await run_check({"type": "ssh", "host": "127.0.0.1", "port": closing})
        banner_garbage = await run_check({"type": "ssh", "host": "127.0.0.1", "port": garbage})
        banner_old = await run_check({"type": "ssh", "host": "127.0.0.1", "port": ssh1})
    assert banner_closed.output == f"ssh://127.0.0.1:{closing}: closed the connection before its identification"
    said = "answered '220 mail.example ESMTP\\r\\n' and closed the connection, not SSH"
    assert banner_garbage.output == f"ssh://127.0.0.1:{garbage}: {said}"
    assert banner_old.output == f"ssh://127.0.0.1:{ssh1}: speaks SSH protocol 1.5 only, not 2.0"


async def test_no_socket_outlives_a_run() -> None:
    """20 runs each against a port that hangs, one that closes at once and one that sends garbage."""
    with (
        silent_listener() as hanging,
        answering_listener(b"") as closing,
        answering_listener(b"\x00\xff garbage\r\n") as garbage,
    ):
        for port in (hanging, closing, garbage):
            for login in ({}, {"username": "u", "password": "pw-123456", "insecure_ignore_host_key": True}):
                options = {"type": "ssh", "host": "127.0.0.1", "port": port, "timeout": "100ms", **login}
                assert await sockets_after_failing_runs(options, port) == 0, f"port {port}, {login or 'banner'}"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{type: ssh, host: h, username: u, password: pw}", "checks.box: give one of known_hosts, host_key or"),
        (
            "{type: ssh, host: h, username: u, password: pw, host_key: 'SHA256:x', insecure_ignore_host_key: true}",
            "checks.box.host_key: give the key as in known_hosts",
        ),
        ("{type: ssh, host: h, command: uptime}", "checks.box.command: applies to a login (needs username)"),
        ("{type: ssh, host: h, username: u, insecure_ignore_host_key: true}", "checks.box.username: needs password"),
        ("{type: ssh, host: h, known_hosts: /nonexistent}", "checks.box.known_hosts: /nonexistent is not a readable"),
    ],
)
def test_bad_options_are_one_line(entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"checks:\n  box: {entry}\n", "probed.yaml")
    assert len(caught.value.problems) == 1, caught.value.problems
    assert caught.value.problems[0].startswith(f"probed.yaml:2: {problem}"), caught.value.problems
